"""Inputs to a session: speech (``/speak``, ``/text``, ``/audio``), expression (``/emotion``,
``/state``, ``/look``), capture frames (``/publish``, WebSocket) and the realtime voice
bridge (``/voice``, WebSocket).

Every input needs the ``publish`` scope on its session and counts against the tenant's
publish rate (:meth:`~avatar_engine.server.runtime.Runtime.input_session`); what an input
does to the face is the runtime's and the engine's business, not the route's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect, WebSocketState

from avatar_engine.engine.live_voice import DEFAULT_DELAY_MS
from avatar_engine.ingest.websocket import AsgiConnection, serve_publish
from avatar_engine.server.audio_input import AudioChunk, AudioInput
from avatar_engine.server.errors import responses
from avatar_engine.server.inputs import (
    EmotionRequest,
    LookRequest,
    SpeakRequest,
    StateRequest,
    TextDelta,
)
from avatar_engine.server.limits import MAX_TEXT_CHARS
from avatar_engine.server.routes.deps import (
    REFUSALS,
    Caller,
    ErrorStatuses,
    RuntimeDep,
    close_for,
    int_param,
    ws_caller,
)
from avatar_engine.server.voice_bridge import DEFAULT_BRIDGE_RATE, run_bridge
from avatar_engine.server.voice_speak import Voices, speak_request


def get_voices(connection: HTTPConnection) -> Voices:
    """The app's voices, loaded once per process (``create_app`` puts them in ``app.state``)."""
    voices: Voices = connection.app.state.voices
    return voices


def get_audio_input(connection: HTTPConnection) -> AudioInput:
    """The app's REST audio inputs (``create_app`` puts them in ``app.state``)."""
    audio_input: AudioInput = connection.app.state.audio_input
    return audio_input


async def speak(
    session_id: str,
    body: SpeakRequest,
    caller: Caller,
    runtime: RuntimeDep,
    voices: Annotated[Voices, Depends(get_voices)],
) -> dict[str, object]:
    """Say text aloud (the voice: espeak-ng by default) or play TTS timings, with their
    audio when ``audio`` carries it; returns when scheduled (docs/server.md, "Voice").

    Synthesis, alignment and timings run in a worker thread (timings are checked against
    the utterance limit first: 413 beyond it)."""
    return await speak_request(runtime, voices, runtime.input_session(caller, session_id), body)


async def text(
    session_id: str, body: TextDelta, caller: Caller, runtime: RuntimeDep
) -> dict[str, object]:
    """Streamed text deltas; words are spoken as soon as they are complete."""
    runtime.input_session(caller, session_id)
    runtime.text_delta(session_id, body.delta, final=body.final, interrupt=body.interrupt)
    return {"session": session_id, "accepted": len(body.delta)}


async def audio(
    session_id: str,
    request: Request,
    caller: Caller,
    runtime: RuntimeDep,
    audio_input: Annotated[AudioInput, Depends(get_audio_input)],
    text: str | None = Query(default=None, max_length=MAX_TEXT_CHARS),
    delay_ms: int = Query(default=0, ge=0, le=10_000),
) -> dict[str, object]:
    """Speech audio: a WAV file (recognised, or aligned to ``?text=``), or streamed
    base64 PCM16 chunks as JSON ``{"pcm16", "rate", "final"}``."""
    runtime.input_session(caller, session_id)
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        chunk = AudioChunk.model_validate_json(body)
        frames = await audio_input.chunk(session_id, chunk)
        return {"session": session_id, "frames": frames, "final": chunk.final}
    seconds = await audio_input.wav(session_id, body, text, delay_ms)
    return {"session": session_id, "duration_s": round(seconds, 3)}


async def _emotion(
    session_id: str, body: EmotionRequest, caller: Caller, runtime: RuntimeDep
) -> dict[str, object]:
    # No docstring: it would become the operation's OpenAPI description, which has none.
    runtime.input_session(caller, session_id)
    hold = float("inf") if body.hold_ms is None else body.hold_ms / 1000
    runtime.set_emotion(
        session_id,
        body.as_mix(),
        intensity=body.intensity,
        transition_s=body.transition_ms / 1000,
        hold_s=hold,
        easing=body.easing,
    )
    return {"session": session_id, "mix": body.as_mix(), "intensity": body.intensity}


