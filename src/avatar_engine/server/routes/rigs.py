"""``/rigs``: the rig names a session may use, and each rig's profile for clients."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from avatar_engine.rigs.profile import RigProfileError, available_rig_names, load_named_rig
from avatar_engine.server.errors import error_response, responses
from avatar_engine.server.routes.deps import ErrorStatuses, RuntimeDep


async def rigs(runtime: RuntimeDep) -> dict[str, object]:
    """Rig names a session may use: the built-in rigs and those of ``rig_dir``."""
    return {"rigs": available_rig_names(runtime.options.rig_dir)}


async def rig(name: str, runtime: RuntimeDep) -> Any:
    """A rig profile as JSON: clients read morph regions, channels and bones."""
    try:
        profile = load_named_rig(name, runtime.options.rig_dir)
    except RigProfileError as exc:
        return error_response(404, "not_found", str(exc))
    return profile.spec.model_dump(mode="json")


def add_routes(api: APIRouter, _: ErrorStatuses) -> None:
    """Declare the rig routes (public: no auth statuses)."""
    api.add_api_route("/rigs", rigs, methods=["GET"], tags=["rigs"])
    api.add_api_route(
        "/rigs/{name}", rig, methods=["GET"], tags=["rigs"], responses=responses({404})
    )
