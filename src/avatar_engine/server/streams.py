"""Stream groups: one encoder slot per (session, LOD, delta mode, bit depth), many subscribers.

The tick encodes every due stream of a rig in one :class:`BatchEncoder` call and hands the
same bytes to every subscriber of the group. A subscriber joining (or switching LOD) gets a
private keyframe built from what the group's decoders hold, so nobody else is disturbed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from avatar_engine.codec.encoder import KEYFRAME, NONE, BatchEncoder
from avatar_engine.codec.messages import StreamParams, encode_hello
from avatar_engine.codec.schema import StreamSchema
from avatar_engine.codec.wire import AudioCodec, DeltaMode
from avatar_engine.rigs.profile import RigProfile
from avatar_engine.rows import RowTable
from avatar_engine.server.fanout import (
    DataChannelLink,
    DirectLink,
    FrameLink,
    GroupTable,
    ViewerSet,
    current_link,
    offer_to_groups,
)
from avatar_engine.transport.outbox import Outbox
from avatar_engine.types import B1, F32

INITIAL_SLOTS = 64


class StreamKey(NamedTuple):
    """What identifies a shared stream: session, level of detail, delta mode and bit depth.
    Subscribers with the same key share one encoder slot."""

    session: str
    lod: int
    mode: DeltaMode
    bits: int


@dataclass(eq=False)
class Subscriber:
    """One connected viewer of one session (any transport)."""

    session: str
    tenant: str
    transport: str
    key: StreamKey
    sid: int
    connected_t: float
    group: StreamGroup | None = None
    outbox: Outbox = field(init=False)
    _direct: FrameLink | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.outbox = Outbox(on_resync=self._lost_a_frame)
        self.direct = current_link() if self.transport == "websocket" else None

    @property
    def direct(self) -> FrameLink | None:
        """A viewer's socket or data channel, for frames sent from the fan-out pass
        (``server/fanout.py``); WebSocket viewers get theirs from the connection. Set it before
        the viewer joins a group: a group notes a socket's link when the viewer joins."""
        return self._direct

    @direct.setter
    def direct(self, link: FrameLink | None) -> None:
        self._direct = link
        # A socket link is told when the outbox holds something (no direct write then) and
        # counts its frames as the outbox's; a data channel asks the outbox per frame.
        self.outbox.attach(link if type(link) is DirectLink else None)

    @property
    def frames_lost(self) -> int:
        """Frames sent on the viewer's data channel that the kernel refused (``/stats``
        ``frames.lost``); a WebSocket loses none: a failed write ends its connection."""
        link = self._direct
        return link.lost if isinstance(link, DataChannelLink) else 0

    def _lost_a_frame(self) -> None:
        if self.group is not None:
            self.group.needs_resync.add(self.group)


@dataclass(eq=False)
class StreamGroup:
    """The subscribers of one stream key and the encoder slot and stream id they share."""

    key: StreamKey
    slot: int
    sid: int
    subscribers: ViewerSet[Subscriber] = field(default_factory=ViewerSet)
    """The subscribers, with their sockets' rows for the one native call of a fan-out pass."""
    needs_resync: set[StreamGroup] = field(default_factory=set)
    """The rig's set of groups where a subscriber lost a frame (shared; drained per tick)."""


