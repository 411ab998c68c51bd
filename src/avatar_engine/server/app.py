"""The HTTP app: REST for sessions and inputs, WebSocket streams, metrics, the bundled client.

Routes are thin: they authenticate, validate the body (pydantic: 422 with the reasons), call
the :class:`~avatar_engine.server.runtime.Runtime`, and map its errors to 4xx JSON. No input
reaches a 500: every error a request can cause has a status and a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import swagger_ui_bundle  # type: ignore[import-untyped]
from fastapi import Depends, FastAPI, Query, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ConfigDict, Field
from starlette.websockets import WebSocketDisconnect, WebSocketState

from avatar_engine import __version__
from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Ping
from avatar_engine.codec.wire import AudioCodec, DeltaMode, ProtocolError
from avatar_engine.engine.engine import SessionNotFoundError
from avatar_engine.engine.live_voice import DEFAULT_DELAY_MS
from avatar_engine.engine.sessions import SESSION_ID_PATTERN, Session
from avatar_engine.ingest.websocket import AsgiConnection, serve_publish
from avatar_engine.rigs.profile import (
    RIG_NAME_PATTERN,
    RigProfileError,
    available_rig_names,
    load_named_rig,
)
from avatar_engine.server import errors
from avatar_engine.server.audio_input import AudioChunk, AudioInput
from avatar_engine.server.auth import AuthError, Principal, bearer_token
from avatar_engine.server.close_codes import (
    CLOSE_BAD_REQUEST,
    CLOSE_CONFLICT,
    CLOSE_FORBIDDEN,
    CLOSE_INVALID,
    CLOSE_NOT_FOUND,
    CLOSE_QUOTA,
    CLOSE_SESSION_GONE,
    CLOSE_TOO_BIG,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNSUPPORTED,
)
from avatar_engine.server.egress_hub import EgressRequest
from avatar_engine.server.errors import error_response as _error
from avatar_engine.server.errors import responses
from avatar_engine.server.inputs import (
    EmotionRequest,
    LookRequest,
    RequestBody,
    SpeakRequest,
    StateRequest,
    TextDelta,
)
from avatar_engine.server.limits import MAX_CONTROL_BYTES, MAX_TEXT_CHARS, BodyGate
from avatar_engine.server.metrics import metrics_text
from avatar_engine.server.quotas import QuotaExceededError
from avatar_engine.server.runtime import Runtime
from avatar_engine.server.streams import Subscriber
from avatar_engine.server.voice_bridge import (
    DEFAULT_BRIDGE_RATE,
    LiveInputBusyError,
    run_bridge,
)
from avatar_engine.server.voice_speak import Voices, speak_request
from avatar_engine.speech.lipsync import from_text
from avatar_engine.transport.outbox import CLOSE_NOT_READING, OutboxOverflowError
from avatar_engine.transport.webrtc import WebRtcGateway

log = logging.getLogger("avatar_engine.server")


def _close_for(exc: Exception) -> tuple[int, str]:
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


class RtcOffer(RequestBody):
    """Body of ``POST /rtc/offer``: the browser's SDP offer and what to subscribe to."""

    model_config = ConfigDict(extra="forbid")
    sdp: Annotated[str, Field(min_length=1, max_length=65536)]
    type: Literal["offer"]
    session: Annotated[str, Field(min_length=1, max_length=128)]
    lod: Annotated[int, Field(ge=0, le=3)] = 0
    bits: Literal[8, 16] | None = None
    """Quantization of this stream (default: the server's ``quant_bits``)."""
    audio: Literal["opus", "pcm", "pcm16", "off"] = "opus"
    """The avatar's voice on this stream (protocol v1.1; sent on the ``control`` channel)."""


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


async def _bounded(what: str, step: Awaitable[None], seconds: float) -> None:
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.warning("shutdown step timed out", extra={"step": what, "after_s": seconds})


def warm_up() -> None:
    """Load what the first request would otherwise wait for (CMUdict, JIT kernels)."""
    from_text("warm up the dictionary")


