"""The lean load generator: many WebSocket viewers per process and a Live Link publisher whose
own cost stays well below the server's, so a load test measures the server.

A viewer here is a raw non-blocking socket that did the RFC 6455 handshake itself. Per
received chunk it parses the WebSocket frame header and, per stream message, only the msgpack
fields needed for sequence gaps and latency (type, sid, lod, seq, and ``t`` or ``back``/``dt``);
the frame body is never decoded. One ``epoll`` loop serves every viewer of a process; callers
spread viewers over processes (:func:`run_viewers` is the body of one). Each wake-up of that
loop is one call of the native receive pass (:mod:`avatar_engine.client.ws_receive`), which
does the same parse as the Python here (:class:`ReferenceReceivePass`) with no Python per
frame. A few *probe* viewers
also run the full :class:`~avatar_engine.codec.decoder.Decoder` to see the jaw flip of the
published capture (publish-to-receive latency: each probe reports when it first saw a flip,
the publisher when it sent that flip's packet); everything else is counted, not decoded.

Each process reports its own CPU time over the measured window, so a reader can check the
generator was not the limit. The Live Link publisher sends prebuilt packets (one ``send`` per
packet on a connected socket, one socket per subject as one phone per face). Loops are bounded
by an end time; traffic goes only to the host given (loopback in every command of this
project).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import os
import select
import socket
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from avatar_engine.client.ws_receive import (
    MAX_FRAME,
    PASS_COUNTERS,
    NativeReceivePass,
    Window,
    native_receive_wanted,
)
from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Frame, Hello, NeedKeyframe, encode_control
from avatar_engine.codec.wire import ControlOp, MsgType
from avatar_engine.formats.livelink import VALUE_COUNT, build_packet
from avatar_engine.rigs.arkit import ARKIT_NAMES

FLIP_S = 0.25
"""The published jaw flips between :data:`LOW` and :data:`HIGH` every 250 ms."""
LOW, HIGH = 0.1, 0.8
JAW = ARKIT_NAMES.index("jawOpen")
BROW = ARKIT_NAMES.index("browInnerUp")
FPS = 60
CYCLE = FPS
"""Frames in one publisher cycle (1 s: the brow's sine period, four jaw flips)."""
FLIP_FRAMES = round(FLIP_S * FPS)
"""Frames from one jaw flip to the next: frame ``k`` starts flip ``k // FLIP_FRAMES`` when
``k % FLIP_FRAMES == 0``."""
SPIN_S = 0.0003
"""The publisher sleeps until this long before a frame's time and waits out the rest awake:
``time.sleep`` overshot by 0.13 ms (p50) to 0.18 ms (p99) here, and that lateness is the
generator's, not the server's (about 2 % of a core at 60 frames/s)."""
MAX_FLIPS = 14_400
"""Flips whose send times the publisher keeps (an hour at four a second; older ones are
forgotten, and a probe's receipt of one is then timed from the schedule)."""
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_RECV = 1 << 16
_HANDSHAKE_BATCH = 100
"""Connections opened at once (well inside the server's listen backlog)."""
WAKE_S = 0.001
"""The shortest interval between two wake-ups of a viewer process (``spec["wake_ms"]``
overrides it). Woken by every arriving frame, the viewers of a process gathered about 9 frames
per wake-up at 1,000 viewers, and each wake-up is a context switch on the cores the server
sends from; sleeping out the rest of a millisecond gathers about 37, and the viewers' CPU per
frame fell from about 14 to 10.4 us (benchmarks/fanout_floor.py, docs/performance.md). A frame
that arrives meanwhile is stamped up to 1 ms late: tick-to-receive is overstated by at most
that, never understated."""
_HANDSHAKE_S = 30.0
"""How long one batch of handshakes may take before the rest are counted as failed."""
_OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x2, 0x8, 0x9, 0xA
_HANDSHAKING, _OPEN, _CLOSED = 0, 1, 2
_HELLO, _KEYFRAME, _DELTA, _AUDIO = (int(t) for t in (MsgType.HELLO, MsgType.KEYFRAME,
                                                        MsgType.DELTA, MsgType.AUDIO))  # fmt: skip


def jaw_at(t: float, t0: float) -> float:
    """The jaw value published at time ``t`` of a run that started at ``t0``."""
    return HIGH if int((t - t0) / FLIP_S) % 2 else LOW


class FlipDetector:
    """Publish-to-receive latency: the first frame after a scheduled jaw flip that has moved
    towards the new value (by ``MOVED``), timed from the flip's scheduled time (the publisher's
    record of when it actually sent the flip's packet corrects that afterwards:
    :meth:`LiveLinkPublisher.send_lag_ms`). Smoothing in the animate step does not count as
    delay: the response has started once the jaw moves."""

    MOVED = 0.02

    __slots__ = ("_base", "_detected", "_last_jaw", "_last_k", "t0")

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self._last_k = -1
        self._detected = -1
        self._last_jaw: float | None = None
        self._base = 0.0

    def observe(self, jaw: float, now: float) -> tuple[int, float] | None:
        """Feed the jaw value of a frame received at ``now``; when this frame is the first to
        show the current flip, (the flip's number, ms since its scheduled time), else None."""
        k = int((now - self.t0) / FLIP_S)
        if k != self._last_k:
            self._base = jaw if self._last_jaw is None else self._last_jaw
            self._last_k = k
        self._last_jaw = jaw
        target = HIGH if k % 2 else LOW
        direction = 1.0 if target > self._base else -1.0
        if k > self._detected and (jaw - self._base) * direction >= self.MOVED and k > 0:
            self._detected = k
            return k, (now - (self.t0 + k * FLIP_S)) * 1e3
        return None


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client-to-server WebSocket frame (RFC 6455 5.3: clients always mask)."""
    key = os.urandom(4)
    n = len(payload)
    head = bytes((0x80 | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 1 << 16:
        head += bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((0x80 | 127,)) + n.to_bytes(8, "big")
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return head + key + masked


_UINT_WIDTH = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_INT64_MAX = (1 << 63) - 1


def _read_uint(b: bytes | bytearray, i: int, end: int) -> tuple[int, int]:
    """A msgpack unsigned integer at ``b[i]``, within ``b[:end]``: (value, next index).
    ValueError when it is not one, runs past ``end`` or exceeds int64 (as the native pass)."""
    if i >= end:
        raise ValueError("message cut short")
    c = b[i]
    if c < 0x80:
        return c, i + 1
    width = _UINT_WIDTH.get(c)
    if width is None:
        raise ValueError(f"not a msgpack unsigned integer: 0x{c:02x}")
    if i + 1 + width > end:
        raise ValueError("message cut short")
    value = int.from_bytes(b[i + 1 : i + 1 + width], "big")
    if value > _INT64_MAX:
        raise ValueError("integer beyond int64")
    return value, i + 1 + width


def _stream_fields(b: bytes | bytearray, i: int, size: int) -> tuple[int, int, int]:
    """(seq, t, 0) of the KEYFRAME or (seq, back, dt) of the DELTA ``b[i : i + size]``
    (``[1, sid, lod, seq, t, body]``, ``[2, sid, lod, seq, back, dt, body]``, docs/protocol.md
    3.2); ValueError when a field is cut short or not an unsigned integer."""
    end = i + size
    _sid, j = _read_uint(b, i + 2, end)
    _lod, j = _read_uint(b, j, end)
    seq, j = _read_uint(b, j, end)
    first, j = _read_uint(b, j, end)
    if b[i + 1] == _KEYFRAME:
        return seq, first, 0
    return seq, first, _read_uint(b, j, end)[0]


@dataclass
class ViewerTotals:
    """What the viewers of one process saw in the measured window (merged by the caller)."""

    frames: int = 0
    bytes: int = 0
    audio: int = 0
    gaps: int = 0
    viewers_with_gaps: int = 0
    connected: int = 0
    failed: int = 0
    closed: int = 0
    bad: int = 0
    """Malformed stream messages, and viewers closed on a frame no server sends (ws_receive)."""
    wakeups: int = 0
    """Wake-ups of the receive loop in the measured window (frames / wakeups: the batching)."""
    tick_to_receive_ms: array = field(default_factory=lambda: array("f"))  # type: ignore[type-arg]
    flip_receipts: list[tuple[str, int, float]] = field(default_factory=list)
    """Each probe's first frame after a jaw flip: (session, flip number, ms after the flip's
    scheduled time)."""

    def add_pass(self, counts: dict[str, int], latencies: npt.NDArray[np.float32]) -> None:
        """Add what a receive pass counted (:data:`PASS_COUNTERS`) and its latencies."""
        for name in PASS_COUNTERS:
            setattr(self, name, getattr(self, name) + counts[name])
        self.tick_to_receive_ms.frombytes(np.ascontiguousarray(latencies, np.float32).tobytes())

    def result(self, cpu_s: float, wall_s: float) -> dict[str, Any]:
        """A viewer process's report: these totals, the latencies (tick-to-receive as float32
        bytes) and the process's CPU and wall seconds over the measured window."""
        return {
            "frames": self.frames,
            "bytes": self.bytes,
            "audio": self.audio,
            "gaps": self.gaps,
            "viewers_with_gaps": self.viewers_with_gaps,
            "connected": self.connected,
            "failed": self.failed,
            "closed": self.closed,
            "bad": self.bad,
            "wakeups": self.wakeups,
            "tick_to_receive_ms": self.tick_to_receive_ms.tobytes(),
            "flip_receipts": self.flip_receipts,
            "cpu_s": cpu_s,
            "wall_s": wall_s,
        }


