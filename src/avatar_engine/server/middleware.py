"""The app's middleware, outermost first: the body gate (size while reading; with auth on, a
valid token before a body is read, docs/server.md "Limits"), CORS when origins are
configured, and the placement's own (a cluster's proxy to the owners of sessions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from avatar_engine.server import errors
from avatar_engine.server.auth import AuthError, bearer_token
from avatar_engine.server.limits import BodyGate
from avatar_engine.server.runtime import Runtime


def install(app: FastAPI, runtime: Runtime) -> None:
    """Add the middleware (each ``add_middleware`` wraps the ones before it, so the body gate,
    added last, sees a request first)."""
    runtime.install_placement(app)
    if runtime.options.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(runtime.options.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(
        BodyGate,
        max_bytes=runtime.options.max_message_bytes,
        authenticate=body_auth(runtime) if runtime.auth.enabled else None,
    )


def scope_token(scope: Any) -> str | None:
    """The bearer token of a raw ASGI scope (header, then ``?token=``)."""
    authorization = None
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            authorization = value.decode("latin-1")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return bearer_token(authorization, (query.get("token") or [None])[0])


def body_auth(runtime: Runtime) -> Callable[[Any], JSONResponse | None]:
    """The :class:`BodyGate` check: a request with a body needs a valid token first."""

    def check(scope: Any) -> JSONResponse | None:
        try:
            runtime.auth.authenticate(scope_token(scope))
        except AuthError as exc:
            return errors.auth_response(exc)
        return None

    return check
