"""What every route module shares: the runtime and the caller as dependencies, the error
statuses each kind of route declares, and the WebSocket admission helpers (a refused
WebSocket is accepted, then closed with a code and a reason, docs/server.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request, WebSocket
from starlette.requests import HTTPConnection

from avatar_engine.engine.engine import SessionNotFoundError
from avatar_engine.server.auth import AuthError, Principal, bearer_token
from avatar_engine.server.close_codes import (
    CLOSE_BAD_REQUEST,
    CLOSE_CONFLICT,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_QUOTA,
    CLOSE_UNAUTHORIZED,
)
from avatar_engine.server.quotas import QuotaExceededError
from avatar_engine.server.runtime import Runtime
from avatar_engine.server.voice_bridge import LiveInputBusyError

REFUSALS = (AuthError, SessionNotFoundError, QuotaExceededError, ValueError)
"""What a WebSocket's admission may raise; each closes the socket (:func:`close_for`)."""


def get_runtime(connection: HTTPConnection) -> Runtime:
    """The app's runtime (``create_app`` puts it in ``app.state``), for requests and sockets."""
    runtime: Runtime = connection.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def principal(request: Request, token: str | None = Query(default=None)) -> Principal:
    """Who is calling: from ``Authorization: Bearer`` or a ``token`` query parameter."""
    runtime = get_runtime(request)
    return runtime.auth.authenticate(bearer_token(request.headers.get("authorization"), token))


Caller = Annotated[Principal, Depends(principal)]


@dataclass(frozen=True)
class ErrorStatuses:
    """The error statuses a kind of route declares in OpenAPI (401 and 403 only with auth
    on), so generated clients see exactly what this server answers."""

    auth: frozenset[int]
    """401 and 403 with auth on, nothing with it off."""

    @classmethod
    def for_auth(cls, enabled: bool) -> ErrorStatuses:
        """The statuses of a server with auth on or off."""
        return cls(frozenset({401, 403}) if enabled else frozenset())

    @property
    def body(self) -> frozenset[int]:
        """A route with a body: the body gate, then validation."""
        return self.auth | {400, 413, 422}

    @property
    def session(self) -> frozenset[int]:
        """A route on one session: another tenant's is 404 too."""
        return self.auth | {404}

    @property
    def input(self) -> frozenset[int]:
        """An input to a session: a body, a session, and the publish rate."""
        return self.body | self.session | {429}


def ws_caller(ws: WebSocket, runtime: Runtime, token: str | None) -> Principal:
    """Who opened a WebSocket (header, then ``?token=``); AuthError closes it."""
    return runtime.auth.authenticate(bearer_token(ws.headers.get("authorization"), token))


def close_for(exc: Exception) -> tuple[int, str]:
    """The WebSocket close code and reason (at most 123 bytes) for a refused connection."""
    if isinstance(exc, AuthError):
        return (CLOSE_UNAUTHORIZED if exc.status == 401 else CLOSE_FORBIDDEN), exc.reason[:120]
    if isinstance(exc, SessionNotFoundError):
        return CLOSE_NOT_FOUND, str(exc)[:120]
    if isinstance(exc, QuotaExceededError):
        return CLOSE_QUOTA, exc.reason[:120]
    if isinstance(exc, LiveInputBusyError):
        return CLOSE_CONFLICT, str(exc)[:120]
    return CLOSE_BAD_REQUEST, str(exc)[:120]


def ws_params(ws: WebSocket, **allowed: tuple[str, ...]) -> dict[str, str]:
    """Query parameters of a WebSocket, checked against their allowed values after the accept,
    so a bad value closes with 4400 and a reason instead of failing the handshake."""
    values = {}
    for name, choices in allowed.items():
        value = ws.query_params.get(name)
        if value is None:
            continue
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value[:20]!r}")
        values[name] = value
    return values


def int_param(ws: WebSocket, name: str, default: int, lo: int = 0, hi: int = 1 << 31) -> int:
    """An integer query parameter of a WebSocket (ValueError: closed with 4400 and why)."""
    raw = ws.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {raw[:20]!r}")
    return int(raw)