class MessageCounter:
    """What one viewer counts of the stream messages it receives, whatever carries them: the
    few msgpack fields for gaps and latency, and the full decode of a probe viewer."""

    __slots__ = (
        "decoder",
        "flips",
        "gaps",
        "jaw_index",
        "key_seq",
        "key_t",
        "last_seq",
        "last_t",
        "session",
        "totals",
    )

    def __init__(self, totals: ViewerTotals, *, probe: bool, t0: float, session: str) -> None:
        self.totals = totals
        self.session = session
        self.last_seq = -1
        self.last_t = -1
        self.key_seq = -1
        self.key_t = -1
        self.gaps = 0
        self.decoder = Decoder() if probe else None
        self.flips = FlipDetector(t0) if probe else None
        self.jaw_index = -1

    def request_keyframe(self, control: bytes) -> None:
        """Send a probe's keyframe request (``control``) to the server (per transport)."""
        raise NotImplementedError

    def message(self, b: bytes, i: int, size: int, now: float,
                window: tuple[float, float, float]) -> None:  # fmt: skip
        """Count the stream message ``b[i : i + size]`` received at ``now`` if it falls in the
        window (start, end, the server's monotonic start), from its header fields only (one cut
        short or not msgpack integers where they belong is counted in ``bad``, nothing else)."""
        if size < 2:
            self.totals.bad += 1
            return
        kind = b[i + 1]
        if kind not in (_KEYFRAME, _DELTA):
            if kind == _AUDIO and window[0] <= now < window[1]:
                self.totals.audio += 1
            elif kind == _HELLO and self.decoder is not None:
                self.probe(b[i : i + size], now, window)
            return
        try:
            seq, first, dt = _stream_fields(b, i, size)
        except ValueError:
            self.totals.bad += 1
            return
        if kind == _KEYFRAME:
            t = first
            self.key_seq, self.key_t = seq, t
        else:
            back = first
            if back == 1 and self.last_seq == (seq - 1) & 0xFFFF:
                t = self.last_t + dt if self.last_t >= 0 else -1  # chained to a lost one
            elif self.key_seq == (seq - back) & 0xFFFF:
                t = self.key_t + dt
            else:
                t = -1  # reference lost: the server sends a keyframe next
        counted = window[0] <= now < window[1]
        if counted:
            totals = self.totals
            totals.frames += 1
            totals.bytes += size
            if self.last_seq >= 0 and (missed := ((seq - self.last_seq) & 0xFFFF) - 1) > 0:
                if self.gaps == 0:
                    totals.viewers_with_gaps += 1
                self.gaps += missed
                totals.gaps += missed
            if t >= 0:
                totals.tick_to_receive_ms.append((now - window[2]) * 1e3 - t)
        self.last_seq, self.last_t = seq, t
        if self.decoder is not None:
            self.probe(b[i : i + size], now, window)

    def probe(self, message: bytes, now: float, window: tuple[float, float, float]) -> None:
        """Full decode (probe viewers only): the jaw value, for publish-to-receive."""
        assert self.decoder is not None and self.flips is not None
        decoded = self.decoder.feed(message)
        if isinstance(decoded, Hello):
            self.jaw_index = decoded.schema.morph_names.index("Jaw_Open")
        elif isinstance(decoded, NeedKeyframe):
            self.request_keyframe(
                encode_control(ControlOp.REQUEST_KEYFRAME, decoded.sid, decoded.lod)
            )
        elif isinstance(decoded, Frame) and self.jaw_index >= 0:
            jaw = float(self.decoder.stream(decoded.sid).morphs[self.jaw_index])
            seen = self.flips.observe(jaw, now)
            if seen is not None and window[0] <= now < window[1]:
                self.totals.flip_receipts.append((self.session, *seen))