def _principal(request: Request, token: str | None = Query(default=None)) -> Principal:
    """Who is calling: from ``Authorization: Bearer`` or a ``token`` query parameter."""
    runtime: Runtime = request.app.state.runtime
    return runtime.auth.authenticate(bearer_token(request.headers.get("authorization"), token))


def _scope_token(scope: Any) -> str | None:
    """The bearer token of a raw ASGI scope (header, then ``?token=``)."""
    authorization = None
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            authorization = value.decode("latin-1")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return bearer_token(authorization, (query.get("token") or [None])[0])


def _body_auth(runtime: Runtime) -> Callable[[Any], JSONResponse | None]:
    """The :class:`BodyGate` check: a request with a body needs a valid token first."""

    def check(scope: Any) -> JSONResponse | None:
        try:
            runtime.auth.authenticate(_scope_token(scope))
        except AuthError as exc:
            return errors.auth_response(exc)
        return None

    return check


def _ws_params(ws: WebSocket, **allowed: tuple[str, ...]) -> dict[str, str]:
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


Caller = Annotated[Principal, Depends(_principal)]


def create_app(runtime: Runtime) -> FastAPI:
    """Build the ASGI app around a runtime (the tick starts with the app's lifespan)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(warm_up)
        if runtime.cluster is not None:  # cluster mode: join before any session exists
            await runtime.cluster.start()
        await runtime.ingest.start()
        task = asyncio.create_task(runtime.scheduler.run(), name="engine-tick")
        try:
            yield
        finally:
            # Shutdown is bounded step by step (SIGTERM must exit within 5 s): a step that
            # hangs (a peer, Redis) is logged by name and abandoned, never waited for.
            if runtime.cluster is not None:
                await _bounded("cluster stop", runtime.cluster.stop(), 2.0)
            runtime.ingest.close()
            runtime.egress.close()
            await _bounded("webrtc peers", gateway.close_all(), 1.0)
            runtime.scheduler.stop()
            await asyncio.wait({task}, timeout=1.0)
            task.cancel()

    app = FastAPI(
        title="avatar-engine",
        version=__version__,
        summary="Real-time facial animation: sessions, inputs and morph streams.",
        lifespan=lifespan,
        docs_url=None,  # served by _mount_api_docs from local files (works offline)
        redoc_url=None,  # ReDoc only loads from a CDN
    )
    auth_statuses = {401, 403} if runtime.auth.enabled else set()
    body_statuses = {400, 413, 422} | auth_statuses  # BodyGate, then validation
    on_session = {404} | auth_statuses  # a session route: another tenant's is 404 too
    on_input = body_statuses | on_session | {429}
    app.state.runtime = runtime
    if runtime.cluster is not None:  # REST inputs for sessions owned elsewhere: to the owner
        runtime.cluster.install(app)
    gateway = WebRtcGateway(runtime, runtime.options.ice_servers)
    audio_input = AudioInput(runtime)
    voices = Voices(runtime.options.piper_model)
    app.state.webrtc = gateway
    if runtime.options.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(runtime.options.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )

    # Bodies are bounded while they are read, and with auth on a body is only read once its
    # request's token is valid (docs/server.md, "Limits").
    app.add_middleware(
        BodyGate,
        max_bytes=runtime.options.max_message_bytes,
        authenticate=_body_auth(runtime) if runtime.auth.enabled else None,
    )
    errors.install(app)

    @app.get("/rigs", tags=["rigs"])
    async def rigs() -> dict[str, object]:
        """Rig names a session may use: the built-in rigs and those of ``rig_dir``."""
        return {"rigs": available_rig_names(runtime.options.rig_dir)}

    @app.get("/rigs/{name}", tags=["rigs"], responses=responses({404}))
    async def rig(name: str) -> Any:
        """A rig profile as JSON: clients read morph regions, channels and bones."""
        try:
            profile = load_named_rig(name, runtime.options.rig_dir)
        except RigProfileError as exc:
            return _error(404, "not_found", str(exc))
        return profile.spec.model_dump(mode="json")

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, object]:
        body: dict[str, object] = {"status": "ok", "version": __version__,
                                   "sessions": len(runtime.engine.sessions)}  # fmt: skip
        if runtime.cluster is not None:  # "degraded" while Redis is unreachable
            cluster = runtime.cluster.health()
            body["status"], body["cluster"] = cluster["status"], cluster
        return body

    @app.get("/stats", tags=["service"], responses=responses(auth_statuses))
    async def stats(caller: Caller) -> dict[str, object]:
        """Counters of the whole process; with auth on, an ``admin`` token is required (they
        name capture sessions and sender addresses)."""
        caller.require("admin")
        return runtime.stats()

    @app.get(
        "/metrics",
        tags=["service"],
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition",
                "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        """Prometheus counters and gauges (no session ids or addresses: public like /health)."""
        return Response(metrics_text(runtime), media_type="text/plain; version=0.0.4")

    @app.post(
        "/sessions",
        status_code=201,
        tags=["sessions"],
        responses=responses(body_statuses | {404, 409, 429}),
    )
    async def create_session(body: SessionCreate, caller: Caller) -> dict[str, object]:
        """Create a session. An id another tenant holds answers 404, as if it could not be
        found, so ids never reveal other tenants' sessions."""
        session = runtime.create_session(
            caller, session_id=body.id, rig=body.rig, fps=body.fps, lod=body.lod
        )
        return session.describe()

    @app.get("/sessions", tags=["sessions"], responses=responses(auth_statuses))
    async def list_sessions(caller: Caller) -> dict[str, object]:
        return {"sessions": [s.describe() for s in runtime.list_sessions(caller)]}

    @app.get("/sessions/{session_id}", tags=["sessions"], responses=responses(on_session))
    async def get_session(session_id: str, caller: Caller) -> dict[str, object]:
        return runtime.session_for(caller, session_id, "subscribe").describe()

    @app.delete(
        "/sessions/{session_id}",
        status_code=204,
        tags=["sessions"],
        responses=responses(on_session),
    )
    async def delete_session(session_id: str, caller: Caller) -> Response:
        runtime.delete_session(caller, session_id)
        return Response(status_code=204)

    @app.post("/rtc/offer", tags=["streams"], responses=responses(on_input))
    async def rtc_offer(body: RtcOffer, caller: Caller) -> dict[str, str]:
        """Answer a WebRTC offer whose data channels are ``frames`` and ``control``."""
        answer = await gateway.answer(
            caller, body.session, body.lod, body.sdp, body.type, body.bits,
            AudioCodec.from_name(body.audio),
        )  # fmt: skip
        return {"sdp": answer.sdp, "type": answer.type}

    def _owned(caller: Principal, session_id: str) -> Session:
        session = runtime.session_for(caller, session_id, "publish")
        runtime.quotas.allow_publish(caller.tenant)
        return session

    @app.post(
        "/sessions/{session_id}/speak",
        status_code=202,
        tags=["inputs"],
        responses=responses(on_input),
    )
    async def speak(session_id: str, body: SpeakRequest, caller: Caller) -> dict[str, object]:
        """Say text aloud (the voice: espeak-ng by default) or play TTS timings, with their
        audio when ``audio`` carries it; returns when scheduled (docs/server.md, "Voice").

        Synthesis, alignment and timings run in a worker thread (timings are checked against
        the utterance limit first: 413 beyond it)."""
        return await speak_request(runtime, voices, _owned(caller, session_id), body)

    @app.post(
        "/sessions/{session_id}/text",
        status_code=202,
        tags=["inputs"],
        responses=responses(on_input),
    )
    async def text(session_id: str, body: TextDelta, caller: Caller) -> dict[str, object]:
        """Streamed text deltas; words are spoken as soon as they are complete."""
        _owned(caller, session_id)
        if body.interrupt:  # barge-in silences the voice too
            runtime.voice.cut(session_id, runtime.t_ms())
        delta = body.delta + (
            " " if body.final and body.delta and not body.delta[-1].isspace() else ""
        )
        runtime.engine.push_text(
            session_id, delta, runtime.now(), options=None, interrupt=body.interrupt
        )
        runtime.kick()
        return {"session": session_id, "accepted": len(body.delta)}

    @app.post(
        "/sessions/{session_id}/audio",
        status_code=202,
        tags=["inputs"],
        responses=responses(on_input),
        openapi_extra={
            "requestBody": {
                "content": {
                    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": AudioChunk.model_json_schema()},
                }
            }
        },
    )
    async def audio(
        session_id: str,
        request: Request,
        caller: Caller,
        text: str | None = Query(default=None, max_length=MAX_TEXT_CHARS),
        delay_ms: int = Query(default=0, ge=0, le=10_000),
    ) -> dict[str, object]:
        """Speech audio: a WAV file (recognised, or aligned to ``?text=``), or streamed
        base64 PCM16 chunks as JSON ``{"pcm16", "rate", "final"}``."""
        _owned(caller, session_id)
        body = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            chunk = AudioChunk.model_validate_json(body)
            frames = await audio_input.chunk(session_id, chunk)
            return {"session": session_id, "frames": frames, "final": chunk.final}
        seconds = await audio_input.wav(session_id, body, text, delay_ms)
        return {"session": session_id, "duration_s": round(seconds, 3)}

    @app.post(
        "/sessions/{session_id}/emotion",
        status_code=202,
        tags=["inputs"],
        responses=responses(on_input),
    )
    async def emotion(session_id: str, body: EmotionRequest, caller: Caller) -> dict[str, object]:
        _owned(caller, session_id)
        hold = float("inf") if body.hold_ms is None else body.hold_ms / 1000
        runtime.engine.set_emotion(
            session_id, body.as_mix(), runtime.now(), intensity=body.intensity,
            transition_s=body.transition_ms / 1000, hold_s=hold, easing=body.easing,
        )  # fmt: skip
        return {"session": session_id, "mix": body.as_mix(), "intensity": body.intensity}

    @app.post(
        "/sessions/{session_id}/state",
        status_code=202,
        tags=["inputs"],
        responses=responses(on_input),
    )
    async def state(session_id: str, body: StateRequest, caller: Caller) -> dict[str, object]:
        """``thinking`` (gaze aversion, brow furrow, no lips), ``listening``, or ``idle``."""
        _owned(caller, session_id)
        now = runtime.now()
        runtime.engine.set_thinking(session_id, body.state == "thinking", now)
        if body.state == "listening":
            runtime.engine.set_emotion(session_id, {"listening": 1.0}, now, intensity=0.6)
        elif body.state == "idle":
            runtime.engine.set_emotion(session_id, {}, now)
        return {"session": session_id, "state": body.state}

    @app.post(
        "/sessions/{session_id}/look",
        status_code=202,
        tags=["inputs"],
        responses=responses(on_input),
    )
    async def look(session_id: str, body: LookRequest, caller: Caller) -> dict[str, object]:
        """Aim the gaze (channel units: 1.0 is the eye channel's full scale)."""
        _owned(caller, session_id)
        runtime.engine.look_at(session_id, body.yaw, body.pitch)
        return {"session": session_id, "yaw": body.yaw, "pitch": body.pitch}

    @app.post(
        "/sessions/{session_id}/egress",
        status_code=201,
        tags=["egress"],
        responses=responses(body_statuses | on_session),
    )
    async def add_egress(session_id: str, body: EgressRequest, caller: Caller) -> dict[str, object]:
        """Mirror a session to Unreal Live Link or a VMC receiver (ARKit-named rigs)."""
        session = runtime.session_for(caller, session_id, "admin")
        attached = await runtime.egress.attach(session_id, runtime.rig_of(session), body)
        return {"id": attached.id, "session": session_id, **body.model_dump()}

    @app.get("/sessions/{session_id}/egress", tags=["egress"], responses=responses(on_session))
    async def list_egress(session_id: str, caller: Caller) -> dict[str, object]:
        runtime.session_for(caller, session_id, "admin")
        return {"egress": runtime.egress.describe(session_id)}

    @app.delete(
        "/sessions/{session_id}/egress/{egress_id}",
        status_code=204,
        tags=["egress"],
        responses=responses(on_session),
    )
    async def delete_egress(session_id: str, egress_id: str, caller: Caller) -> Response:
        runtime.session_for(caller, session_id, "admin")
        if not runtime.egress.detach(session_id, egress_id):
            return _error(404, "not_found", f"no egress {egress_id!r} on {session_id!r}")
        return Response(status_code=204)

    @app.websocket("/sessions/{session_id}/publish")
    async def publish(ws: WebSocket, session_id: str, token: str | None = None) -> None:
        """Capture frames in (docs/protocol.md, "Publishing"): msgpack, by name or positional."""
        await ws.accept()
        try:
            caller = runtime.auth.authenticate(bearer_token(ws.headers.get("authorization"), token))
            caller.require("publish", session_id)
            if runtime.cluster is not None and runtime.cluster.owned_elsewhere(session_id):
                runtime.cluster.authorize(caller, session_id)  # frames go to the owner
            else:
                if session_id not in runtime.engine.sessions:
                    runtime.create_session(caller, session_id=session_id, source="publish-ws")
                runtime.session_for(caller, session_id, "publish")
        except (AuthError, SessionNotFoundError, QuotaExceededError, ValueError) as exc:
            await ws.close(*_close_for(exc))
            return
        client = ws.client
        peer = f"{client.host}:{client.port}" if client else ""
        outcome = await serve_publish(
            AsgiConnection(ws), session_id, runtime, clock=runtime.clock.now, peer=peer,
            totals=runtime.publish_totals,
        )  # fmt: skip
        if outcome.close_code is not None and ws.application_state is WebSocketState.CONNECTED:
            await ws.close(outcome.close_code, outcome.close_reason)

    @app.websocket("/sessions/{session_id}/stream")
    async def stream(ws: WebSocket, session_id: str, token: str | None = None) -> None:
        """Query ``lod`` (0..3), ``mode`` (chained, keyframe), ``bits`` (8, 16), ``audio``
        (opus, pcm, off; default opus); a bad value is accepted, then closed with 4400 and
        the reason (docs/server.md, close codes)."""
        await ws.accept()
        try:
            caller = runtime.auth.authenticate(bearer_token(ws.headers.get("authorization"), token))
            query = _ws_params(ws, lod=("0", "1", "2", "3"), mode=("chained", "keyframe"),
                               bits=("8", "16"), audio=("opus", "pcm", "pcm16", "off"))  # fmt: skip
            sub = runtime.subscribe(
                caller,
                session_id,
                lod=int(query.get("lod", "0")),
                mode=DeltaMode.KEYFRAME if query.get("mode") == "keyframe" else DeltaMode.CHAINED,
                bits=int(query.get("bits", runtime.options.quant_bits)),
                transport="websocket",
                audio=AudioCodec.from_name(query.get("audio", "opus")),
            )
        except (AuthError, SessionNotFoundError, QuotaExceededError, ValueError) as exc:
            await ws.close(*_close_for(exc))
            return
        writer = asyncio.create_task(_write_loop(ws, sub), name=f"ws-writer-{session_id}")
        try:
            await _read_controls(ws, runtime, sub)
        finally:
            writer.cancel()
            runtime.unsubscribe(sub)

    @app.websocket("/sessions/{session_id}/voice")
    async def voice(ws: WebSocket, session_id: str, token: str | None = None) -> None:
        """The realtime voice-agent bridge: PCM16 binary frames or JSON audio deltas in (query
        ``rate``, default 24000, and ``delay_ms``, default 200); face and voice out to the
        session's viewers, together (docs/server.md, "Voice bridge")."""
        await ws.accept()
        try:
            caller = runtime.auth.authenticate(bearer_token(ws.headers.get("authorization"), token))
            session = runtime.session_for(caller, session_id, "publish")
            rate = _int_param(ws, "rate", DEFAULT_BRIDGE_RATE)
            delay_ms = _int_param(ws, "delay_ms", DEFAULT_DELAY_MS, 0, 1000)
            live = runtime.live.open(session.id, rate, delay_ms, "voice bridge")
        except (AuthError, SessionNotFoundError, QuotaExceededError, ValueError) as exc:
            await ws.close(*_close_for(exc))
            return
        try:
            outcome = await run_bridge(ws, live)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        finally:
            runtime.live.close(live)  # what was accepted plays on, face and voice
        if ws.application_state is WebSocketState.CONNECTED:
            await ws.close(outcome.close_code, outcome.close_reason)

    _mount_api_docs(app)
    _mount_client(app)
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


