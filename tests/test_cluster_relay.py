"""Cluster relay pieces without Redis: stream ids, the owner's relay outbox, and a relaying
node's group delivery (the same bytes to every local viewer; keyframes first for late ones; a
backlog's frames in one group pass, in order; the voice to its codec's listeners, named in
hellos only when the owner relays it)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine, Sequence
from types import SimpleNamespace

import msgpack
import pytest

from avatar_engine.cluster.keys import (
    KIND_AUDIO,
    KIND_CONTROL,
    KIND_DELTA,
    KIND_KEYFRAME,
    KIND_VOICE_CUT,
    Keys,
    stream_sid,
)
from avatar_engine.cluster.link import ClusterCounters
from avatar_engine.cluster.loops import BackgroundLoops
from avatar_engine.cluster.registry import SessionMeta
from avatar_engine.cluster.relay import (
    RelayOutbox,
    RemoteGroup,
    VoiceRelayOutbox,
)
from avatar_engine.cluster.viewers import RemoteViewers
from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Hello
from avatar_engine.codec.wire import AudioCodec, DeltaMode
from avatar_engine.server.auth import DEFAULT_TENANT, Principal
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.fanout import LINKS, DirectLink, ViewerSet, frame_header, offer_run_to_all
from avatar_engine.server.runtime import Runtime
from avatar_engine.server.streams import StreamKey, Subscriber

ADMIN = Principal("t", DEFAULT_TENANT, frozenset({"admin"}), None)


def test_stream_ids_are_a_function_of_the_group_key() -> None:
    a = stream_sid("alice", DeltaMode.CHAINED, 8)
    assert a == stream_sid("alice", DeltaMode.CHAINED, 8)  # every node, every owner
    assert 1 <= a <= 0xFFFF
    assert a != stream_sid("alice", DeltaMode.KEYFRAME, 8)
    assert a != stream_sid("alice", DeltaMode.CHAINED, 16)
    sids = {stream_sid(f"s{i}", DeltaMode.CHAINED, 8) for i in range(1000)}
    assert 0 not in sids and len(sids) > 980  # 16 bits: few collisions, never zero


def test_keys_share_one_prefix() -> None:
    keys = Keys("{ae}")
    key = StreamKey("s1", 2, DeltaMode.KEYFRAME, 16)
    names = [keys.sessions, keys.meta("s1"), keys.owner("s1"), keys.node("n"), keys.epoch,
             keys.quota_sessions("t"), keys.group_channel(key), keys.node_channel("n")]  # fmt: skip
    assert all(n.startswith("{ae}:") for n in names)
    assert keys.group_channel(key) == "{ae}:g:s1:2:1:16"


def test_relay_outbox_publishes_every_frame_with_its_kind() -> None:
    sent: list[tuple[str, bytes]] = []
    accept = [True]

    def publish(channel: str, data: bytes) -> bool:
        sent.append((channel, data))
        return accept[0]

    async def scenario() -> None:
        box = RelayOutbox("ch", publish)
        box.offer_frame(b"K1", keyframe=True)
        box.offer_frame(b"D1", keyframe=False)
        box.offer_frame(b"D2", keyframe=False)  # never latest-wins: Redis is the buffer
        box.put_control(b"E")
        accept[0] = False
        box.offer_frame(b"D3", keyframe=False)
        assert box.dropped and box.frames_skipped == 1 and box.frames_sent == 3

    asyncio.run(scenario())
    assert [d for _, d in sent] == [bytes([KIND_KEYFRAME]) + b"K1", bytes([KIND_DELTA]) + b"D1",
                                    bytes([KIND_DELTA]) + b"D2", bytes([KIND_CONTROL]) + b"E",
                                    bytes([KIND_DELTA]) + b"D3"]  # fmt: skip


def _viewer(key: StreamKey) -> Subscriber:
    return Subscriber(key.session, "t", "websocket", key, 7, 0.0)


def test_a_relaying_node_hands_the_same_bytes_to_its_viewers() -> None:
    async def scenario() -> None:
        key = StreamKey("s1", 0, DeltaMode.CHAINED, 8)
        group = RemoteGroup("s1", key, "ch")
        old, late = _viewer(key), _viewer(key)
        late.outbox.awaiting_keyframe = True  # just joined: deltas would not decode
        for viewer in (old, late):
            group.subs.add(viewer)
        assert group.deliver(bytes([KIND_DELTA]) + b"d1") is True  # late one needs a keyframe
        assert (await old.outbox.next_messages()) == ([], b"d1")
        assert late.outbox.frames_skipped == 0  # held back, not counted as its loss
        group.offer_keyframe(b"kf", b"state")  # the owner's private keyframe: waiting ones only
        assert (await late.outbox.next_messages()) == ([b"state"], b"kf")
        assert not late.outbox.awaiting_keyframe
        assert group.deliver(bytes([KIND_DELTA]) + b"d2") is False
        assert group.deliver(bytes([KIND_CONTROL]) + b"ev") is False
        for viewer in (old, late):
            assert (await viewer.outbox.next_messages()) == ([b"ev"], b"d2")

    asyncio.run(scenario())


class _Transport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.written = b""

    def get_extra_info(self, name: str) -> socket.socket:
        return self.sock

    def write(self, data: bytes) -> None:
        self.written += data


def _linked_viewer(key: StreamKey) -> tuple[Subscriber, socket.socket, socket.socket]:
    """A viewer whose direct link writes to one end of a socket pair (the other: its peer)."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    sub = _viewer(key)
    sub.direct = DirectLink(SimpleNamespace(transport=_Transport(ours)))  # type: ignore[arg-type]
    sub.outbox.attach(sub.direct)
    return sub, ours, peer


