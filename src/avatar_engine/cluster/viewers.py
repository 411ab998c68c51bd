"""The relaying side: this node's viewers of sessions owned by other nodes.

Subscribers of a session owned elsewhere join a group channel (one :class:`RemoteGroup` per
stream group this node needs); the owner publishes every group some node asks for (``W``
requests, refreshed every quarter lease, expiring) once, and the node hands the bytes to its
local subscribers (:mod:`avatar_engine.cluster.relay`). A late joiner asks the owner for a
private keyframe (``K``) and waits only for the round trip. Both requests name the codecs
the group's viewers hear the voice in; the owner relays it on the same channel. A viewer's
hello names its codec only when the owner is a node that relays the voice (the registry's
voice nodes): with an older owner it says no audio.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Final

from avatar_engine.cluster.keys import Keys, stream_sid
from avatar_engine.cluster.link import ClusterCounters, RedisLink, pack
from avatar_engine.cluster.registry import Registry, SessionMeta
from avatar_engine.cluster.relay import FRAME_KINDS, RemoteGroup
from avatar_engine.codec.messages import encode_event, encode_hello
from avatar_engine.codec.schema import StreamSchema
from avatar_engine.codec.wire import AudioCodec, DeltaMode, EventKind
from avatar_engine.engine.engine import SessionNotFoundError
from avatar_engine.engine.sessions import SessionState
from avatar_engine.rigs.profile import load_rig
from avatar_engine.server.auth import Principal
from avatar_engine.server.placement import PlacementHost
from avatar_engine.server.quotas import MemoryQuotas
from avatar_engine.server.streams import StreamKey, Subscriber
from avatar_engine.transport.outbox import OutboxOverflowError

KEYFRAME_REQUEST_GAP_S: Final = 0.1
"""Closest spacing of keyframe requests per relayed group (docs/protocol.md §3.4)."""


class RemoteViewers:
    """Viewers on this node of sessions animated elsewhere, by group channel."""

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
        self.groups: dict[str, RemoteGroup] = {}
        """By channel name."""
        self.subs: dict[Subscriber, RemoteGroup] = {}
        self.audio: dict[Subscriber, AudioCodec] = {}
        """The codec each relayed viewer asked to hear the voice in."""
        self._schemas: dict[str, StreamSchema] = {}

    def authorize(self, principal: Principal, session_id: str) -> SessionMeta:
        """Like ``Runtime.session_for`` for a session owned elsewhere (other tenants: 404)."""
        meta = self.registry.meta.get(session_id)
        if meta is None or (principal.sessions is None and meta.tenant != principal.tenant):
            raise SessionNotFoundError(session_id)
        return meta

    def subscribe(
        self, principal: Principal, session_id: str, *,
        lod: int, mode: DeltaMode, bits: int, transport: str, audio: AudioCodec,
    ) -> Subscriber:  # fmt: skip
        """A viewer of a session owned elsewhere: hello now, frames and voice from the relay."""
        meta = self.authorize(principal, session_id)
        if not 0 <= lod <= 3:
            raise ValueError(f"lod must be 0..3, not {lod}")
        if bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, not {bits}")
        host = self.host
        schema = self._schema(meta.rig)
        self.quotas.acquire_subscriber(principal.tenant)
        sid = stream_sid(session_id, mode, bits)
        key = StreamKey(session_id, lod, mode, bits)
        sub = Subscriber(session_id, principal.tenant, transport, key, sid, host.now())
        if audio is not AudioCodec.OFF:
            self.audio[sub] = audio
        sub.outbox.put_control(encode_hello(sid, schema, host.stream_params(key), self._heard(sub)))
        self.attach(sub)
        host.add_viewer(sub, counted=True)
        return sub

    def set_lod(self, sub: Subscriber, lod: int) -> None:
        """Move a relayed viewer to another level's group channel."""
        if not 0 <= lod <= 3:
            raise ValueError(f"lod must be 0..3, not {lod}")
        if lod == sub.key.lod:
            return
        audio = self.audio.get(sub)
        self.detach(sub)
        if audio is not None:
            self.audio[sub] = audio
        sub.key = sub.key._replace(lod=lod)
        self.attach(sub)

    def request_keyframe(self, sub: Subscriber) -> None:
        """The viewer lost a frame: wait for a keyframe, ask the owner for one."""
        group = self.subs.get(sub)
        if group is not None:
            sub.outbox.awaiting_keyframe = True
            self.ask_keyframe(group, force=False)

    def attach(self, sub: Subscriber) -> None:
        """Put a viewer on its group channel (joined on first use), waiting for a keyframe."""
        channel = self.keys.group_channel(sub.key)
        group = self.groups.get(channel)
        sub.group = None
        sub.outbox.awaiting_keyframe = True  # relayed deltas start after a keyframe
        joining = group is None
        if group is None:
            group = self.groups[channel] = RemoteGroup(sub.key.session, sub.key, channel)
        group.subs.add(sub)
        self.subs[sub] = group
        heard = self._heard(sub)
        new_codec = heard is not AudioCodec.OFF and heard not in group.codecs.values()
        if heard is not AudioCodec.OFF:
            group.codecs[sub] = heard
        if joining:
            self.link.spawn(self._join(group))
        else:  # a request still out serves this viewer too (unless it names a new codec):
            # hundreds joining at once cost a few requests and answers per group, not one each
            self.ask_keyframe(group, force=new_codec or not group.answer_due)

    def _heard(self, sub: Subscriber) -> AudioCodec:
        """The codec ``sub`` hears: what it asked for if the owner relays the voice, else OFF
        (its hello says so, rather than promising a voice that never comes)."""
        owner = self.registry.owners.get(sub.session)
        if owner is None or owner not in self.registry.voice_nodes:
            return AudioCodec.OFF
        return self.audio.get(sub, AudioCodec.OFF)

    def detach(self, sub: Subscriber) -> None:
        """Take a viewer off its group channel (left when it was the last)."""
        self.audio.pop(sub, None)
        group = self.subs.pop(sub, None)
        if group is None:
            return
        group.subs.discard(sub)
        group.codecs.pop(sub, None)
        if not group.subs and self.groups.get(group.channel) is group:
            del self.groups[group.channel]
            self.link.spawn(self.link.pubsub_call("unsubscribe", group.channel))

    async def _join(self, group: RemoteGroup) -> None:
        """Listen to the group's channel first, then ask for it: no frame falls in between."""
        await self.link.pubsub_call("subscribe", group.channel)
        self.ask_keyframe(group, force=True)

    def ask_keyframe(self, group: RemoteGroup, *, force: bool) -> None:
        """``K`` to the owner: relay this group (if not yet) and send me a private keyframe."""
        now = time.monotonic()
        if not force and now - group.last_request < KEYFRAME_REQUEST_GAP_S:
            return
        owner = self.registry.owners.get(group.session)
        if owner is None or owner == self.registry.node_id:
            return
        group.last_request = now
        key = group.key
        self.counters.keyframe_requests += 1
        me = self.registry.node_id
        ask = ["K", key.session, key.lod, int(key.mode), key.bits, me, group.wanted_codecs()]
        group.answer_due = self.link.publish(self.keys.node_channel(owner), pack(ask))

    def ask_all(self) -> None:
        """Every group from a keyframe (the listener reconnected, or Redis came back)."""
        for group in self.groups.values():
            self.ask_keyframe(group, force=True)

    def refresh_wants(self) -> None:
        """Keep the owners relaying what this node needs (``W``, every registry round)."""
        me = self.registry.node_id
        for group in self.groups.values():
            owner = self.registry.owners.get(group.session)
            if owner is not None and owner != me:
                key = group.key
                want = ["W", key.session, key.lod, int(key.mode), key.bits, group.wanted_codecs()]
                self.link.publish(self.keys.node_channel(owner), pack(want))

    def deliver(self, channel: str, data: bytes) -> bool:
        """A group channel's message to its subscribers; False if no group has that name."""
        group = self.groups.get(channel)
        if group is None:
            return False
        self.counters.relayed_in += 1
        if group.deliver(data):
            self.ask_keyframe(group, force=False)
        return True

    def deliver_all(
        self, messages: list[tuple[bytes, bytes]], otherwise: Callable[[str, bytes], None]
    ) -> int:
        """Pub/sub messages (channel, data) in the order they came; returns how many were
        handled. Each group's frames that came without another message between go to its
        viewers in one pass (:meth:`RemoteGroup.deliver_frames`). Any other message (an event,
        a private keyframe, a request) is handled after everything before it, by
        :meth:`deliver` or, on a channel that is no group's, by ``otherwise``; then this
        returns, so the caller lets the viewers' writers send what it queued (a joiner's
        keyframe, an event) before the frames behind it: offered at once, those frames would
        find the outboxes still full and be skipped."""
        runs: dict[RemoteGroup, list[bytes]] = {}
        for n, (channel, data) in enumerate(messages, 1):
            name = channel.decode()
            group = self.groups.get(name)
            if group is not None and data[:1] and data[0] in FRAME_KINDS:
                runs.setdefault(group, []).append(data)
                continue
            self._deliver_runs(runs)
            if not self.deliver(name, data):
                otherwise(name, data)
            return n
        self._deliver_runs(runs)
        return len(messages)

    def _deliver_runs(self, runs: dict[RemoteGroup, list[bytes]]) -> None:
        for group, frames in runs.items():
            self.counters.relayed_in += len(frames)
            if group.deliver_frames(frames):
                self.ask_keyframe(group, force=False)
        runs.clear()

    def offer_keyframe(self, key: StreamKey, keyframe: bytes, state_event: bytes | None) -> None:
        """The owner's answer to ``K`` (a ``k``)."""
        group = self.groups.get(self.keys.group_channel(key))
        if group is not None:
            group.offer_keyframe(keyframe, state_event)

    def interested(self) -> set[str]:
        """Sessions this node relays to its own viewers."""
        return {g.session for g in self.groups.values()}

    # -- when the owner changes --------------------------------------------------------------

    def owner_moved(self, session_id: str, *, restarted: bool) -> None:
        """A session has a new live owner: ask it for keyframes (``restarted``: its stream
        starts over, so the viewers get a new hello first)."""
        for group in self.groups.values():
            if group.session == session_id:
                for sub in group.subs:
                    if restarted:
                        self.rehello(sub)
                    sub.outbox.awaiting_keyframe = True
                self.ask_keyframe(group, force=True)

    def take_back(self, session_id: str) -> list[tuple[Subscriber, AudioCodec]]:
        """This node now animates the session: its relayed viewers leave the relay (with a
        new hello) to be served first-hand; returns them with the codec they hear."""
        taken: list[tuple[Subscriber, AudioCodec]] = []
        for channel, group in list(self.groups.items()):
            if group.session != session_id:
                continue
            del self.groups[channel]
            self.link.spawn(self.link.pubsub_call("unsubscribe", channel))
            for sub in group.subs:
                self.subs.pop(sub, None)
                audio = self.audio.pop(sub, AudioCodec.OFF)
                self.rehello(sub, audio)
                taken.append((sub, audio))
            group.subs.clear()  # the group no longer holds their links
        return taken

    def tell_state(self, session_id: str, state: SessionState) -> None:
        """The owner vanished: tell relayed subscribers now rather than after the takeover."""
        t_ms = self.host.t_ms()
        for group in self.groups.values():
            if group.session != session_id:
                continue
            for sub in list(group.subs):
                with contextlib.suppress(Exception):
                    sub.outbox.put_control(encode_event(sub.sid, t_ms, EventKind.STATE, state))

    def close_session(self, session_id: str) -> None:
        """Deleted on its owner: close the relayed subscribers (the owner closed its own)."""
        for group in list(self.groups.values()):
            if group.session == session_id:
                for sub in list(group.subs):
                    sub.outbox.close()

    def rehello(self, sub: Subscriber, audio: AudioCodec | None = None) -> None:
        """A new owner's stream restarts its sequence numbers; the protocol's way to say so is
        a new hello for the same sid (the decoder forgets the old stream and waits for a
        keyframe, instead of taking the new seq 0 keyframe for a stale one). ``audio``: the
        codec to name (this node serves the voice now); by default the relay's."""
        meta = self.registry.meta.get(sub.session)
        if meta is None:
            return
        params = self.host.stream_params(sub.key)
        group = self.subs.get(sub)
        heard = self._heard(sub) if audio is None else audio
        if group is not None:  # a new owner may relay the voice or not: say which
            group.codecs.pop(sub, None)
            if heard is not AudioCodec.OFF:
                group.codecs[sub] = heard
        hello = encode_hello(sub.sid, self._schema(meta.rig), params, heard)
        sub.outbox.awaiting_keyframe = True
        with contextlib.suppress(OutboxOverflowError):
            sub.outbox.put_control(hello)

    def _schema(self, rig: str) -> StreamSchema:
        schema = self._schemas.get(rig)
        if schema is None:
            streams = next((s for s in self.host.rig_streams.values() if s.rig.name == rig),
                           None)  # fmt: skip
            schema = streams.schema if streams else StreamSchema.from_rig(load_rig(rig))
            self._schemas[rig] = schema
        return schema