async def state(
    session_id: str, body: StateRequest, caller: Caller, runtime: RuntimeDep
) -> dict[str, object]:
    """``thinking`` (gaze aversion, brow furrow, no lips), ``listening``, or ``idle``."""
    runtime.input_session(caller, session_id)
    runtime.set_conversation_state(session_id, body.state)
    return {"session": session_id, "state": body.state}


async def look(
    session_id: str, body: LookRequest, caller: Caller, runtime: RuntimeDep
) -> dict[str, object]:
    """Aim the gaze (channel units: 1.0 is the eye channel's full scale)."""
    runtime.input_session(caller, session_id)
    runtime.look_at(session_id, body.yaw, body.pitch)
    return {"session": session_id, "yaw": body.yaw, "pitch": body.pitch}


async def publish(
    ws: WebSocket, session_id: str, runtime: RuntimeDep, token: str | None = None
) -> None:
    """Capture frames in (docs/protocol.md, "Publishing"): msgpack, by name or positional."""
    await ws.accept()
    try:
        runtime.admit_publisher(ws_caller(ws, runtime, token), session_id)
    except REFUSALS as exc:
        await ws.close(*close_for(exc))
        return
    client = ws.client
    peer = f"{client.host}:{client.port}" if client else ""
    outcome = await serve_publish(
        AsgiConnection(ws),
        session_id,
        runtime,
        clock=runtime.clock.now,
        peer=peer,
        totals=runtime.publish_totals,
    )
    if outcome.close_code is not None and ws.application_state is WebSocketState.CONNECTED:
        await ws.close(outcome.close_code, outcome.close_reason)


async def voice(
    ws: WebSocket, session_id: str, runtime: RuntimeDep, token: str | None = None
) -> None:
    """The realtime voice-agent bridge: PCM16 binary frames or JSON audio deltas in (query
    ``rate``, default 24000, and ``delay_ms``, default 200); face and voice out to the
    session's viewers, together (docs/server.md, "Voice bridge")."""
    await ws.accept()
    try:
        caller = ws_caller(ws, runtime, token)
        session = runtime.session_for(caller, session_id, "publish")
        rate = int_param(ws, "rate", DEFAULT_BRIDGE_RATE)
        delay_ms = int_param(ws, "delay_ms", DEFAULT_DELAY_MS, 0, 1000)
        live = runtime.live.open(session.id, rate, delay_ms, "voice bridge")
    except REFUSALS as exc:
        await ws.close(*close_for(exc))
        return
    try:
        outcome = await run_bridge(ws, live)
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
    finally:
        runtime.live.close(live)  # what was accepted plays on, face and voice
    if ws.application_state is WebSocketState.CONNECTED:
        await ws.close(outcome.close_code, outcome.close_reason)


def add_routes(api: APIRouter, statuses: ErrorStatuses) -> None:
    """Declare the input routes: REST (in the OpenAPI document's order), then WebSocket."""

    def post(name: str, endpoint: Callable[..., Any], **extra: Any) -> None:
        api.add_api_route(
            f"/sessions/{{session_id}}/{name}",
            endpoint,
            methods=["POST"],
            status_code=202,
            tags=["inputs"],
            responses=responses(statuses.input),
            name=name,
            **extra,
        )

    post("speak", speak)
    post("text", text)
    post(
        "audio",
        audio,
        openapi_extra={
            "requestBody": {
                "content": {
                    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": AudioChunk.model_json_schema()},
                }
            }
        },
    )
    post("emotion", _emotion)
    post("state", state)
    post("look", look)
    api.add_api_websocket_route("/sessions/{session_id}/publish", publish)
    api.add_api_websocket_route("/sessions/{session_id}/voice", voice)