def test_a_backlog_of_frames_takes_one_send_per_viewer_and_keeps_every_promise() -> None:
    """Three frames that queued while the node was busy: a viewer that may take direct writes
    gets all three in one send (counted as three); a viewer waiting for a keyframe gets
    nothing before the run's keyframe; viewers behind their writer keep latest-wins (counted
    skips and a keyframe request, never a silently broken chain)."""
    key = StreamKey("s1", 0, DeltaMode.CHAINED, 8)
    ready, ready_sock, ready_peer = _linked_viewer(key)
    waiting, _, waiting_peer = _linked_viewer(key)
    waiting.outbox.awaiting_keyframe = True
    busy, _, busy_peer = _linked_viewer(key)
    busy.outbox.put_control(b"event")  # the writer has not sent it yet: frames go through it
    viewers: ViewerSet[Subscriber] = ViewerSet([ready, waiting, busy])
    frames = [(b"d1", False), (b"k2", True), (b"d3", False)]
    assert offer_run_to_all(viewers, frames, hold=True) is True  # the busy one lost d3
    wire = b"".join(frame_header(len(m)) + m for m, _ in frames)
    assert ready_peer.recv(1024) == wire  # all three, in order, one write
    assert ready.outbox.frames_sent == 3 and ready.outbox.frames_offered == 3
    assert type(ready.direct) is DirectLink and LINKS.sent[ready.direct.row] == 3
    # d1 is held back from the waiting one (not its loss); d3 finds k2 still in each outbox:
    # counted as a skip, and a keyframe is asked for (the outbox's latest-wins, as a local
    # group's viewer behind its writer gets)
    assert waiting.outbox.frames_skipped == 1 and busy.outbox.frames_skipped == 2
    for sub in (waiting, busy):
        assert sub.outbox._frame == b"k2" and sub.outbox.awaiting_keyframe
    for sock in (ready_sock, ready_peer, waiting_peer, busy_peer):
        sock.close()
    viewers.clear()