class _Viewer(MessageCounter):
    """One raw WebSocket viewer: handshake, frame headers, the few fields it counts."""

    __slots__ = ("buf", "key", "sock", "stall", "state")

    def __init__(self, sock: socket.socket, key: bytes, totals: ViewerTotals, *, probe: bool,
                 t0: float, stall: bool, session: str) -> None:  # fmt: skip
        super().__init__(totals, probe=probe, t0=t0, session=session)
        self.sock = sock
        self.key = key
        self.buf = b""
        self.state = _HANDSHAKING
        self.stall = stall

    def request_keyframe(self, control: bytes) -> None:
        """As a masked client frame on the socket."""
        self.sock.send(client_frame(_OP_BINARY, control))

    def handshake_done(self) -> bool | None:
        """Read the handshake response: True when open, False when refused, None for more."""
        data = self.sock.recv(_RECV)
        if not data:
            return False
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head, self.buf = self.buf[:end], self.buf[end + 4 :]
        accept = base64.b64encode(hashlib.sha1(self.key + _WS_GUID).digest())
        if not head.startswith(b"HTTP/1.1 101") or accept not in head:
            return False
        self.state = _OPEN
        return True

    def close(self) -> None:
        """Stop reading: the stream ended (the caller closes the socket)."""
        self.state = _CLOSED
        self.buf = b""
        self.totals.closed += 1

    def on_data(self, now: float, window: tuple[float, float, float]) -> None:
        """One ``recv``: parse every complete WebSocket frame, count what the window covers (the
        reference of the native pass: :mod:`avatar_engine.client.ws_receive`)."""
        try:
            data = self.sock.recv(_RECV)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        buf = self.buf + data if self.buf else data
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if buf[pos + 1] & 0x80 or length > MAX_FRAME:  # masked or too long: no server's
                self.totals.bad += 1
                self.close()
                return
            start = pos + head
            if n - start < length:
                break
            opcode = buf[pos] & 0x0F
            if opcode == _OP_BINARY:
                self.message(buf, start, length, now, window)
            elif opcode == _OP_PING:
                with contextlib.suppress(OSError):  # full: the server's next ping asks again
                    self.sock.send(client_frame(_OP_PONG, buf[start : start + length]))
            elif opcode == _OP_CLOSE:
                self.close()
                return
            pos = start + length
        self.buf = buf[pos:] if pos < n else b""


