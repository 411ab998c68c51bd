"""Replay a take (Live Link Face CSV or ``.avrec``) in real time to any supported input.

Targets, by URL scheme:

* ``livelink://HOST:PORT`` - Live Link Face v6 datagrams (what the phone sends);
* ``vmc://HOST:PORT`` - a VMC Performer stream (Perfect Sync names + head/eye bones, bundled);
* ``ifacialmocap://HOST:PORT`` - iFacialMocap v2 text frames (what the app sends after a
  handshake; the replay does not wait for one);
* ``udp://HOST:PORT`` - our msgpack publish messages over UDP (a publish hello, then
  positional CAPTUREs, the hello repeated every second since UDP may lose it);
* ``ws://HOST:PORT/sessions/ID/publish`` (or ``wss://``) - the same messages over the server's
  WebSocket publish endpoint.

Frames leave at ``t / speed`` after the start on a monotonic clock. A sender that falls behind
(a stalled loop) skips the frames whose time has passed rather than sending a burst, except the
newest one, so the receiver always sees the current pose.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit

import numpy as np

from avatar_engine.codec import encode_capture, encode_publish_hello
from avatar_engine.formats import ifacialmocap
from avatar_engine.formats.llf_csv import read_take
from avatar_engine.formats.recording import read_recording
from avatar_engine.rigs.arkit import (
    ARKIT_COUNT,
    ARKIT_NAMES,
    ROTATION_COUNT,
    ROTATION_NAMES,
    NameBinding,
)
from avatar_engine.transport.egress import LiveLinkEgress, VmcEgress
from avatar_engine.types import F32, F64

logger = logging.getLogger("avatar_engine.replay")

HELLO_REPEAT_S: Final = 1.0
SCHEMES: Final = ("livelink", "vmc", "ifacialmocap", "udp", "ws", "wss")


class ReplayError(ValueError):
    """A take or target the replay cannot use (reported on one line by the CLI)."""


@dataclass(frozen=True, slots=True)
class TakeFrames:
    """A take as the replay needs it: times, ARKit rows and rotation rows."""

    times: F64
    arkit: F32
    rotations: F32
    source: str

    def __len__(self) -> int:
        return int(self.times.shape[0])


def load_take(path: str | Path, *, take_fps: float = 60.0) -> TakeFrames:
    """Read a ``.csv`` (Live Link Face) or ``.avrec`` take into ARKit rows."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        take = read_take(path, fps=take_fps)
        return TakeFrames(take.times, take.arkit, take.rotations, str(path))
    if suffix == ".avrec":
        rec = read_recording(path)
        if len(rec.times) == 0:
            raise ReplayError(f"{path}: no complete frames")
        binding = NameBinding(list(rec.header.names), on_unknown="skip")
        if len(binding.arkit_targets) == 0:
            raise ReplayError(
                f"{path}: a recording of rig {rec.header.rig!r} has no ARKit names; only capture "
                "recordings and arkit52 streams can be replayed as capture"
            )
        arkit = np.zeros((len(rec.times), ARKIT_COUNT), dtype=np.float32)
        arkit[:, binding.arkit_targets] = rec.values[:, binding.arkit_columns]
        rotations = np.zeros((len(rec.times), ROTATION_COUNT), dtype=np.float32)
        channels = NameBinding(list(rec.header.channels), on_unknown="skip")
        rotations[:, channels.rotation_targets] = rec.channels[:, channels.rotation_columns]
        times = rec.times - rec.times[0]
        return TakeFrames(times, arkit, rotations, str(path))
    raise ReplayError(f"{path}: expected a .csv (Live Link Face) or .avrec take")


class ReplayTarget(Protocol):
    """Where a replay sends its frames (Live Link, VMC, iFacialMocap, UDP publish or WebSocket
    publish), behind one interface so the pacing loop is written once."""

    async def open(self) -> None:
        """Connect (or open a socket) before the first frame; a refusal raises here."""

    async def send(self, index: int, t: float, arkit: F32, rotations: F32) -> None:
        """Send one frame: the ``index``-th sent (from 0, across loops), at take time ``t``,
        ARKit weights and rotations in engine units."""

    async def close(self) -> None:
        """Release the connection or socket; called once, also after an error."""


class _LiveLinkTarget:
    def __init__(self, host: str, port: int, subject: str) -> None:
        self.egress = LiveLinkEgress(host, port, subject=subject)

    async def open(self) -> None:
        await self.egress.open()

    async def send(self, index: int, t: float, arkit: F32, rotations: F32) -> None:
        self.egress.send(arkit, rotations, t)

    async def close(self) -> None:
        self.egress.close()