def test_a_batch_keeps_the_order_of_frames_events_and_requests() -> None:
    """The listener's batch: a group's consecutive frames go in one pass, an event between them
    stays between them, and other channels' messages reach the node's handler in order; the
    frames behind an event or a request wait for the writers (the next part)."""
    passes: list[list[bytes]] = []
    seen: list[object] = []

    class _Group(RemoteGroup):
        def deliver_frames(self, messages: Sequence[bytes]) -> bool:
            passes.append(list(messages))
            seen.append(("frames", len(messages)))
            return False

        def deliver(self, data: bytes) -> bool:
            seen.append(("event", data))
            return False

    viewers = RemoteViewers.__new__(RemoteViewers)
    viewers.counters = ClusterCounters()
    key = StreamKey("s1", 0, DeltaMode.CHAINED, 8)
    viewers.groups = {"g1": _Group("s1", key, "g1"), "g2": _Group("s2", key, "g2")}
    d = bytes([KIND_DELTA])
    batch = [(b"g1", d + b"1"), (b"g2", d + b"a"), (b"g1", d + b"2"),
             (b"g1", bytes([KIND_CONTROL]) + b"ev"), (b"g1", d + b"3"), (b"n", b"req"),
             (b"g1", d + b"4")]  # fmt: skip
    parts = []
    while batch:
        done = viewers.deliver_all(batch, lambda name, data: seen.append((name, data)))
        parts.append(done)
        batch = batch[done:]
    assert parts == [4, 2, 1]  # each part ends after a message that is not a frame
    assert passes == [[d + b"1", d + b"2"], [d + b"a"], [d + b"3"], [d + b"4"]]
    assert seen == [("frames", 2), ("frames", 1), ("event", bytes([KIND_CONTROL]) + b"ev"),
                    ("frames", 1), ("n", b"req"), ("frames", 1)]  # fmt: skip
    assert viewers.counters.relayed_in == 6  # every group message once, the request not


@pytest.mark.parametrize("queued", [1, 5, 600])
def test_the_listener_reads_what_is_already_there_in_one_batch(queued: int) -> None:
    class _PubSub:
        def __init__(self) -> None:
            self.waiting = [{"type": "subscribe", "channel": b"x", "data": 1}]
            self.waiting += [{"type": "message", "channel": b"g", "data": bytes([i % 256])}
                             for i in range(queued)]  # fmt: skip
            self.timeouts: list[float] = []

        async def get_message(self, *, ignore_subscribe_messages: bool, timeout: float
                              ) -> dict[str, object] | None:  # fmt: skip
            self.timeouts.append(timeout)
            return self.waiting.pop(0) if self.waiting else None

    pubsub = _PubSub()
    batch = asyncio.run(BackgroundLoops._read_batch(pubsub))
    assert len(batch) == min(queued, 512)  # bounded: the rest is the next batch's
    assert batch[0] == (b"g", b"\x00")
    assert pubsub.timeouts[0] == 1.0 and set(pubsub.timeouts[1:]) <= {0.0}  # waits only once


def test_the_voice_goes_out_tagged_with_its_codec_and_only_to_its_listeners() -> None:
    sent: list[bytes] = []
    box = VoiceRelayOutbox("ch", lambda _channel, data: sent.append(data) is None, AudioCodec.PCM16)
    box.put_audio(b"A1")
    box.put_control(b"CUT")  # the voice fan-out's only control message: VOICE_CUT
    assert sent == [bytes([KIND_AUDIO, 2]) + b"A1", bytes([KIND_VOICE_CUT, 2]) + b"CUT"]

    async def scenario() -> None:
        key = StreamKey("s1", 0, DeltaMode.CHAINED, 8)
        group = RemoteGroup("s1", key, "ch")
        pcm, opus, deaf = _viewer(key), _viewer(key), _viewer(key)
        for viewer in (pcm, opus, deaf):
            group.subs.add(viewer)
        group.codecs.update({pcm: AudioCodec.PCM16, opus: AudioCodec.OPUS})
        assert group.wanted_codecs() == [1, 2]
        for data in sent:
            assert group.deliver(data) is False
        assert (await pcm.outbox.next_messages()) == ([b"A1", b"CUT"], None)
        for other in (opus, deaf):
            assert not other.outbox._control

    asyncio.run(scenario())


