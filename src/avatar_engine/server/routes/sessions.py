"""``/sessions``: create, list, read and delete sessions (a tenant sees only its own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ConfigDict, Field

from avatar_engine.engine.sessions import SESSION_ID_PATTERN
from avatar_engine.rigs.profile import RIG_NAME_PATTERN
from avatar_engine.server.errors import responses
from avatar_engine.server.inputs import RequestBody
from avatar_engine.server.routes.deps import Caller, ErrorStatuses, RuntimeDep


class SessionCreate(RequestBody):
    """Body of ``POST /sessions``."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[
        str | None,
        Field(pattern=SESSION_ID_PATTERN.pattern, description="Session id (default: random)"),
    ] = None
    rig: Annotated[
        str | None,
        Field(
            pattern=RIG_NAME_PATTERN,
            description="A rig name from GET /rigs (default from config); never a path",
        ),
    ] = None
    fps: Annotated[int, Field(ge=1, le=240)] = 60
    lod: Annotated[int, Field(ge=0, le=3)] = 0


async def create_session(
    body: SessionCreate, caller: Caller, runtime: RuntimeDep
) -> dict[str, object]:
    """Create a session. An id another tenant holds answers 404, as if it could not be
    found, so ids never reveal other tenants' sessions."""
    session = runtime.create_session(
        caller, session_id=body.id, rig=body.rig, fps=body.fps, lod=body.lod
    )
    return session.describe()


async def _list_sessions(caller: Caller, runtime: RuntimeDep) -> dict[str, object]:
    # No docstring: it would become the operation's OpenAPI description, which has none.
    return {"sessions": [s.describe() for s in runtime.list_sessions(caller)]}


async def _get_session(session_id: str, caller: Caller, runtime: RuntimeDep) -> dict[str, object]:
    # No docstring: it would become the operation's OpenAPI description, which has none.
    return runtime.session_for(caller, session_id, "subscribe").describe()


async def _delete_session(session_id: str, caller: Caller, runtime: RuntimeDep) -> Response:
    # No docstring: it would become the operation's OpenAPI description, which has none.
    runtime.delete_session(caller, session_id)
    return Response(status_code=204)


def add_routes(api: APIRouter, statuses: ErrorStatuses) -> None:
    """Declare the session routes."""
    api.add_api_route(
        "/sessions",
        create_session,
        methods=["POST"],
        status_code=201,
        tags=["sessions"],
        responses=responses(statuses.body | {404, 409, 429}),
    )
    api.add_api_route(
        "/sessions",
        _list_sessions,
        methods=["GET"],
        tags=["sessions"],
        responses=responses(statuses.auth),
        name="list_sessions",
    )
    api.add_api_route(
        "/sessions/{session_id}",
        _get_session,
        methods=["GET"],
        tags=["sessions"],
        responses=responses(statuses.session),
        name="get_session",
    )
    api.add_api_route(
        "/sessions/{session_id}",
        _delete_session,
        methods=["DELETE"],
        status_code=204,
        tags=["sessions"],
        responses=responses(statuses.session),
        name="delete_session",
    )
