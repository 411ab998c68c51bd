"""The route modules alone, in process: each resource's routes mount on a bare app with a
runtime (no ``create_app``, no lifespan, no socket), and the runtime operations the routes
call behave as the routes used to inline them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from avatar_engine.server import errors
from avatar_engine.server.auth import ANONYMOUS
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.quotas import QuotaExceededError
from avatar_engine.server.routes import egress, inputs, rigs, service, sessions
from avatar_engine.server.routes.deps import ErrorStatuses
from avatar_engine.server.runtime import Runtime
from inprocess import FakeClock


def _runtime(**options: Any) -> Runtime:
    return Runtime(ServerOptions(livelink_port=0, vmc_port=0, **options), clock=FakeClock())


def _call(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def bare() -> Iterator[tuple[FastAPI, Runtime]]:
    """The session and input routes on an app that has nothing else."""
    runtime = _runtime()
    app = FastAPI()
    app.state.runtime = runtime
    errors.install(app)
    for resource in (sessions, inputs):
        resource.add_routes(app.router, ErrorStatuses.for_auth(False))
    yield app, runtime


def test_session_routes_mount_alone(bare: tuple[FastAPI, Runtime]) -> None:
    app, runtime = bare
    created = _call(app, "POST", "/sessions", json={"id": "alone", "fps": 30})
    assert created.status_code == 201 and created.json()["fps"] == 30
    assert runtime.has_session("alone")
    assert _call(app, "GET", "/sessions/alone").json()["id"] == "alone"
    assert _call(app, "POST", "/sessions", json={"id": "alone"}).status_code == 409
    assert _call(app, "DELETE", "/sessions/alone").status_code == 204
    gone = _call(app, "GET", "/sessions/alone")
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"


def test_state_route_leaves_the_behaviour_to_the_runtime(bare: tuple[FastAPI, Runtime]) -> None:
    app, _ = bare
    _call(app, "POST", "/sessions", json={"id": "s"})
    answer = _call(app, "POST", "/sessions/s/state", json={"state": "listening"})
    assert answer.status_code == 202 and answer.json() == {"session": "s", "state": "listening"}
    refused = _call(app, "POST", "/sessions/s/state", json={"state": "asleep"})
    assert refused.status_code == 422 and "state" in refused.json()["detail"]


def test_every_resource_declares_its_routes_on_the_router_it_is_given() -> None:
    app = FastAPI()
    for resource in (rigs, service, sessions, inputs, egress):
        resource.add_routes(app.router, ErrorStatuses.for_auth(True))
    names = {getattr(route, "name", None) for route in app.router.routes}
    assert {
        "rigs",
        "health",
        "stats",
        "create_session",
        "list_sessions",
        "speak",
        "emotion",
        "publish",
        "voice",
        "add_egress",
        "delete_egress",
    } <= names
    stats = app.openapi()["paths"]["/stats"]["get"]["responses"]
    assert {"401", "403"} <= stats.keys()  # auth on: declared


def test_text_delta_ends_a_final_word(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = _runtime()
    runtime.create_session(ANONYMOUS, session_id="t")
    pushed: list[tuple[str, bool]] = []

    def push_text(session_id: str, delta: str, *, interrupt: bool = False) -> None:
        pushed.append((delta, interrupt))

    monkeypatch.setattr(runtime, "push_text", push_text)
    runtime.text_delta("t", "hello", final=True, interrupt=False)
    runtime.text_delta("t", "there ", final=True, interrupt=True)
    runtime.text_delta("t", "more", final=False, interrupt=False)
    runtime.text_delta("t", "", final=True, interrupt=False)
    assert pushed == [("hello ", False), ("there ", True), ("more", False), ("", False)]


def test_input_session_counts_against_the_publish_rate() -> None:
    runtime = _runtime(max_publish_rate=2.0)
    runtime.create_session(ANONYMOUS, session_id="r")
    with pytest.raises(QuotaExceededError):
        for _ in range(100):
            runtime.input_session(ANONYMOUS, "r")


def test_health_is_the_session_count_and_the_placement() -> None:
    runtime = _runtime()
    runtime.create_session(ANONYMOUS, session_id="h")
    assert runtime.health() == {"sessions": 1}
