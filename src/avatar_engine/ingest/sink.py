"""The interface between capture receivers and whatever consumes their frames (the engine).

Receivers validate, route and then call :meth:`CaptureSink.on_frame` once per frame. They never
import the engine: the server passes in a sink (for the engine, a thin adapter around
``Engine.push_capture``) and a session factory, so ingest can be tested with a list-collecting
sink and the engine can be tested without sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from avatar_engine.types import F32


class SourceKind(StrEnum):
    """Which input a capture frame came through; the value is the name stats, logs, routing
    keys (``livelink:iPhone``) and per-kind receiver limits use."""

    LIVELINK = "livelink"
    VMC = "vmc"
    IFACIALMOCAP = "ifacialmocap"
    PUBLISH_UDP = "publish-udp"
    PUBLISH_WS = "publish-ws"


class SourceInfo(NamedTuple):
    """Where a frame came from (for stats, logs and the engine's per-session metadata).

    A NamedTuple rather than a frozen dataclass: one is built per frame, and tuple construction
    is several times cheaper on the receive path.
    """

    kind: SourceKind
    key: str
    """The routing key: Live Link subject, VMC/iFacialMocap sender host, publisher id."""
    peer: str = ""
    """``host:port`` of the sender ('' when not a datagram source)."""
    device_id: str = ""
    frame_time: float | None = None
    """The sender's own clock for this frame, in seconds, when the format carries one."""


class SourceBatch(NamedTuple):
    """Where the frames of a burst came from, as columns: one receiver, so one kind; frame
    ``i``'s key, sender, device and time at ``i`` of each list. A burst's frames are handed over
    without a :class:`SourceInfo` each (built with :meth:`at` only for a frame that goes on
    alone: forwarded to another node, or past its tenant's quota)."""

    kind: SourceKind
    keys: Sequence[str]
    peers: Sequence[str]
    device_ids: Sequence[str]
    frame_times: Sequence[float | None]

    def at(self, i: int) -> SourceInfo:
        """Frame ``i``'s source."""
        return SourceInfo(
            self.kind, self.keys[i], self.peers[i], self.device_ids[i], self.frame_times[i]
        )


class CaptureSink(Protocol):
    """Receives validated frames.

    ``arkit`` (52 float32 weights in canonical order, already clamped to 0..1) and
    ``rotations`` (9 float32 engine channel units) may be views of receiver buffers: they are
    valid only during the call, so a sink that keeps them must copy. ``t_arrival`` is the
    receiver clock (``time.monotonic`` unless a clock was injected) when the datagram arrived.
    The call must not block; an exception from it is caught and counted (``sink_error``).
    """

    def on_frame(
        self,
        session_id: str,
        arkit: F32,
        rotations: F32,
        t_arrival: float,
        source: SourceInfo,
    ) -> None:
        """Take one validated frame for ``session_id`` (copy the arrays to keep them; see the class
        docstring)."""


@runtime_checkable
class BatchCaptureSink(CaptureSink, Protocol):
    """A sink that also takes a whole burst in one call (the server's runtime): a receiver that
    read many datagrams at once hands their frames over together, so the consumer stores them
    with one write per array instead of one call per frame (docs/ingest.md, "Reading a burst at
    once"). Receivers use it when the sink has it and :meth:`CaptureSink.on_frame` otherwise.
    """

    def on_frames(
        self,
        session_ids: Sequence[str],
        arkit: F32,
        rotations: F32,
        t_arrival: float,
        sources: SourceBatch,
    ) -> None:
        """Take ``len(session_ids)`` frames that arrived at ``t_arrival``: row ``i`` of ``arkit``
        (N, 52) and ``rotations`` (N, 9) is ``session_ids[i]``'s, from ``sources.at(i)``. The
        same as :meth:`~CaptureSink.on_frame` for each row in order; the arrays may be receiver
        buffers (copy to keep). An exception counts every frame of the call as ``sink_error``."""


class SessionFactory(Protocol):
    """Makes sure a session exists (creating it with ``rig`` if needed).

    Returns False to refuse (quota reached, bad id); the receiver then drops the frame as
    ``unrouted``. Called once per new routing key, not per frame.
    """

    def __call__(self, session_id: str, rig: str) -> bool: ...


class CollectingSink:
    """A sink that copies every frame into bounded lists (tests, benchmarks, ``record``)."""

    __slots__ = ("arkit", "limit", "rotations", "sessions", "sources", "times")

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self.sessions: list[str] = []
        self.arkit: list[F32] = []
        self.rotations: list[F32] = []
        self.times: list[float] = []
        self.sources: list[SourceInfo] = []

    def on_frame(
        self,
        session_id: str,
        arkit: F32,
        rotations: F32,
        t_arrival: float,
        source: SourceInfo,
    ) -> None:
        """Keep a copy of the frame (the receiver reuses its buffers); past ``limit`` frames are
        ignored."""
        if len(self.times) >= self.limit:
            return
        self.sessions.append(session_id)
        self.arkit.append(np.array(arkit, dtype=np.float32, copy=True))
        self.rotations.append(np.array(rotations, dtype=np.float32, copy=True))
        self.times.append(t_arrival)
        self.sources.append(source)

    def on_frames(
        self,
        session_ids: Sequence[str],
        arkit: F32,
        rotations: F32,
        t_arrival: float,
        sources: SourceBatch,
    ) -> None:
        """Keep a copy of each frame of a burst, as :meth:`on_frame` would one by one."""
        for i, session_id in enumerate(session_ids):
            self.on_frame(session_id, arkit[i], rotations[i], t_arrival, sources.at(i))

    def __len__(self) -> int:
        return len(self.times)
