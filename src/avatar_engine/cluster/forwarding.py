"""Capture frames for a session owned elsewhere go to the owner on its node channel.

A non-owner (UDP receiver or WebSocket publisher) checks the tenant's publish rate here and
sends the frame (``C``); the owner applies it as if it had arrived locally. REST inputs take
the HTTP proxy instead (:mod:`avatar_engine.cluster.proxy`): at 60 frames a second, captures
need the pub/sub path.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avatar_engine.cluster.keys import Keys
from avatar_engine.cluster.link import ClusterCounters, RedisLink, pack
from avatar_engine.cluster.registry import Registry
from avatar_engine.ingest.sink import SourceInfo
from avatar_engine.rigs.arkit import ARKIT_COUNT, ROTATION_COUNT
from avatar_engine.server.placement import PlacementHost
from avatar_engine.server.quotas import MemoryQuotas, QuotaExceededError


class CaptureForwarding:
    """Both ends of a forwarded capture frame."""

    def __init__(
        self, link: RedisLink, keys: Keys, registry: Registry, host: PlacementHost,
        quotas: MemoryQuotas, counters: ClusterCounters,
    ) -> None:  # fmt: skip
        self.link = link
        self.keys = keys
        self.registry = registry
        self.host = host
        self.quotas = quotas
        self.counters = counters

    def forward(
        self, session_id: str, arkit: npt.NDArray[np.float32],
        rotations: npt.NDArray[np.float32], source: SourceInfo,
    ) -> bool:  # fmt: skip
        """Capture for a session owned elsewhere: check the quota here, send to the owner.
        False if the registry does not know the session."""
        meta = self.registry.meta.get(session_id)
        owner = self.registry.owners.get(session_id)
        if meta is None:
            return False
        if owner is None or owner == self.registry.node_id:
            self.host.reject_publish()  # moving right now: this frame is lost
            return True
        try:
            self.quotas.allow_publish(meta.tenant)
        except QuotaExceededError:
            self.host.reject_publish()
            return True
        message = ["C", session_id, np.ascontiguousarray(arkit, np.float32).tobytes(),
                   np.ascontiguousarray(rotations, np.float32).tobytes(), source.kind]  # fmt: skip
        if self.link.publish(self.keys.node_channel(owner), pack(message)):
            self.counters.captures_forwarded += 1
        else:
            self.host.reject_publish()
        return True

    def apply(self, session_id: str, arkit: bytes, rotations: bytes, kind: object) -> None:
        """A frame forwarded to this node (the owner)."""
        applied = False
        if len(arkit) == 4 * ARKIT_COUNT and len(rotations) == 4 * ROTATION_COUNT:
            arkit_in = np.frombuffer(arkit, np.float32)
            rotations_in = np.frombuffer(rotations, np.float32)
            applied = self.host.apply_forwarded_capture(session_id, arkit_in, rotations_in,
                                                        str(kind))  # fmt: skip
        if applied:
            self.counters.captures_applied += 1
        else:
            self.host.reject_publish()