class ReferenceReceivePass:
    """The receive pass in Python (the contract of :mod:`avatar_engine.client.ws_receive`):
    one ``epoll.poll`` per wake-up, then :meth:`_Viewer.on_data` per ready viewer. The native
    pass's reference and its fallback where it is not built."""

    def __init__(self, ep: select.epoll) -> None:
        self._ep = ep
        self._live: dict[int, _Viewer] = {}
        self._totals = ViewerTotals()

    def add(self, viewer: _Viewer) -> None:
        """Serve ``viewer`` (already in the ``epoll`` set) from now on; it counts here."""
        viewer.totals = self._totals
        self._live[viewer.sock.fileno()] = viewer

    def poll(self, timeout_s: float, window: Window, now: float | None = None,
             ) -> tuple[float, list[int]]:  # fmt: skip
        """Wait up to ``timeout_s``, then read and count every ready viewer served here, each
        frame stamped ``now`` (None: the monotonic clock when the wait returned; every frame of
        a wake-up was there then, whichever viewer the loop reaches first): (the stamp, the
        ready descriptors not served here)."""
        ready = self._ep.poll(timeout_s)
        stamp = time.monotonic() if now is None else now
        foreign = []
        for fd, _ in ready:
            viewer = self._live.get(fd)
            if viewer is None:
                foreign.append(fd)
                continue
            viewer.on_data(stamp, window)
            if viewer.state == _CLOSED:
                self._ep.unregister(fd)
                del self._live[fd]
        return stamp, foreign

    def counters(self) -> dict[str, int]:
        """The counts of :data:`~avatar_engine.client.ws_receive.PASS_COUNTERS` so far."""
        return {name: int(getattr(self._totals, name)) for name in PASS_COUNTERS}

    def take_latencies(self) -> npt.NDArray[np.float32]:
        """The tick-to-receive latencies (ms) gathered since the last call, handed over."""
        out = np.frombuffer(self._totals.tick_to_receive_ms.tobytes(), np.float32)
        self._totals.tick_to_receive_ms = array("f")
        return out


