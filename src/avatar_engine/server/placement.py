"""Where sessions live: one process (:class:`LocalPlacement`) or a Redis cluster.

The :class:`Runtime <avatar_engine.server.runtime.Runtime>` animates the sessions it holds and
asks its placement everything that depends on where the others are: which stream ids to use,
whether a session is owned by another node, how to serve a viewer or a capture frame of such a
session, and which background work keeps the placement true. The single-process answer is
:class:`LocalPlacement` (nothing is elsewhere); the cluster's is
:class:`~avatar_engine.cluster.placement.ClusterPlacement` (docs/deploy.md), which the command
line hands to the runtime with ``--redis``. The runtime calls both the same way, never asking
which one it has.

A placement reaches back into the runtime only through :class:`PlacementHost`, the few
operations a node needs to adopt, hand over or relay a session. This module imports neither
the runtime nor the cluster, so both import it and not each other.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from avatar_engine.codec.messages import StreamParams
from avatar_engine.codec.wire import AudioCodec, DeltaMode
from avatar_engine.engine.sessions import Session
from avatar_engine.ingest.sink import SourceInfo
from avatar_engine.server.auth import Principal
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.quotas import MemoryQuotas, QuotaLimits
from avatar_engine.server.scheduler import Clock
from avatar_engine.server.streams import RigStreams, StreamKey, Subscriber
from avatar_engine.server.voice_out import VoiceOut

if TYPE_CHECKING:
    from starlette.applications import Starlette


class PlacementHost(Protocol):
    """What a placement may ask of the runtime whose sessions it places."""

    options: ServerOptions
    clock: Clock
    t0: float
    """Stream time origin (a cluster moves it once, to the cluster's shared epoch)."""
    rig_streams: dict[str, RigStreams]
    voice: VoiceOut
    """The sessions' voices (a cluster relays them to viewers on other nodes)."""

    def now(self) -> float:
        """The runtime's clock."""
        ...

    def t_ms(self, t: float | None = None) -> int:
        """Stream time in ms (of ``t``, or now)."""
        ...

    def local_session(self, session_id: str) -> Session | None:
        """The session if this process animates it."""
        ...

    def take_over(self, session_id: str, meta: SessionMeta) -> Session:
        """Animate a session another node animated (degraded until input arrives again)."""
        ...

    def end_here(self, session: Session) -> list[Subscriber]:
        """Stop animating a session here; returns its stream viewers, detached, to close or
        to move (the runtime's one session teardown)."""
        ...

    def streams_of(self, session: Session) -> RigStreams:
        """The encoder and stream groups of the session's rig."""
        ...

    def stream_params(self, key: StreamKey) -> StreamParams:
        """The parameters a stream's hello announces."""
        ...

    def add_viewer(self, sub: Subscriber, *, counted: bool) -> None:
        """A subscriber the placement made (a relayed viewer, or a relay to other nodes);
        ``counted`` adds it to the subscribers served (relays are not)."""
        ...

    def remove_viewer(self, sub: Subscriber) -> None:
        """Undo ``add_viewer``."""
        ...

    def apply_forwarded_capture(
        self, session_id: str, arkit: npt.NDArray[np.float32],
        rotations: npt.NDArray[np.float32], kind: str,
    ) -> bool:  # fmt: skip
        """A capture frame another node forwarded (its quota checked there); False if this
        process does not animate the session."""
        ...

    def reject_publish(self) -> None:
        """Count one capture frame refused (quota, or its session moving)."""
        ...


class SessionMeta(Protocol):
    """What another node knows of a session: enough to recreate it."""

    @property
    def rig(self) -> str:
        """Rig name."""
        ...

    @property
    def tenant(self) -> str:
        """Owning tenant."""
        ...

    @property
    def fps(self) -> int:
        """Stream rate."""
        ...

    @property
    def lod(self) -> int:
        """Default level of detail."""
        ...

    @property
    def source(self) -> str:
        """What feeds it (``api``, ``capture``, ``publish-ws``)."""
        ...


class Placement(Protocol):
    """Where sessions live, and what the runtime does about sessions that live elsewhere."""

    @property
    def quotas(self) -> MemoryQuotas:
        """Tenant quotas (per process, or global across a cluster)."""
        ...

    def sid(self, session_id: str, mode: DeltaMode, bits: int) -> int:
        """The stream id a session's stream is announced with (the same on every node)."""
        ...

    def owned_elsewhere(self, session_id: str) -> bool:
        """A session another node animates (this process serves it through that node)."""
        ...

    def check_new(self, session_id: str | None) -> None:
        """Refuse a new session's id that another node already has."""
        ...

    def authorize(self, principal: Principal, session_id: str) -> None:
        """Like ``Runtime.session_for`` for a session owned elsewhere (other tenants: 404)."""
        ...

    def on_created(self, session: Session) -> None:
        """A session was made in this process."""
        ...

    def on_deleted(self, session: Session) -> None:
        """A session of this process was deleted (after the runtime's teardown)."""
        ...

    def subscribe_remote(
        self, principal: Principal, session_id: str, *,
        lod: int, mode: DeltaMode, bits: int, transport: str, audio: AudioCodec,
    ) -> Subscriber:  # fmt: skip
        """A viewer of a session owned elsewhere (``owned_elsewhere`` is true)."""
        ...

    def is_remote(self, sub: Subscriber) -> bool:
        """A viewer made by ``subscribe_remote`` (its frames come from another node)."""
        ...

    def set_remote_lod(self, sub: Subscriber, lod: int) -> None:
        """``Runtime.set_lod`` for a remote viewer."""
        ...

    def request_remote_keyframe(self, sub: Subscriber) -> None:
        """``Runtime.request_keyframe`` for a remote viewer."""
        ...

    def forget(self, sub: Subscriber) -> None:
        """A subscriber is leaving (any kind)."""
        ...

    def forward_capture(
        self, session_id: str, arkit: npt.NDArray[np.float32],
        rotations: npt.NDArray[np.float32], source: SourceInfo,
    ) -> bool:  # fmt: skip
        """Capture for a session not animated here: True if sent to (or lost on the way to)
        its owner, False if no node knows the session."""
        ...

    def health(self) -> dict[str, object]:
        """Fields ``/health`` adds (``status`` "degraded" while the placement is impaired)."""
        ...

    def stats(self) -> dict[str, object]:
        """Fields ``/stats`` adds."""
        ...

    def install(self, app: Starlette) -> None:
        """Add what the HTTP app needs (the cluster's proxy to owners)."""
        ...

    async def start(self) -> None:
        """Start the background work (before any session exists)."""
        ...

    async def stop(self) -> None:
        """Stop it, handing over what this process held."""
        ...


PlacementFactory = Callable[[PlacementHost], Placement]
"""Makes a runtime's placement (given the runtime): how the command line picks the cluster's."""


class LocalPlacement:
    """Every session lives in this process: nothing is elsewhere, nothing runs behind."""

    def __init__(self, options: ServerOptions, clock: Clock) -> None:
        self.quotas = MemoryQuotas(
            QuotaLimits(options.max_sessions, options.max_subscribers, options.max_publish_rate),
            clock.now,
        )
        self._sids: dict[tuple[str, DeltaMode, int], int] = {}
        self._next_sid = itertools.count(1)

    def sid(self, session_id: str, mode: DeltaMode, bits: int) -> int:
        """Stream ids numbered in order of first use (forgotten with the session)."""
        key = (session_id, mode, bits)
        sid = self._sids.get(key)
        if sid is None:
            sid = self._sids[key] = next(self._next_sid) & 0xFFFFFFFF
        return sid

    def owned_elsewhere(self, session_id: str) -> bool:
        """Nothing is elsewhere."""
        return False

    def check_new(self, session_id: str | None) -> None:
        """Every id is free here (the engine refuses its own duplicates)."""
        return

    def authorize(self, principal: Principal, session_id: str) -> None:
        """Never called (``owned_elsewhere`` is always False)."""
        raise AssertionError("no session is owned elsewhere")

    def on_created(self, session: Session) -> None:
        """Nothing to record."""
        return

    def on_deleted(self, session: Session) -> None:
        """The session's stream ids go with it."""
        for key in [k for k in self._sids if k[0] == session.id]:  # stream ids die with it
            del self._sids[key]

    def subscribe_remote(
        self, principal: Principal, session_id: str, *,
        lod: int, mode: DeltaMode, bits: int, transport: str, audio: AudioCodec,
    ) -> Subscriber:  # fmt: skip
        """Never called (``owned_elsewhere`` is always False)."""
        raise AssertionError("no session is owned elsewhere")

    def is_remote(self, sub: Subscriber) -> bool:
        """No viewer is remote."""
        return False

    def set_remote_lod(self, sub: Subscriber, lod: int) -> None:
        """Never called (no viewer is remote)."""
        raise AssertionError("no subscriber is remote")

    def request_remote_keyframe(self, sub: Subscriber) -> None:
        """Never called (no viewer is remote)."""
        raise AssertionError("no subscriber is remote")

    def forget(self, sub: Subscriber) -> None:
        """Nothing kept per subscriber."""
        return

    def forward_capture(
        self, session_id: str, arkit: npt.NDArray[np.float32],
        rotations: npt.NDArray[np.float32], source: SourceInfo,
    ) -> bool:  # fmt: skip
        """No other node to send it to: the frame is refused."""
        return False

    def health(self) -> dict[str, object]:
        """Nothing to add."""
        return {}

    def stats(self) -> dict[str, object]:
        """Nothing to add."""
        return {}

    def install(self, app: Starlette) -> None:
        """No middleware."""
        return

    async def start(self) -> None:
        """Nothing runs in the background."""
        return

    async def stop(self) -> None:
        """Nothing to hand over."""
        return
