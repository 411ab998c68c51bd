"""Redis key and channel names, stream ids, and the relay's tiny message framing.

Every key starts with one prefix (default ``ae``), so several clusters can share a Redis and a
Redis Cluster deployment can put everything in one hash slot with a prefix like ``{ae}`` (the
quota scripts read keys they cannot declare up front, which Redis Cluster only allows within
one slot).

Relay messages on a group channel are the encoder's bytes with one leading byte saying what
they are, so a relaying node never parses msgpack on the hot path::

    0x01 keyframe | 0x02 delta | 0x03 control (an EVENT message)   + the protocol message
"""

from __future__ import annotations

import zlib
from typing import Final

from avatar_engine.codec.wire import DeltaMode
from avatar_engine.server.streams import StreamKey

KIND_KEYFRAME: Final = 1
KIND_DELTA: Final = 2
KIND_CONTROL: Final = 3
KIND_AUDIO: Final = 4
"""An AUDIO message for one codec's listeners: the kind, the codec's byte, the message."""
KIND_VOICE_CUT: Final = 5
"""A VOICE_CUT for one codec's listeners, laid out like :data:`KIND_AUDIO`."""


def stream_sid(session: str, mode: DeltaMode, bits: int) -> int:
    """The stream id every node uses for (session, mode, bits): a pure function of the key.

    Frames carry the owner's sid, and a relaying node announced that sid in its own hello, so
    all nodes must agree without asking anyone; after a failover the new owner computes the
    same value and subscribers' decoders keep the stream. 16 bits (3 bytes on the wire, against
    5 for a full u32): a WebSocket or WebRTC subscription carries exactly one stream today, so
    two sessions hashing alike never meet in one decoder. Never 0.
    """
    h = zlib.crc32(f"{session}|{int(mode)}|{bits}".encode())
    return 1 + h % 0xFFFF


class Keys:
    """Names of everything the cluster keeps in Redis."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "ae") -> None:
        self.prefix = prefix

    # -- registry ---------------------------------------------------------------------------
    @property
    def sessions(self) -> str:
        """SET of every session id in the cluster."""
        return f"{self.prefix}:sessions"

    def meta(self, session: str) -> str:
        """HASH rig, tenant, fps, lod, source: what a new owner needs to recreate a session."""
        return f"{self.prefix}:meta:{session}"

    def owner(self, session: str) -> str:
        """STRING owner node id, with the lease as its expiry (PX)."""
        return f"{self.prefix}:owner:{session}"

    @property
    def nodes(self) -> str:
        """SET of node ids ever seen (pruned lazily; liveness is :meth:`node`)."""
        return f"{self.prefix}:nodes"

    def node(self, node: str) -> str:
        """STRING the node's advertised HTTP URL, expiring unless the node is alive."""
        return f"{self.prefix}:node:{node}"

    @property
    def voice_nodes(self) -> str:
        """SET of node ids whose relays carry the voice (older nodes never join it)."""
        return f"{self.prefix}:voice-nodes"

    @property
    def epoch(self) -> str:
        """STRING wall-clock ms at the cluster's first start: the shared stream clock's zero."""
        return f"{self.prefix}:epoch"

    # -- quotas -----------------------------------------------------------------------------
    def quota_sessions(self, tenant: str) -> str:
        """Global count of a tenant's sessions (all nodes)."""
        return f"{self.prefix}:q:sessions:{tenant}"

    def quota_subscribers(self, tenant: str, node: str) -> str:
        """One node's count of a tenant's subscribers (expires with the node)."""
        return f"{self.prefix}:q:subs:{tenant}:{node}"

    def quota_publish(self, tenant: str, window: int) -> str:
        """A tenant's capture messages in one wall-clock second (all nodes)."""
        return f"{self.prefix}:q:pub:{tenant}:{window}"

    # -- pub/sub channels -------------------------------------------------------------------
    def node_channel(self, node: str) -> str:
        """Requests to a node (inputs, keyframe and relay requests) and its replies."""
        return f"{self.prefix}:n:{node}"

    @property
    def broadcast(self) -> str:
        """Registry changes every node caches: session created, deleted, moved."""
        return f"{self.prefix}:b"

    def group_channel(self, key: StreamKey) -> str:
        """Frames of one (session, LOD, mode, bits) group, published once by the owner."""
        return f"{self.prefix}:g:{key.session}:{key.lod}:{int(key.mode)}:{key.bits}"
