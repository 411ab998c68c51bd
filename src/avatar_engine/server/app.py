"""The HTTP app, assembled: REST for sessions and inputs, WebSocket streams, metrics, the
bundled client.

``create_app`` only puts the parts together: the runtime and the per-app services in
``app.state`` (routes get them as dependencies), the middleware (server/middleware.py), the
error handlers (server/errors.py), one router per resource (server/routes/), the pages, and
:func:`lifespan`, which runs the tick while the app serves. Routes are thin: they
authenticate, validate the body (pydantic: 422 with the reasons), call the
:class:`~avatar_engine.server.runtime.Runtime`, and map its errors to 4xx JSON. No input
reaches a 500: every error a request can cause has a status and a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fastapi import FastAPI

from avatar_engine import __version__
from avatar_engine.rigs.profile import available_rig_names
from avatar_engine.server import errors, middleware
from avatar_engine.server.audio_input import AudioInput
from avatar_engine.server.routes import egress, inputs, pages, rigs, service, sessions, streams
from avatar_engine.server.routes.deps import ErrorStatuses
from avatar_engine.server.runtime import Runtime
from avatar_engine.server.voice_speak import Voices
from avatar_engine.server.webrtc import WebRtcGateway
from avatar_engine.speech.lipsync import from_text

log = logging.getLogger("avatar_engine.server")

RESOURCES = (rigs, service, sessions, streams, inputs, egress)
"""The route modules, in the order of the OpenAPI document."""


def warm_up() -> None:
    """Load what the first request would otherwise wait for (CMUdict, JIT kernels)."""
    from_text("warm up the dictionary")


async def _bounded(what: str, step: Awaitable[None], seconds: float) -> None:
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.warning("shutdown step timed out", extra={"step": what, "after_s": seconds})


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The tick runs while the app serves. Shutdown is bounded step by step (SIGTERM must
    exit within 5 s): a step that hangs (a peer, Redis) is logged by name and abandoned,
    never waited for."""
    runtime: Runtime = app.state.runtime
    gateway: WebRtcGateway = app.state.webrtc
    await asyncio.to_thread(warm_up)
    await runtime.start()
    task = asyncio.create_task(runtime.scheduler.run(), name="engine-tick")
    try:
        yield
    finally:
        await _bounded("placement stop", runtime.leave(), 2.0)
        runtime.close_io()
        await _bounded("webrtc peers", gateway.close_all(), 1.0)
        runtime.scheduler.stop()
        await asyncio.wait({task}, timeout=1.0)
        task.cancel()


def create_app(runtime: Runtime) -> FastAPI:
    """Build the ASGI app around a runtime (the tick starts with the app's lifespan)."""
    app = FastAPI(
        title="avatar-engine",
        version=__version__,
        summary="Real-time facial animation: sessions, inputs and morph streams.",
        lifespan=lifespan,
        docs_url=None,  # served by pages.mount_api_docs from local files (works offline)
        redoc_url=None,  # ReDoc only loads from a CDN
    )
    app.state.runtime = runtime
    app.state.webrtc = WebRtcGateway(runtime, runtime.options.ice_servers)
    app.state.audio_input = AudioInput(runtime)
    app.state.voices = Voices(runtime.options.piper_model)
    middleware.install(app, runtime)
    errors.install(app)
    statuses = ErrorStatuses.for_auth(runtime.auth.enabled)
    for resource in RESOURCES:
        resource.add_routes(app.router, statuses)
    pages.mount_api_docs(app)
    pages.mount_client(app)
    _declare_in_openapi(app, available_rig_names(runtime.options.rig_dir), runtime.auth.enabled)
    return app


def _declare_in_openapi(app: FastAPI, names: list[str], auth: bool) -> None:
    """What the OpenAPI document states beyond the routes: the rig names a session may use
    (an enum, so generated clients send only names the server accepts) and, with auth on,
    the bearer scheme on every operation that answers 401 (a token may also come as
    ``?token=``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        rig = schema["components"]["schemas"]["SessionCreate"]["properties"]["rig"]
        for variant in rig.get("anyOf", [rig]):
            if variant.get("type") == "string":
                variant["enum"] = names
        if auth:
            schema["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
            for operations in schema["paths"].values():
                for operation in operations.values():
                    if "401" in operation.get("responses", {}):
                        operation["security"] = [{"bearer": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
