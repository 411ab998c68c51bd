"""Subscribers as a client would write them: connect, decode, yield frames with names.

``subscribe_ws`` and ``subscribe_rtc`` are async generators of :class:`DecodedFrame` (and of
events), used by ``avatar-engine subscribe``, the load simulator and the tests. A frame the
decoder cannot apply (a gap) triggers a keyframe request, as the protocol asks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Event, Frame, Hello, NeedKeyframe, encode_control
from avatar_engine.codec.wire import SESSION_STATES, ControlOp, EventKind


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """One applied frame, with what a renderer would show after it."""

    seq: int
    t_ms: int
    lod: int
    keyframe: bool
    size: int
    received: float
    """``time.monotonic()`` when the message arrived."""
    morphs: dict[str, float]
    channels: dict[str, float]


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    kind: str
    value: Any
    t_ms: int
    received: float


def _event(message: Event, received: float) -> DecodedEvent:
    if message.kind == EventKind.STATE:
        value = message.value if isinstance(message.value, str) else SESSION_STATES[message.value]
        return DecodedEvent("state", value, message.t_ms, received)
    if message.kind == EventKind.SPEAKING:
        return DecodedEvent("speaking", bool(message.value), message.t_ms, received)
    return DecodedEvent("emotion", message.value, message.t_ms, received)


class _Session:
    """Decoder state for one subscription, shared by both transports."""

    def __init__(self, *, names: bool) -> None:
        self.decoder = Decoder()
        self.hello: Hello | None = None
        self.names = names

    def feed(self, data: bytes, received: float) -> DecodedFrame | DecodedEvent | bytes | None:
        """The decoded item, or bytes to send back (a keyframe request), or None."""
        message = self.decoder.feed(data)
        if isinstance(message, Hello):
            self.hello = message
            return None
        if isinstance(message, Event):
            return _event(message, received)
        if isinstance(message, NeedKeyframe):
            return encode_control(ControlOp.REQUEST_KEYFRAME, message.sid, message.lod)
        if isinstance(message, Frame) and self.hello is not None:
            morphs: dict[str, float] = {}
            channels: dict[str, float] = {}
            if self.names:
                state = self.decoder.stream(message.sid)
                schema = self.hello.schema
                lod = schema.lods[message.lod]
                morphs = {schema.morph_names[i]: float(state.morphs[i]) for i in lod.morphs}
                channels = {schema.channel_names[i]: float(state.channels[i]) for i in lod.channels}
            return DecodedFrame(
                message.seq, message.t_ms, message.lod, message.keyframe, len(data), received,
                morphs, channels,
            )  # fmt: skip
        return None


def stream_url(base: str, session: str, **params: object) -> str:
    """``ws://host:port/sessions/{id}/stream?...`` from an http(s) or ws(s) base URL."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = urlencode({k: v for k, v in params.items() if v is not None})
    path = parts.path if "/sessions/" in parts.path else f"/sessions/{session}/stream"
    return urlunsplit((scheme, parts.netloc, path, query, ""))


async def subscribe_ws(
    url: str,
    *,
    lod: int | None = None,
    token: str | None = None,
    mode: str | None = None,
    bits: int | None = None,
    names: bool = True,
) -> AsyncGenerator[DecodedFrame | DecodedEvent, None]:
    """Frames and events from ``ws://HOST:PORT/sessions/ID/stream`` until it closes."""
    full = stream_url(url, "", lod=lod, token=token, mode=mode, bits=bits)
    state = _Session(names=names)
    async with websockets.connect(full, max_size=1 << 20) as ws:
        async for data in ws:
            if isinstance(data, str):
                continue
            item = state.feed(data, time.monotonic())
            if isinstance(item, bytes):
                await ws.send(item)
            elif item is not None:
                yield item


async def subscribe_rtc(
    http_base: str,
    session: str,
    *,
    lod: int = 0,
    token: str | None = None,
    names: bool = True,
    timeout: float = 15.0,
) -> AsyncGenerator[DecodedFrame | DecodedEvent, None]:
    """The same over WebRTC data channels (``POST /rtc/offer``); loopback needs no ICE server."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    frames = pc.createDataChannel("frames", ordered=False, maxRetransmits=0)
    control = pc.createDataChannel("control")
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=256)

    def on_message(data: object) -> None:
        if isinstance(data, bytes) and not queue.full():
            queue.put_nowait(data)

    frames.on("message", on_message)
    control.on("message", on_message)
    pc.on("connectionstatechange", lambda: queue.put_nowait(None)
          if pc.connectionState in ("failed", "closed") else None)  # fmt: skip
    state = _Session(names=names)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=http_base, timeout=timeout) as client:
            offer = {
                "sdp": pc.localDescription.sdp,
                "type": "offer",
                "session": session,
                "lod": lod,
            }
            response = await client.post("/rtc/offer", json=offer, headers=headers)
            response.raise_for_status()
        await pc.setRemoteDescription(RTCSessionDescription(**response.json()))
        while True:
            data = await queue.get()
            if data is None:
                return
            item = state.feed(data, time.monotonic())
            if isinstance(item, bytes):
                if control.readyState == "open":
                    control.send(item)
            elif item is not None:
                yield item
    finally:
        await pc.close()