class _VmcTarget:
    def __init__(self, host: str, port: int) -> None:
        self.egress = VmcEgress(host, port)

    async def open(self) -> None:
        await self.egress.open()

    async def send(self, index: int, t: float, arkit: F32, rotations: F32) -> None:
        self.egress.send(arkit, rotations, t)

    async def close(self) -> None:
        self.egress.close()


class _DatagramTarget:
    """Raw UDP: iFacialMocap text frames or our msgpack publish messages."""

    def __init__(self, host: str, port: int, kind: str, pid: int = 1) -> None:
        self.addr = (host, port)
        self.kind = kind
        self.pid = pid
        self._transport: asyncio.DatagramTransport | None = None
        self._hello_t = -HELLO_REPEAT_S

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=self.addr
        )
        self._transport = transport

    async def send(self, index: int, t: float, arkit: F32, rotations: F32) -> None:
        if self._transport is None:
            return
        if self.kind == "ifacialmocap":
            self._transport.sendto(ifacialmocap.build_frame(arkit, rotations))
            return
        if t - self._hello_t >= HELLO_REPEAT_S or t < self._hello_t:
            hello = encode_publish_hello(self.pid, ARKIT_NAMES, ROTATION_NAMES, 60)
            self._transport.sendto(hello)
            self._hello_t = t
        values = np.concatenate([arkit, rotations])
        self._transport.sendto(encode_capture(self.pid, index & 0xFFFF, round(t * 1000), values))

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def open_target(url: str, *, subject: str = "replay", token: str | None = None) -> ReplayTarget:
    """The target for a ``--to`` URL; raises :class:`ReplayError` for a bad one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ReplayError(f"{url}: the target must start with one of {', '.join(SCHEMES)}://")
    if scheme in ("ws", "wss"):
        from avatar_engine.ingest.websocket import WebSocketPublishTarget

        if not parts.path.rstrip("/").endswith("/publish"):
            raise ReplayError(f"{url}: a WebSocket target is ws://HOST:PORT/sessions/ID/publish")
        return WebSocketPublishTarget(url, token=token)
    try:
        port = parts.port
    except ValueError:
        raise ReplayError(f"{url}: bad port") from None
    host = parts.hostname
    if not host or port is None:
        raise ReplayError(f"{url}: expected {scheme}://HOST:PORT")
    if scheme == "livelink":
        return _LiveLinkTarget(host, port, subject)
    if scheme == "vmc":
        return _VmcTarget(host, port)
    return _DatagramTarget(host, port, scheme)


@dataclass(slots=True)
class ReplayStats:
    """What a replay did: frames sent, frames skipped because the sender fell behind real time,
    loops and wall time."""

    sent: int = 0
    skipped_late: int = 0
    loops: int = 0
    elapsed: float = 0.0


async def replay(
    take: TakeFrames,
    target: ReplayTarget,
    *,
    speed: float = 1.0,
    loop: bool = False,
    count: int | None = None,
    duration: float | None = None,
    skip_late: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ReplayStats:
    """Send ``take`` in real time (scaled by ``speed``); stops after ``count`` frames,
    ``duration`` seconds (take time), or the end of the take unless ``loop``.

    ``skip_late=False`` sends every frame even when behind (tests that compare frame by frame).
    """
    if not speed > 0:
        raise ReplayError("speed must be positive")
    if len(take) == 0:
        raise ReplayError(f"{take.source}: no frames")
    stats = ReplayStats()
    # One loop lasts the take plus one frame interval, so the last and first frames do not
    # land on the same instant when looping.
    step = float(np.median(np.diff(take.times))) if len(take) > 1 else 1.0 / 60.0
    period = float(take.times[-1]) + step
    await target.open()
    start = clock()
    try:
        index = 0
        while True:
            i = index % len(take)
            cycle = index // len(take)
            if cycle and not loop:
                break
            t = cycle * period + float(take.times[i])
            if duration is not None and t > duration:
                break
            if count is not None and stats.sent >= count:
                break
            due = start + t / speed
            now = clock()
            if now < due:
                await sleep(due - now)
            elif skip_late and (index + 1 < len(take) * (cycle + 1) or loop):
                # Late: skip this frame if the next one is also already due.
                j = (index + 1) % len(take)
                t_next = (cycle + (1 if j == 0 else 0)) * period + float(take.times[j])
                if start + t_next / speed <= now:
                    stats.skipped_late += 1
                    index += 1
                    continue
            await target.send(stats.sent, t, take.arkit[i], take.rotations[i])
            stats.sent += 1
            stats.loops = cycle
            index += 1
    finally:
        await target.close()
        stats.elapsed = clock() - start
    return stats
