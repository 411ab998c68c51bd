"""The owner's side of the relay: one publishing subscriber per stream group other nodes want.

A :class:`~avatar_engine.cluster.relay.RelayOutbox` stands in the stream group as one more
subscriber; it lives while some node keeps asking for it (``W``/``K`` requests every quarter
lease) and is dropped after six missed refreshes. A ``K`` also gets a private keyframe back on
the asking node's channel (``k``), so a late joiner there waits only for the round trip.
The requests also name the codecs the asking nodes' viewers hear the voice in: the relay keeps
one voice listener per codec (:class:`~avatar_engine.cluster.relay.VoiceRelayOutbox`), so the
voice is still encoded once per (session, codec) here, whatever the number of nodes.
"""

from __future__ import annotations

import time

from avatar_engine.cluster.keys import Keys, stream_sid
from avatar_engine.cluster.link import RedisLink, pack
from avatar_engine.cluster.relay import Relay, RelayOutbox, VoiceRelayOutbox
from avatar_engine.codec.messages import encode_event
from avatar_engine.codec.wire import AudioCodec, EventKind
from avatar_engine.server.placement import PlacementHost
from avatar_engine.server.streams import StreamKey, Subscriber


class OwnerRelays:
    """The relays of this node's sessions, by (session, stream key)."""

    def __init__(self, link: RedisLink, keys: Keys, host: PlacementHost, lease_s: float) -> None:
        self.link = link
        self.keys = keys
        self.host = host
        self.lease_s = lease_s
        self.relays: dict[tuple[str, StreamKey], Relay] = {}

    def want(self, key: StreamKey, reply_to: str | None, codecs: list[int] | None = None) -> None:
        """Another node asks for a group (``W``), and for a private keyframe (``K``:
        ``reply_to`` names the node), with the voice in ``codecs`` (None: a node that asks
        for no voice, such as an older one)."""
        relay = self._ensure(key)
        if relay is None:
            return
        self._want_voices(relay, {AudioCodec(c) for c in codecs or () if c})
        if reply_to is not None and relay.sub.group is not None:
            self._answer_keyframe(relay, reply_to)

    def _want_voices(self, relay: Relay, codecs: set[AudioCodec]) -> None:
        """Listen to the session's voice in ``codecs`` for the relay's channel (each codec
        once, whichever nodes ask for it)."""
        now = time.monotonic()
        sub = relay.sub
        for codec in codecs:
            relay.voice_wanted[codec] = now
            if codec in relay.voices:
                continue
            listener = Subscriber(sub.session, sub.tenant, "redis-relay", sub.key, sub.sid,
                                  sub.connected_t)  # fmt: skip
            channel = self.keys.group_channel(sub.key)
            listener.outbox = VoiceRelayOutbox(channel, self.link.publish, codec)
            relay.voices[codec] = listener
            self.host.voice.listen(listener, codec, self.host.t_ms())

    def _drop_voices(self, relay: Relay, older_than: float) -> None:
        """Stop relaying the codecs nobody asked for since ``older_than``."""
        for codec, at in list(relay.voice_wanted.items()):
            if at < older_than:
                del relay.voice_wanted[codec]
                self.host.voice.forget(relay.voices.pop(codec))

    def _ensure(self, key: StreamKey) -> Relay | None:
        host = self.host
        session_id = key.session
        session = host.local_session(session_id)
        if session is None:
            return None
        now = time.monotonic()
        relay = self.relays.get((session_id, key))
        if relay is None:
            streams = host.streams_of(session)
            sid = stream_sid(session_id, key.mode, key.bits)
            sub = Subscriber(session_id, session.tenant, "redis-relay", key, sid, host.now())
            sub.outbox = RelayOutbox(self.keys.group_channel(key), self.link.publish)
            group = streams.group(key, sid)
            sub.group = group
            group.subscribers.add(sub)
            host.add_viewer(sub, counted=False)
            relay = self.relays[(session_id, key)] = Relay(sub, now)
            # The current state, so relayed viewers need not wait for the next change.
            sub.outbox.put_control(
                encode_event(sid, host.t_ms(), EventKind.STATE, session.state.value)
            )
        relay.last_want = now
        return relay

    def _drop(self, rk: tuple[str, StreamKey]) -> None:
        relay = self.relays.pop(rk, None)
        if relay is None:
            return
        sub = relay.sub
        self._drop_voices(relay, float("inf"))
        self.host.remove_viewer(sub)
        session = self.host.local_session(sub.session)
        if session is not None and sub.group is not None:
            sub.group.subscribers.discard(sub)
            self.host.streams_of(session).drop_if_empty(sub.group)

    def drop_session(self, session_id: str) -> None:
        """The session stops being animated here: its relays leave its stream groups."""
        for rk in [rk for rk in self.relays if rk[0] == session_id]:
            self._drop(rk)

    def forget_session(self, session_id: str) -> None:
        """The session was deleted (its groups, relays included, are closed already)."""
        for rk in [rk for rk in self.relays if rk[0] == session_id]:
            del self.relays[rk]

    def maintain(self) -> None:
        """Drop relays nobody asked for lately; force a keyframe where messages were lost."""
        expiry = 1.5 * self.lease_s  # six missed refreshes (they come every quarter lease)
        now = time.monotonic()
        for rk, relay in list(self.relays.items()):
            if now - relay.last_want > expiry:
                self._drop(rk)
                continue
            self._drop_voices(relay, now - expiry)
            outbox = relay.sub.outbox
            if isinstance(outbox, RelayOutbox) and outbox.dropped and self.link.redis_ok:
                outbox.dropped = False
                self._force_keyframe(relay)

    def force_keyframes(self) -> None:
        """Every relayed group restarts from a keyframe (Redis came back)."""
        for relay in self.relays.values():
            self._force_keyframe(relay)

    def _force_keyframe(self, relay: Relay) -> None:
        session = self.host.local_session(relay.sub.session)
        group = relay.sub.group
        if session is None or group is None:
            return
        self.host.streams_of(session).encoder.force_keyframe(group.slot)

    def _answer_keyframe(self, relay: Relay, reply_to: str) -> None:
        host = self.host
        sub = relay.sub
        session = host.local_session(sub.session)
        if session is None or sub.group is None:
            return
        keyframe = host.streams_of(session).private_keyframe(sub.group)
        if keyframe is None:
            return  # the group's first frame is a keyframe, on the channel, for everyone
        state = encode_event(sub.sid, host.t_ms(), EventKind.STATE, session.state.value)
        key = sub.key
        self.link.publish(
            self.keys.node_channel(reply_to),
            pack(["k", key.session, key.lod, int(key.mode), key.bits, keyframe, state]),
        )