class _Link:
    """A link that records what would be published and runs nothing."""

    def __init__(self) -> None:
        self.published: list[list[object]] = []

    def publish(self, channel: str, data: bytes) -> bool:
        self.published.append(msgpack.unpackb(data))
        return True

    def spawn(self, coro: Coroutine[object, object, object]) -> None:
        coro.close()


def test_viewers_joining_while_a_keyframe_is_asked_for_share_its_answer() -> None:
    rt = Runtime(ServerOptions(livelink_port=0, vmc_port=0))
    session = rt.create_session(ADMIN, session_id="s")
    registry = SimpleNamespace(
        meta={"s": SessionMeta.of(session)}, owners={"s": "o"}, voice_nodes={"o"}, node_id="me"
    )
    link = _Link()
    viewers = RemoteViewers(link, Keys(), registry, rt, rt.quotas, ClusterCounters())  # type: ignore[arg-type]

    def subscribe(audio: AudioCodec = AudioCodec.OFF) -> Subscriber:
        return viewers.subscribe(ADMIN, "s", lod=0, mode=DeltaMode.CHAINED, bits=8,
                                 transport="test", audio=audio)  # fmt: skip

    first = subscribe()  # joins the channel (its request goes out once subscribed)
    group = viewers.subs[first]
    subscribe()
    assert len(link.published) == 1 and group.answer_due
    for _ in range(50):  # a connect storm: the answer on its way serves them all
        subscribe()
    assert len(link.published) == 1
    subscribe(AudioCodec.PCM16)  # a codec the owner was not asked for: asks at once
    assert len(link.published) == 2 and link.published[-1][6] == [int(AudioCodec.PCM16)]
    key = group.key
    viewers.offer_keyframe(key, b"kf", None)  # the answer: every waiting viewer has it
    assert not group.answer_due
    assert all(sub.outbox._frame == b"kf" for sub in group.subs)
    subscribe()  # a later joiner asks again
    assert len(link.published) == 3


def test_a_relayed_viewers_hello_names_the_voice_only_if_its_owner_relays_it() -> None:
    rt = Runtime(ServerOptions(livelink_port=0, vmc_port=0))
    session = rt.create_session(ADMIN, session_id="s")
    registry = SimpleNamespace(
        meta={"s": SessionMeta.of(session)}, owners={"s": "old"}, voice_nodes={"me"}, node_id="me"
    )
    link = _Link()
    viewers = RemoteViewers(link, Keys(), registry, rt, rt.quotas, ClusterCounters())  # type: ignore[arg-type]

    def hello_of(sub: Subscriber) -> Hello:
        message = Decoder().feed(sub.outbox._control[0])
        assert isinstance(message, Hello)
        return message

    def subscribe() -> Subscriber:
        return viewers.subscribe(ADMIN, "s", lod=0, mode=DeltaMode.CHAINED, bits=8,
                                 transport="test", audio=AudioCodec.PCM16)  # fmt: skip

    # An owner that never said it relays the voice (an older node): the hello says no audio.
    deaf = subscribe()
    assert hello_of(deaf).audio is AudioCodec.OFF
    assert viewers.subs[deaf].wanted_codecs() == []
    registry.voice_nodes.add("new")
    registry.owners["s"] = "new"
    heard = subscribe()
    assert hello_of(heard).audio is AudioCodec.PCM16
    assert link.published[-1][0] == "K" and link.published[-1][6] == [int(AudioCodec.PCM16)]
    viewers.detach(heard)
    assert viewers.subs[deaf].wanted_codecs() == []
