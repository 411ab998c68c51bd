"""One error handler: every failure a request can cause becomes ``{"error", "detail"}``.

The table :data:`ERROR_STATUS` maps the exceptions of the engine, the parsers and the runtime
to a status and a machine-readable code; the handlers installed by :func:`install` cover what
the framework raises itself (validation, unknown routes and methods, body read errors) and,
last, anything unexpected (500, whose detail never echoes internals). :func:`responses` gives
the same shapes to the OpenAPI document, so generated clients see what the server does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from avatar_engine.audio.phones import RecognizerUnavailableError
from avatar_engine.engine.engine import SessionExistsError, SessionNotFoundError
from avatar_engine.engine.voice_track import VoiceQueueFullError
from avatar_engine.kernels.sampling import BankFullError
from avatar_engine.rigs.profile import RigProfileError
from avatar_engine.server.auth import AuthError
from avatar_engine.server.quotas import QuotaExceededError
from avatar_engine.server.voice_bridge import LiveInputBusyError
from avatar_engine.speech.external import TimingFormatError
from avatar_engine.speech.g2p import MissingEspeakError
from avatar_engine.voice.base import VoiceUnavailableError

log = logging.getLogger("avatar_engine.server")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    """A stable machine-readable code (``not_found``, ``invalid_request``, ``quota``, ...)."""
    detail: str
    """What was wrong, for people."""


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one JSON error shape every 4xx/5xx uses: ``{"error": code, "detail": reason}``."""
    return JSONResponse(
        status_code=status, content={"error": code, "detail": detail}, headers=headers
    )


class CapacityError(ValueError):
    """Input that would exceed a fixed capacity (HTTP 413; the message names the limit)."""


ERROR_STATUS: Final[tuple[tuple[type[Exception], int, str], ...]] = (
    (SessionNotFoundError, 404, "not_found"),
    (SessionExistsError, 409, "conflict"),
    (QuotaExceededError, 429, "quota"),
    (RigProfileError, 422, "invalid_rig"),
    (TimingFormatError, 400, "bad_timings"),
    (RecognizerUnavailableError, 400, "audio_unavailable"),
    (MissingEspeakError, 400, "language_unavailable"),
    (VoiceUnavailableError, 400, "voice_unavailable"),
    (VoiceQueueFullError, 429, "voice_queue_full"),
    (LiveInputBusyError, 409, "conflict"),
    (CapacityError, 413, "too_large"),
    (BankFullError, 413, "too_large"),
    (ValidationError, 422, "invalid_request"),
    (ValueError, 400, "bad_request"),
    (OSError, 400, "unreachable"),  # a target a request names (egress host) cannot be opened
)
"""Errors a request can cause -> status and code; the most specific class wins (by MRO)."""

_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid_request",
    429: "quota",
}

_DESCRIPTIONS: Final = {
    400: "Bad request: a value the parsers refuse (the detail names it)",
    401: "No token, or a token that is invalid or expired",
    403: "The token lacks the scope, or does not name this session",
    404: "No such session (or it belongs to another tenant)",
    409: "A session with this id exists",
    413: "Over a size limit: the body, the utterance length, or a capacity (named in detail)",
    422: "The body or a parameter fails validation (every reason, in detail)",
    429: "The tenant is over a quota (named in detail)",
}


def _bank_detail(exc: BankFullError) -> str:
    return (
        f"the speech is too long for one session's curve capacity ({exc}); "
        "split it into shorter requests"
    )


def _handler(status: int, code: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(_: Request, exc: Exception) -> Response:
        if isinstance(exc, BankFullError):
            return error_response(status, code, _bank_detail(exc))
        if isinstance(exc, ValidationError):
            return error_response(status, code, _reasons(exc.errors()))
        return error_response(status, code, str(exc))

    return handle


def _reasons(errors: Sequence[Any]) -> str:
    reasons = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()))
        reasons.append(f"{where}: {err.get('msg', '')}" if where else str(err.get("msg", "")))
    return "; ".join(reasons) or "invalid request"


def _allowed_methods(app: FastAPI, scope: dict[str, Any]) -> str:
    methods: set[str] = set()
    for route in app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(scope)[0] is not Match.NONE:
            methods.update(route_methods)
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    """Register every handler on ``app`` (call once, after the routes exist or before)."""

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _reasons(exc.errors()))

    @app.exception_handler(AuthError)
    async def on_auth(_: Request, exc: AuthError) -> JSONResponse:
        return auth_response(exc)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        status, detail = exc.status_code, str(exc.detail)
        if status in (404, 405):
            # The bundled client's static mount at / answers every path the API routes did
            # not take with the wrong method (404, or 405 allowing GET, HEAD); when an API
            # route has this path, the answer is 405 with the methods that route allows.
            allowed = _allowed_methods(app, dict(request.scope))
            if allowed:
                status, detail = 405, "Method Not Allowed"
                headers["Allow"] = allowed
        code = _CODES.get(status, "error")
        return error_response(status, code, detail, headers or None)

    for exc_type, status, code in ERROR_STATUS:
        app.add_exception_handler(exc_type, _handler(status, code))

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return error_response(500, "internal", "internal server error (logged on the server)")


def auth_response(exc: AuthError) -> JSONResponse:
    """401 (with ``WWW-Authenticate: Bearer``) or 403 for an :class:`AuthError`, in the common error
    shape."""
    code = "unauthorized" if exc.status == 401 else "forbidden"
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, code, exc.reason, headers)


def responses(statuses: Iterable[int]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, all with :class:`ErrorBody`."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in sorted(statuses)}