def receive_pass(ep: select.epoll, backend: str | None = None,
                 ) -> ReferenceReceivePass | NativeReceivePass:  # fmt: skip
    """The receive pass for a viewer process's ``epoll`` set: native when the kernel backend
    (``backend``, else ``AVATAR_ENGINE_BACKEND`` or the fastest) is native and it is built."""
    return NativeReceivePass(ep) if native_receive_wanted(backend) else ReferenceReceivePass(ep)


def _upgrade_request(host: str, port: int, path: str) -> tuple[bytes, bytes]:
    key = base64.b64encode(os.urandom(16))
    request = (
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        ).encode()
        + b"Sec-WebSocket-Key: "
        + key
        + b"\r\n\r\n"
    )
    return request, key


def _open_viewers(host: str, port: int, paths: list[tuple[str, bool, bool]], sessions: list[str],
                  t0: float, totals: ViewerTotals, ep: select.epoll,
                  ) -> dict[int, _Viewer]:  # fmt: skip
    """Connect and hand-shake every viewer (``paths[i]`` watches ``sessions[i]``), a batch at a
    time; returns the open ones by fd."""
    viewers: dict[int, _Viewer] = {}
    for first in range(0, len(paths), _HANDSHAKE_BATCH):
        pending: dict[int, _Viewer] = {}
        batch = zip(paths[first : first + _HANDSHAKE_BATCH],
                    sessions[first : first + _HANDSHAKE_BATCH], strict=True)  # fmt: skip
        for (path, probe, stall), session in batch:
            try:
                sock = socket.create_connection((host, port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                request, key = _upgrade_request(host, port, path)
                sock.sendall(request)
                sock.setblocking(False)
            except OSError:
                totals.failed += 1
                continue
            viewer = _Viewer(sock, key, totals, probe=probe, t0=t0, stall=stall, session=session)
            pending[sock.fileno()] = viewer
            ep.register(sock.fileno(), select.EPOLLIN)
        deadline = time.monotonic() + _HANDSHAKE_S
        while pending and time.monotonic() < deadline:
            for fd, _ in ep.poll(0.5):
                found = pending.pop(fd, None) or viewers.get(fd)
                if found is None:
                    continue
                viewer = found
                if viewer.state == _OPEN:
                    viewer.on_data(time.monotonic(), (math.inf, math.inf, 0.0))
                    continue
                try:
                    done = viewer.handshake_done()
                except OSError:
                    done = False
                if done is None:
                    pending[fd] = viewer
                elif done:
                    totals.connected += 1
                    viewers[fd] = viewer
                    if viewer.stall:
                        ep.unregister(fd)  # never read again: the server must cope
                else:
                    totals.failed += 1
                    ep.unregister(fd)
                    viewer.sock.close()
        for fd, viewer in pending.items():
            totals.failed += 1
            ep.unregister(fd)
            viewer.sock.close()
    return viewers


def run_viewers(
    spec: dict[str, Any],
    on_ready: Callable[[], None] | None = None,
    window_of: Callable[[], tuple[float, float] | None] | None = None,
) -> dict[str, Any]:
    """The body of one viewer process. ``spec``: host, port, paths (list of [path, probe,
    stall]), sessions (optional: the session each path watches, named in the probes'
    ``flip_receipts``), t0 (publisher schedule), server_t0 (the server's monotonic start), and
    either start and end (the measured window on this machine's monotonic clock) or ``window_of``,
    asked until it returns the window (a coordinator sets it once every process called
    ``on_ready``, after connecting all its viewers; until then frames are read, not counted).
    ``spec["limit_s"]`` bounds the wait for a window; ``spec["linger_s"]`` keeps the viewers
    connected (reading, not counting) that long after it, so a coordinator can read the
    server's per-viewer counters while they are still there. ``spec["receive"]`` names the
    kernel backend of the receive pass (:func:`receive_pass`; default: the fastest, native);
    ``spec["wake_ms"]`` the shortest interval between wake-ups (default :data:`WAKE_S`).

    Returns the totals, the latencies (tick-to-receive as float32 bytes) and this process's CPU
    seconds and wall seconds over the measured window.
    """
    totals = ViewerTotals()
    ep = select.epoll()
    viewers = _open_viewers(spec["host"], spec["port"], [tuple(p) for p in spec["paths"]],
                            list(spec.get("sessions", [""] * len(spec["paths"]))),
                            spec["t0"], totals, ep)  # fmt: skip
    if on_ready is not None:
        on_ready()
    server_t0 = float(spec["server_t0"])
    if window_of is None:
        window = (float(spec["start"]), float(spec["end"]), server_t0)
    else:
        window = (math.inf, time.monotonic() + float(spec.get("limit_s", 120.0)), server_t0)
    receive = receive_pass(ep, spec.get("receive"))
    probes = {fd: v for fd, v in viewers.items() if not v.stall and v.decoder is not None}
    for viewer in viewers.values():
        if not viewer.stall and viewer.decoder is None:
            receive.add(viewer)
    linger = float(spec.get("linger_s", 0.0))
    wake_s = float(spec.get("wake_ms", WAKE_S * 1e3)) / 1e3
    cpu0 = wall0 = cpu1 = wall1 = math.nan
    try:
        while (now := time.monotonic()) < window[1] + linger:
            if window_of is not None and (known := window_of()) is not None:
                window, window_of = (known[0], known[1], server_t0), None
            if math.isnan(cpu0) and now >= window[0]:
                cpu0, wall0 = time.process_time(), now
            if math.isnan(cpu1) and now >= window[1]:
                cpu1, wall1 = time.process_time(), now
            # Every frame of this wake-up was there when the wait returned: the probes' too are
            # stamped with that time, not with when this loop reached them (a probe's full
            # decode takes about 0.1 ms, so the 50th would carry the generator's delay).
            polled, ready = receive.poll(max(0.0, min(0.1, window[1] + linger - now)), window)
            totals.wakeups += window[0] <= polled < window[1]
            for fd in ready:
                if (probe := probes.get(fd)) is not None:
                    probe.on_data(polled, window)
                    if probe.state == _CLOSED:
                        ep.unregister(fd)
                        del probes[fd]
            time.sleep(max(0.0, polled + wake_s - time.monotonic()))  # WAKE_S
        if math.isnan(cpu1):
            cpu1, wall1 = time.process_time(), time.monotonic()
    finally:
        for viewer in viewers.values():
            viewer.sock.close()
        ep.close()
    if math.isnan(cpu0):
        cpu0, wall0 = cpu1, wall1
    totals.add_pass(receive.counters(), receive.take_latencies())
    return totals.result(cpu1 - cpu0, wall1 - wall0)


def livelink_packets(subject: str, device: str = "sim") -> list[bytes]:
    """One cycle of prebuilt Live Link packets for a subject: frame ``k`` of the run is
    ``packets[k % CYCLE]`` (jaw flipping every 250 ms, brow always moving)."""
    values = np.zeros(VALUE_COUNT, np.float32)
    packets = []
    for k in range(CYCLE):
        values[JAW] = HIGH if (k // FLIP_FRAMES) % 2 else LOW
        values[BROW] = 0.5 + 0.4 * math.sin(2 * math.pi * k / CYCLE)
        packets.append(build_packet(device, subject, values, frame_number=k))
    return packets


class LiveLinkPublisher:
    """Every subject's frame ``k`` at ``t0 + k / 60``: prebuilt packets, one socket per subject
    (one phone per face: the server limits each sender's rate), each socket connected to the
    server so a packet is one ``send`` (measured: a burst of 100 takes about 0.52 ms against
    0.62 ms with ``sendto``, nearly all of it the kernel's loopback delivery). :meth:`run` sends
    until a time and may be called again; the counters cover every call (CPU and wall only
    while sending).

    A frame leaves at its time to within a few microseconds (:data:`SPIN_S`), and for each jaw
    flip the time every subject's packet was sent is kept (:meth:`send_lag_ms`): a hundred
    phones send at once, this one process sends one after another, so a latency from the
    flip's schedule would charge the server with up to a burst of the generator's own sends."""

    def __init__(self, host: str, port: int, subjects: list[str], t0: float) -> None:
        self._t0 = t0
        self._socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in subjects]
        for sock in self._socks:
            sock.setblocking(False)
            sock.connect((host, port))
        self._pairs = list(zip(self._socks, [livelink_packets(s) for s in subjects], strict=True))
        self._index = {s: i for i, s in enumerate(subjects)}
        self._flip_lags: dict[int, npt.NDArray[np.float32]] = {}
        self._k = 0
        self.sent = 0
        self.late_ticks = 0
        """Ticks the schedule skipped because this process was late (none at healthy load)."""
        self.cpu_s = 0.0
        self.wall_s = 0.0

    def run(self, until: float) -> None:
        """Send every session's packet at each 60 fps slot until ``until`` (blocking); a late
        process skips the slots it missed (counted in ``late_ticks``) rather than bursting."""
        cpu0, wall0 = time.process_time(), time.monotonic()
        t0 = self._t0
        k = max(self._k, math.ceil((wall0 - t0) * FPS))
        while (due := t0 + k / FPS) < until:
            wait = due - time.monotonic()
            if wait > SPIN_S:
                time.sleep(wait - SPIN_S)
            while time.monotonic() < due:  # SPIN_S
                pass
            if k % FLIP_FRAMES:
                self._send(k % CYCLE, due)
            else:  # a frame that starts a jaw flip: each packet's send time kept
                lags = self._flip_lags[k // FLIP_FRAMES] = np.full(len(self._pairs), np.nan,
                                                                    np.float32)  # fmt: skip
                if len(self._flip_lags) > MAX_FLIPS:
                    del self._flip_lags[next(iter(self._flip_lags))]
                self._send(k % CYCLE, due, lags)
            behind = max(0, math.floor((time.monotonic() - t0) * FPS) - k)
            self.late_ticks += behind
            k += 1 + behind
        self._k = k
        self.cpu_s += time.process_time() - cpu0
        self.wall_s += time.monotonic() - wall0

    def _send(self, phase: int, due: float,
              lags: npt.NDArray[np.float32] | None = None) -> None:  # fmt: skip
        """Every subject's packet of ``phase``; with ``lags``, each one's send time is written
        there (ms after ``due``; NaN for a packet not sent). The time is read just before the
        ``send``: after it, a thread that lost the GIL in the call would stamp the packet later
        than it left, and a latency from that stamp could read low."""
        for i, (sock, packets) in enumerate(self._pairs):
            sending = time.monotonic()
            try:
                sock.send(packets[phase])
            except OSError:  # full, or refused (ICMP) until the server's port is up
                continue
            self.sent += 1
            if lags is not None:
                lags[i] = (sending - due) * 1e3

    def send_lag_ms(self, subject: str, flip: int) -> float | None:
        """How long after flip ``flip``'s scheduled time ``subject``'s packet left (ms), or None
        when that is not known (not sent, or forgotten: :data:`MAX_FLIPS`)."""
        lags = self._flip_lags.get(flip)
        i = self._index.get(subject)
        if lags is None or i is None or math.isnan(lags[i]):
            return None
        return float(lags[i])

    def close(self) -> None:
        """Close the publisher's sockets."""
        for sock in self._socks:
            sock.close()


def tick_latencies(results: list[dict[str, Any]]) -> npt.NDArray[np.float64]:
    """Every viewer process's tick-to-receive latencies (ms) as one float64 array."""
    parts = [np.frombuffer(r["tick_to_receive_ms"], np.float32) for r in results]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)