def _int_param(ws: WebSocket, name: str, default: int, lo: int = 0, hi: int = 1 << 31) -> int:
    """An integer query parameter of a WebSocket (ValueError: closed with 4400 and why)."""
    raw = ws.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {raw[:20]!r}")
    return int(raw)


def _mount_api_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the files the ``swagger-ui-bundle-v2`` package ships (under
    ``/docs/assets``), so the API page works offline; FastAPI's own loads them from a CDN."""
    app.mount(
        "/docs/assets",
        StaticFiles(directory=Path(str(swagger_ui_bundle.swagger_ui_path))),
        name="docs-assets",
    )

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        root = f"{request.scope.get('root_path', '')}"
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/assets/favicon-32x32.png",
        )


def _mount_client(app: FastAPI) -> None:
    """Serve the bundled client (built into the package's ``web`` folder) at ``/``."""
    root = resources.files("avatar_engine") / "web"
    if isinstance(root, Path) and (root / "index.html").is_file():
        app.mount("/", StaticFiles(directory=root, html=True), name="client")
        return

    @app.get("/", include_in_schema=False)
    async def no_client() -> JSONResponse:
        return _error(
            404,
            "client_not_built",
            "the bundled web client is not in this install (build it with npm, see README)",
        )


async def _write_loop(ws: WebSocket, sub: Subscriber) -> None:
    """Send what the outbox holds; a slow socket only makes the outbox skip frames."""
    try:
        while True:
            controls, frame = await sub.outbox.next_messages()
            if not controls and frame is None:
                if ws.application_state is WebSocketState.CONNECTED:
                    await ws.close(
                        *(sub.outbox.close_reason or (CLOSE_SESSION_GONE, "session closed"))
                    )
                return
            for message in controls:
                await ws.send_bytes(message)
            if frame is not None:
                await ws.send_bytes(frame)
    except (WebSocketDisconnect, RuntimeError, OSError):
        return


async def _read_controls(ws: WebSocket, runtime: Runtime, sub: Subscriber) -> None:
    """Client -> server messages on a stream: LOD changes, keyframe requests, pings."""
    decoder = Decoder()
    limit = MAX_CONTROL_BYTES  # control messages are tiny; anything bigger is abuse
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            await ws.close(CLOSE_UNSUPPORTED, "binary msgpack messages only")
            return
        if len(data) > limit:
            await ws.close(CLOSE_TOO_BIG, f"control messages are limited to {limit} bytes")
            return
        try:
            decoded = decoder.feed(data)
        except ProtocolError as exc:
            await ws.close(CLOSE_INVALID, f"protocol error: {exc}"[:120])
            return
        if isinstance(decoded, Ping):  # pinging faster than the writer sends: stop reading
            await sub.outbox.pong_room()  # (TCP backpressure), never drop a PONG
        try:
            if not runtime.on_client_message(sub, decoded):
                await ws.close(1000, "unsubscribed")
                return
        except OutboxOverflowError:
            await ws.close(*CLOSE_NOT_READING)
            return
        except ValueError as exc:
            await ws.close(CLOSE_BAD_REQUEST, str(exc)[:120])
            return
