"""``/sessions/{id}/egress``: mirror a session to Unreal Live Link or a VMC receiver
(``admin`` scope: the server sends UDP where the request says)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from avatar_engine.server.egress_hub import EgressRequest
from avatar_engine.server.errors import error_response, responses
from avatar_engine.server.routes.deps import Caller, ErrorStatuses, RuntimeDep


async def add_egress(
    session_id: str, body: EgressRequest, caller: Caller, runtime: RuntimeDep
) -> dict[str, object]:
    """Mirror a session to Unreal Live Link or a VMC receiver (ARKit-named rigs)."""
    attached = await runtime.add_egress(caller, session_id, body)
    return {"id": attached.id, "session": session_id, **body.model_dump()}


async def _list_egress(session_id: str, caller: Caller, runtime: RuntimeDep) -> dict[str, object]:
    # No docstring: it would become the operation's OpenAPI description, which has none.
    return {"egress": runtime.list_egress(caller, session_id)}


async def _delete_egress(
    session_id: str, egress_id: str, caller: Caller, runtime: RuntimeDep
) -> Response:
    # No docstring: it would become the operation's OpenAPI description, which has none.
    if not runtime.remove_egress(caller, session_id, egress_id):
        return error_response(404, "not_found", f"no egress {egress_id!r} on {session_id!r}")
    return Response(status_code=204)


def add_routes(api: APIRouter, statuses: ErrorStatuses) -> None:
    """Declare the egress routes."""
    api.add_api_route(
        "/sessions/{session_id}/egress",
        add_egress,
        methods=["POST"],
        status_code=201,
        tags=["egress"],
        responses=responses(statuses.body | statuses.session),
    )
    api.add_api_route(
        "/sessions/{session_id}/egress",
        _list_egress,
        methods=["GET"],
        tags=["egress"],
        responses=responses(statuses.session),
        name="list_egress",
    )
    api.add_api_route(
        "/sessions/{session_id}/egress/{egress_id}",
        _delete_egress,
        methods=["DELETE"],
        status_code=204,
        tags=["egress"],
        responses=responses(statuses.session),
        name="delete_egress",
    )
