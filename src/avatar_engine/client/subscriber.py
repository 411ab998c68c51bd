"""Subscribers as a client would write them: connect, decode, yield frames with names.

``subscribe_ws`` and ``subscribe_rtc`` are async generators of :class:`DecodedFrame` (and of
events), used by ``avatar-engine subscribe``, the load simulator and the tests. A frame the
decoder cannot apply (a gap) triggers a keyframe request, as the protocol asks.

``subscribe_ws(..., reconnect=Backoff())`` survives a lost connection like the JS client does
(clients/threejs/src/backoff.js): it reconnects after exponentially growing, jittered delays,
yields a ``reconnect`` event before each wait, and stops on the close codes retrying cannot
fix (:data:`FATAL_CLOSE_CODES`), except 4404 once the stream was up (a restarted server knows
the session again once its owner recreates it).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Event, Frame, Hello, NeedKeyframe, encode_control
from avatar_engine.codec.wire import SESSION_STATES, ControlOp, EventKind

FATAL_CLOSE_CODES = frozenset({4401, 4403, 4404, 4410})
"""Close codes after which reconnecting is pointless: bad token, forbidden, no such session,
session deleted (the JS client's list)."""


@dataclass(slots=True)
class Backoff:
    """Reconnect delays: ``min(max_s, initial_s * factor**n) * (1 - jitter + jitter * U)``.

    The JS client's formula and defaults: the first retry waits 0.25..0.5 s, the fifth 4..8 s,
    from the seventh on 7.5..15 s; jitter keeps clients that lost the same server from all
    coming back at once. ``random`` is injectable for tests.
    """

    initial_s: float = 0.5
    max_s: float = 15.0
    factor: float = 2.0
    jitter: float = 0.5
    random: Callable[[], float] = field(default=random.random)
    attempts: int = 0
    """Failed attempts since the last :meth:`reset`."""

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("need 0 < initial_s <= max_s")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need factor >= 1 and jitter in 0..1")

    def next(self) -> float:
        """Seconds to wait before the next attempt; counts the attempt."""
        base = min(self.max_s, self.initial_s * self.factor**self.attempts)
        self.attempts += 1
        return base * (1 - self.jitter + self.jitter * self.random())

    def reset(self) -> None:
        """The connection proved healthy: the next failure starts from ``initial_s``."""
        self.attempts = 0


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
    """A session event as a client sees it: its kind by name (``state``, ``speaking``, ``emotion``,
    ``voice_cut``), its value, the stream time and when it arrived."""

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
    reconnect: Backoff | None = None,
) -> AsyncGenerator[DecodedFrame | DecodedEvent, None]:
    """Frames and events from ``ws://HOST:PORT/sessions/ID/stream`` until it closes.

    With ``reconnect``, a lost or refused connection is retried after ``reconnect.next()``
    seconds (a ``reconnect`` event with the attempt, delay, close code and reason comes
    first); the stream then starts again from its hello and keyframe.
    """
    full = stream_url(url, "", lod=lod, token=token, mode=mode, bits=bits)
    was_up = False
    while True:
        state = _Session(names=names)
        code: int | None = None
        reason = ""
        try:
            async with websockets.connect(full, max_size=1 << 20) as ws:
                try:
                    async for data in ws:
                        if isinstance(data, str):
                            continue
                        item = state.feed(data, time.monotonic())
                        if isinstance(item, bytes):
                            await ws.send(item)
                        elif item is not None:
                            if reconnect is not None:
                                reconnect.reset()
                            was_up = True
                            yield item
                except websockets.ConnectionClosed:
                    if reconnect is None:
                        raise
                code, reason = ws.close_code, ws.close_reason or ""
        except (TimeoutError, OSError, websockets.InvalidHandshake) as exc:
            if reconnect is None:
                raise
            reason = str(exc) or type(exc).__name__
        if reconnect is None:
            return
        if code in FATAL_CLOSE_CODES and not (code == 4404 and was_up):
            return
        delay = reconnect.next()
        info = {"attempt": reconnect.attempts, "delay_s": round(delay, 3), "code": code,
                "reason": reason}  # fmt: skip
        yield DecodedEvent("reconnect", info, -1, time.monotonic())
        await asyncio.sleep(delay)


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