class RigStreams:
    """Every stream of the sessions on one rig, and their shared batch encoder."""

    def __init__(
        self,
        rig: RigProfile,
        params_for: Callable[[StreamKey], StreamParams],
        rows: RowTable[str],
    ) -> None:
        self.rig = rig
        self._row_of = rows.row
        rows.on_move(self._session_moved)
        self.schema = StreamSchema.from_rig(rig)
        self._params_for = params_for
        self.encoder = BatchEncoder(self.schema, INITIAL_SLOTS)
        self.groups: dict[StreamKey, StreamGroup] = {}
        self._by_slot: dict[int, StreamGroup] = {}
        self._needs_resync: set[StreamGroup] = set()
        self._table: GroupTable | None = None
        """Every slot's viewer rows for the tick's send pass; None after a group's viewers
        changed (its set reports each add and removal) or the encoder grew. A group opened
        or closed without viewers leaves it valid: its slot counts 0 either way."""

    def hello(self, sid: int, params: StreamParams, audio: AudioCodec = AudioCodec.OFF) -> bytes:
        """The HELLO that opens stream ``sid`` for this rig's schema."""
        return encode_hello(sid, self.schema, params, audio)

    def group(self, key: StreamKey, sid: int) -> StreamGroup:
        """The group for ``key``, opening an encoder slot on first use."""
        existing = self.groups.get(key)
        if existing is not None:
            return existing
        if not (self.encoder.active == 0).any():
            self._grow()
        slot = self.encoder.add_stream(
            self._row_of(key.session), sid, key.lod, self._params_for(key)
        )
        viewers = ViewerSet[Subscriber](on_change=self._viewers_changed)
        group = self.groups[key] = StreamGroup(
            key, slot, sid, subscribers=viewers, needs_resync=self._needs_resync
        )
        self._by_slot[slot] = group
        return group

    def _viewers_changed(self) -> None:
        self._table = None

    def drop_if_empty(self, group: StreamGroup) -> None:
        """Release the group's encoder slot once its last subscriber has left."""
        if not group.subscribers and self.groups.get(group.key) is group:
            self.encoder.remove_stream(group.slot)
            del self.groups[group.key]
            del self._by_slot[group.slot]

    def _session_moved(self, src: int, dst: int) -> None:
        """The rig group's row table moved a session from row ``src`` to ``dst``."""
        self.encoder.move_row(src, dst)

    def drop_session(self, session: str) -> list[Subscriber]:
        """Close every group of a deleted session; returns the subscribers that were on it."""
        gone: list[Subscriber] = []
        for group in [g for g in self.groups.values() if g.key.session == session]:
            gone.extend(group.subscribers)
            group.subscribers.clear()
            self.drop_if_empty(group)
        return gone

    def iter_groups(self, session: str) -> Iterator[StreamGroup]:
        """The stream groups of one session (every level and mode it is watched at)."""
        return (g for g in self.groups.values() if g.key.session == session)

    def private_keyframe(self, group: StreamGroup) -> bytes | None:
        """A keyframe for a subscriber joining a group mid-stream, so it does not wait for the next
        shared one; None before the group's first frame."""
        return self.encoder.keyframe_for_new_subscriber(group.slot)

    def encode_and_fan_out(
        self,
        t_ms: int,
        morphs: F32,
        channels: F32,
        fresh_rows: B1 | None = None,
    ) -> int:
        """Encode every due stream once and offer the bytes to its subscribers; returns bytes.

        Streams of sessions in ``fresh_rows`` (capture just arrived) send now rather than at
        their next slot, so a capture frame does not wait for the schedule.
        """
        if not self.groups:
            return 0
        enc = self.encoder
        following = np.zeros(0, np.intp)
        if fresh_rows is not None and fresh_rows.any():
            active = np.flatnonzero(enc.active)
            following = active[fresh_rows[enc.row[active]]]
            enc.make_due(following, t_ms)
        tick = enc.encode(t_ms, morphs, channels)
        if following.size:
            enc.follow_input(following[tick.kinds[following] != NONE], t_ms)
        table = self._table or self._viewer_table()
        order = np.flatnonzero((tick.kinds != NONE) & table.watched)
        sent = 0
        if order.size:  # every group's direct writes in one native call, from the tick buffer
            offer_to_groups(table, tick.buffer, tick.offsets, order, tick.kinds == KEYFRAME)
            sizes = tick.offsets[order + 1] - tick.offsets[order]
            sent = int(sizes @ table.counts[order])
        while self._needs_resync:  # only groups where someone lost a frame
            self._resync(self._needs_resync.pop())
        return sent

    def _viewer_table(self) -> GroupTable:
        """The send pass's table of every slot's viewers (built again after a change)."""
        by_slot = self._by_slot
        self._table = GroupTable(
            [g.subscribers if (g := by_slot.get(k)) else None for k in range(self.encoder.capacity)]
        )
        return self._table

    def _resync(self, group: StreamGroup) -> None:
        """Subscribers that lost a frame get a private keyframe (nobody else is disturbed)."""
        waiting = [s for s in group.subscribers if s.outbox.awaiting_keyframe]
        if not waiting:
            return
        keyframe = self.private_keyframe(group)
        if keyframe is None:
            self.encoder.force_keyframe(group.slot)
            return
        for sub in waiting:
            sub.outbox.offer_frame(keyframe, keyframe=True)

    def _grow(self) -> None:
        """Double the encoder; every stream restarts with a keyframe (a rare event)."""
        old_groups = list(self.groups.values())
        self.encoder = BatchEncoder(self.schema, self.encoder.capacity * 2)
        self._by_slot.clear()
        self._table = None
        for group in old_groups:
            group.slot = self.encoder.add_stream(
                self._row_of(group.key.session),
                group.sid,
                group.key.lod,
                self._params_for(group.key),
            )
            self._by_slot[group.slot] = group
