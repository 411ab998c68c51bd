"""The service's own state: ``/health`` (public), ``/stats`` (admin), ``/metrics``
(Prometheus, public like /health: no session ids or addresses)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from avatar_engine import __version__
from avatar_engine.server.errors import responses
from avatar_engine.server.metrics import metrics_text
from avatar_engine.server.routes.deps import Caller, ErrorStatuses, RuntimeDep

PROMETHEUS_TEXT = "text/plain; version=0.0.4"


async def _health(runtime: RuntimeDep) -> dict[str, object]:
    # No docstring: it would become the operation's OpenAPI description, which has none.
    return {"status": "ok", "version": __version__, **runtime.health()}


async def stats(caller: Caller, runtime: RuntimeDep) -> dict[str, object]:
    """Counters of the whole process; with auth on, an ``admin`` token is required (they
    name capture sessions and sender addresses)."""
    caller.require("admin")
    return runtime.stats()


async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus counters and gauges (no session ids or addresses: public like /health)."""
    return Response(metrics_text(runtime), media_type=PROMETHEUS_TEXT)


def add_routes(api: APIRouter, statuses: ErrorStatuses) -> None:
    """Declare the service routes."""
    api.add_api_route("/health", _health, methods=["GET"], tags=["service"], name="health")
    api.add_api_route(
        "/stats", stats, methods=["GET"], tags=["service"], responses=responses(statuses.auth)
    )
    api.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        tags=["service"],
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition",
                "content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}}},
            }
        },
    )
