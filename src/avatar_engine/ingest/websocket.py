"""WebSocket capture paths: publish (client and server side) and recording a stream.

* :class:`WebSocketPublishTarget` is the publisher ``replay`` uses for ``ws://.../publish``:
  one PUBLISH_HELLO, then positional CAPTUREs, one msgpack message per binary frame.
* :func:`serve_publish` is the server side of a publish connection for anything that speaks
  the ``websockets`` connection interface (``recv``/``send``/``close``): it decodes with
  :class:`~avatar_engine.ingest.publish.PublishDecoder`, rate-limits, counts drops and hands
  frames to a sink. The HTTP server can call it, or reuse :class:`PublishDecoder` directly.
* :func:`record_stream` subscribes to ``ws://.../sessions/ID/stream``, decodes the v1 stream
  with the codec's :class:`~avatar_engine.codec.Decoder` and writes an ``.avrec``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from avatar_engine.codec import (
    ControlOp,
    Decoder,
    ErrorMessage,
    Frame,
    Hello,
    NeedKeyframe,
    Ping,
    ProtocolError,
    encode_capture,
    encode_control,
    encode_pong,
    encode_publish_hello,
)
from avatar_engine.formats.recording import AvrecWriter, stream_header
from avatar_engine.ingest.limits import LogLimiter, TokenBucket
from avatar_engine.ingest.publish import PublishDecoder, PublishDropError, PublishFrame
from avatar_engine.ingest.sink import CaptureSink, SourceInfo, SourceKind
from avatar_engine.ingest.stats import SourceStats
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES
from avatar_engine.types import F32

logger = logging.getLogger("avatar_engine.ingest.ws")

MAX_MESSAGE_BYTES: Final = 65536
"""Largest WebSocket message either side accepts here (the protocol's message limit)."""
OPEN_TIMEOUT: Final = 10.0


class WebSocketPublishTarget:
    """Publishes capture frames to ``ws(s)://HOST:PORT/sessions/ID/publish``.

    Sends never wait for a slow server beyond the socket's write buffer: if ``websockets``'
    buffer is above ``max_buffered`` bytes, the frame is dropped (counted in ``dropped``).
    Server messages (ERROR, PING) are read in the background; an ERROR closes the target.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        pid: int = 1,
        fps: int = 60,
        max_buffered: int = 256 * 1024,
    ) -> None:
        self.url = url
        self.token = token
        self.pid = pid
        self.fps = fps
        self.max_buffered = max_buffered
        self.sent = 0
        self.dropped = 0
        self.error: str | None = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Connect to the publish endpoint (bearer token if given) and start reading the server's
        replies."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self._ws = await connect(
            self.url,
            additional_headers=headers,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=OPEN_TIMEOUT,
        )
        await self._ws.send(encode_publish_hello(self.pid, ARKIT_NAMES, ROTATION_NAMES, self.fps))
        self._reader = asyncio.create_task(self._read(), name="publish-reader")

    async def _read(self) -> None:
        decoder = Decoder()
        try:
            async for message in self._ws:
                if not isinstance(message, bytes):
                    continue
                try:
                    msg = decoder.feed(message)
                except ProtocolError:
                    continue
                if isinstance(msg, ErrorMessage):
                    self.error = f"server error {msg.code}: {msg.message}"
                    logger.warning("%s: %s", self.url, self.error)
                elif isinstance(msg, Ping):
                    await self._ws.send(encode_pong(msg.nonce, msg.t_ms))
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code != 1000:
                self.error = f"closed by the server: {exc.rcvd.code} {exc.rcvd.reason}"

    async def send(self, index: int, t: float, arkit: F32, rotations: F32) -> None:
        """Send one capture; when the socket's write buffer is over ``max_buffered`` the frame is
        dropped (counted) rather than queued, as a live source would. A server error seen by the
        reader raises here."""
        if self._ws is None:
            return
        if self.error is not None:
            raise ConnectionError(self.error)
        transport = self._ws.transport
        if transport is not None and transport.get_write_buffer_size() > self.max_buffered:
            self.dropped += 1
            return
        values = np.concatenate([arkit, rotations])
        message = encode_capture(self.pid, index & 0xFFFF, round(t * 1000), values)
        try:
            await self._ws.send(message)
        except ConnectionClosed as exc:
            raise ConnectionError(self.error or f"connection closed: {exc}") from None
        self.sent += 1

    async def close(self) -> None:
        """Close the connection and wait (bounded) for the reader to finish."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
        self._ws = None


class PublishConnection(Protocol):
    """What :func:`serve_publish` needs from a server-side connection."""

    async def recv(self) -> str | bytes:
        """The next message from the publisher; raises ConnectionClosed when it is gone."""

    async def send(self, message: bytes) -> None:
        """Send one binary message to the publisher (errors, publish acknowledgements)."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a WebSocket close code and reason."""


class AsgiConnection:
    """Adapts a Starlette/FastAPI ``WebSocket`` (``receive``/``send_bytes``/``close``) to
    :class:`PublishConnection`, so the HTTP server can run :func:`serve_publish` as is::

        await ws.accept()
        await serve_publish(AsgiConnection(ws), session_id, sink)

    Duck-typed: nothing here imports Starlette.
    """

    __slots__ = ("_ws",)

    def __init__(self, websocket: Any) -> None:
        self._ws = websocket

    async def recv(self) -> str | bytes:
        """The next message; an ASGI disconnect becomes ConnectionClosedOK like the websockets
        library's."""
        message = await self._ws.receive()
        if message.get("type") == "websocket.disconnect":
            raise ConnectionClosedOK(None, None)
        data = message.get("bytes")
        if data is not None:
            return bytes(data)
        return str(message.get("text") or "")

    async def send(self, message: bytes) -> None:
        """Send one binary message."""
        await self._ws.send_bytes(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason``."""
        await self._ws.close(code, reason)


@dataclass(slots=True)
class PublishLimits:
    """Per-connection limits of a WebSocket publisher: frame rate (token bucket), message size and
    how many protocol errors are tolerated."""

    max_frame_rate_hz: float = 120.0
    frame_burst: float = 30.0
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_bad_messages: int = 100
    """Protocol errors tolerated on one connection before it is closed (1008)."""


@dataclass(slots=True)
class PublishOutcome:
    """How a publish connection ended: its counters and the close code and reason sent."""

    stats: SourceStats = field(default_factory=SourceStats)
    close_code: int = 1000
    close_reason: str = ""


async def serve_publish(
    connection: PublishConnection,
    session_id: str,
    sink: CaptureSink,
    *,
    limits: PublishLimits | None = None,
    clock: Callable[[], float] = time.monotonic,
    peer: str = "",
    totals: SourceStats | None = None,
) -> PublishOutcome:
    """Run one publish connection until it closes; never raises for bad input.

    Bad messages are counted per reason (``protocol_<code>``, ``no_hello``, ``non_finite``,
    ``rate_limited``, ...) and logged at a bounded rate; after ``max_bad_messages`` the
    connection is closed with 1008 (policy violation). Text frames close it with 1003.
    ``totals``, when given, counts every connection's packets, frames and drops together (the
    server's /stats and /metrics), as they happen.
    """
    limits = limits or PublishLimits()
    decoder = PublishDecoder()
    out = PublishOutcome()
    stats = out.stats
    stats.key = session_id
    stats.session_id = session_id
    log = LogLimiter(logger)
    bucket = TokenBucket(limits.max_frame_rate_hz, limits.frame_burst, clock())
    bad = 0
    while True:
        try:
            message = await connection.recv()
        except ConnectionClosed:
            return out
        now = clock()
        if isinstance(message, str):
            out.close_code, out.close_reason = 1003, "binary msgpack messages only"
            break
        stats.packet(len(message), now)
        if totals is not None:
            totals.packet(len(message), now)
        reason: str | None = None
        try:
            if len(message) > limits.max_message_bytes:
                raise PublishDropError("too_large", f"{len(message)} bytes")
            result = decoder.feed(message)
            if isinstance(result, PublishFrame):
                if not bucket.take(now):
                    raise PublishDropError("rate_limited", "frame rate over the limit")
                if result.unknown:
                    stats.drop("unknown_name", result.unknown)
                stats.clamped += result.clamped
                info = SourceInfo(SourceKind.PUBLISH_WS, session_id, peer, "", result.t)
                try:
                    sink.on_frame(session_id, result.arkit, result.rotations, now, info)
                except Exception as exc:
                    raise PublishDropError("sink_error", repr(exc)) from None
                stats.frame(now)
                if totals is not None:
                    totals.frame(now)
            elif isinstance(result, Ping):
                await connection.send(encode_pong(result.nonce, result.t_ms))
        except PublishDropError as exc:
            reason = exc.reason
            stats.drop(reason)
            if totals is not None:
                totals.drop(reason)
            log.log(reason, now, f"publish {session_id}: dropped: {exc}")
        if reason is not None and reason.startswith("protocol_"):
            bad += 1
            if bad >= limits.max_bad_messages:
                out.close_code, out.close_reason = 1008, "too many malformed messages"
                break
    await connection.close(out.close_code, out.close_reason)
    return out


@dataclass(slots=True)
class RecordStats:
    """What ``record`` got: frames written, keyframes asked for, rig, file and why it ended."""

    frames: int = 0
    keyframe_requests: int = 0
    rig: str = ""
    path: str = ""
    closed: str = ""
    """How the server ended the stream ('' if we stopped first)."""


async def record_stream(
    url: str,
    output: str | Path,
    *,
    token: str | None = None,
    count: int | None = None,
    duration: float | None = None,
    overwrite: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> RecordStats:
    """Record ``ws://.../sessions/ID/stream`` into an ``.avrec`` until ``count`` frames,
    ``duration`` seconds, or the server closes. The file is readable while it grows."""
    stats = RecordStats(path=str(output))
    headers = {"Authorization": f"Bearer {token}"} if token else None
    decoder = Decoder()
    writer: AvrecWriter | None = None
    t0: int | None = None
    start = clock()
    async with connect(
        url, additional_headers=headers, max_size=MAX_MESSAGE_BYTES, open_timeout=OPEN_TIMEOUT
    ) as ws:
        try:
            while count is None or stats.frames < count:
                timeout = None if duration is None else duration - (clock() - start)
                if timeout is not None and timeout <= 0:
                    break
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout)
                except TimeoutError:
                    break
                except ConnectionClosed as exc:
                    rcvd = exc.rcvd
                    stats.closed = (
                        "no close frame" if rcvd is None else f"{rcvd.code} {rcvd.reason}"
                    )
                    break
                if not isinstance(message, bytes):
                    continue
                try:
                    msg = decoder.feed(message)
                except ProtocolError as exc:
                    logger.warning("record: skipped a bad message: %s", exc)
                    continue
                if isinstance(msg, Hello):
                    schema = msg.schema
                    if writer is None:
                        header = stream_header(
                            schema.rig,
                            schema.morph_names,
                            schema.channel_names,
                            source=url,
                            meta={"bits": msg.params.bits},
                            created_unix=time.time(),
                        )
                        writer = AvrecWriter(output, header, overwrite=overwrite)
                        stats.rig = schema.rig
                elif isinstance(msg, Frame) and writer is not None:
                    state = decoder.stream(msg.sid)
                    if state.morphs.shape[0] != len(writer.header.names) or state.channels.shape[
                        0
                    ] != len(writer.header.channels):
                        continue  # a hello for another rig mid-recording: not this file's
                    t0 = msg.t_ms if t0 is None else t0
                    writer.write((msg.t_ms - t0) / 1000.0, state.morphs, state.channels)
                    stats.frames += 1
                elif isinstance(msg, NeedKeyframe):
                    await ws.send(encode_control(ControlOp.REQUEST_KEYFRAME, msg.sid, msg.lod))
                    stats.keyframe_requests += 1
                elif isinstance(msg, Ping):
                    await ws.send(encode_pong(msg.nonce, msg.t_ms))
        finally:
            if writer is not None:
                writer.close()
    return stats
