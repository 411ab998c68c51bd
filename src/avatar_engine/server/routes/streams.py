"""Viewers: ``/sessions/{id}/stream`` (WebSocket) and ``/rtc/offer`` (WebRTC data channels).

A viewer is a runtime subscriber: its outbox holds the controls and the latest frame, a
writer task sends them, and the socket's reader applies the client's controls (LOD,
keyframe requests, pings, audio codec) through the runtime.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, WebSocket
from pydantic import ConfigDict, Field
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect, WebSocketState

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Ping
from avatar_engine.codec.wire import AudioCodec, DeltaMode, ProtocolError
from avatar_engine.server.close_codes import (
    CLOSE_BAD_REQUEST,
    CLOSE_INVALID,
    CLOSE_SESSION_GONE,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED,
)
from avatar_engine.server.errors import responses
from avatar_engine.server.inputs import RequestBody
from avatar_engine.server.limits import MAX_CONTROL_BYTES
from avatar_engine.server.routes.deps import (
    REFUSALS,
    Caller,
    ErrorStatuses,
    RuntimeDep,
    close_for,
    ws_caller,
    ws_params,
)
from avatar_engine.server.runtime import Runtime
from avatar_engine.server.streams import Subscriber
from avatar_engine.server.webrtc import WebRtcGateway
from avatar_engine.transport.outbox import CLOSE_NOT_READING, OutboxOverflowError


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


def get_gateway(connection: HTTPConnection) -> WebRtcGateway:
    """The app's WebRTC gateway (``create_app`` puts it in ``app.state``)."""
    gateway: WebRtcGateway = connection.app.state.webrtc
    return gateway


async def rtc_offer(
    body: RtcOffer,
    caller: Caller,
    gateway: Annotated[WebRtcGateway, Depends(get_gateway)],
) -> dict[str, str]:
    """Answer a WebRTC offer whose data channels are ``frames`` and ``control``."""
    answer = await gateway.answer(
        caller,
        body.session,
        body.lod,
        body.sdp,
        body.type,
        body.bits,
        AudioCodec.from_name(body.audio),
    )
    return {"sdp": answer.sdp, "type": answer.type}


async def stream(
    ws: WebSocket, session_id: str, runtime: RuntimeDep, token: str | None = None
) -> None:
    """Query ``lod`` (0..3), ``mode`` (chained, keyframe), ``bits`` (8, 16), ``audio``
    (opus, pcm, off; default opus); a bad value is accepted, then closed with 4400 and
    the reason (docs/server.md, close codes)."""
    await ws.accept()
    try:
        caller = ws_caller(ws, runtime, token)
        query = ws_params(
            ws,
            lod=("0", "1", "2", "3"),
            mode=("chained", "keyframe"),
            bits=("8", "16"),
            audio=("opus", "pcm", "pcm16", "off"),
        )
        sub = runtime.subscribe(
            caller,
            session_id,
            lod=int(query.get("lod", "0")),
            mode=DeltaMode.KEYFRAME if query.get("mode") == "keyframe" else DeltaMode.CHAINED,
            bits=int(query.get("bits", runtime.options.quant_bits)),
            transport="websocket",
            audio=AudioCodec.from_name(query.get("audio", "opus")),
        )
    except REFUSALS as exc:
        await ws.close(*close_for(exc))
        return
    writer = asyncio.create_task(write_loop(ws, sub), name=f"ws-writer-{session_id}")
    try:
        await read_controls(ws, runtime, sub)
    finally:
        writer.cancel()
        runtime.unsubscribe(sub)


async def write_loop(ws: WebSocket, sub: Subscriber) -> None:
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


async def read_controls(ws: WebSocket, runtime: Runtime, sub: Subscriber) -> None:
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


def add_routes(api: APIRouter, statuses: ErrorStatuses) -> None:
    """Declare the viewer routes."""
    api.add_api_route(
        "/rtc/offer",
        rtc_offer,
        methods=["POST"],
        tags=["streams"],
        responses=responses(statuses.input),
    )
    api.add_api_websocket_route("/sessions/{session_id}/stream", stream)
