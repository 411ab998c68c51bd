"""Frame relay through Redis: the owner's side and the relaying side of one stream group.

On the **owner**, a :class:`RelayOutbox` stands in the stream group as one more subscriber: the
tick offers it the group's bytes exactly as it offers them to local sockets, and it publishes
them, once, on the group's channel. Events reach it the same way (the tick's per-subscriber
event loop), so relayed viewers get state, speaking and emotion events in order with frames.
The voice reaches it as one :class:`VoiceRelayOutbox` listener per codec some relaying node
asked for: the AUDIO bytes encoded once per (stream id, codec) go on the same channel, tagged
with their codec, ahead of the frame of their ``t`` (the tick sends the voice first).

On a **relaying node**, a :class:`RemoteGroup` holds that node's local subscribers of the group
(a :class:`~avatar_engine.server.fanout.ViewerSet`, as a local group does) and hands the
channel's frames to them through the fan-out's group pass, the same bytes for all (voice
messages to those listening in that codec, on the reliable path). A local subscriber that
joined late (or lost a frame) waits for a keyframe, asked of the owner.

Frames that came one after another on a channel while the node was busy (a *run*) take one
pass together (:func:`~avatar_engine.server.fanout.offer_run_to_all`): every viewer that may
take direct writes gets all of them in one ``send()``, so a node that fell behind catches up in
one pass per group instead of one pass per frame, and no frame of the chain is dropped on the
way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from avatar_engine.cluster.keys import (
    KIND_AUDIO,
    KIND_CONTROL,
    KIND_DELTA,
    KIND_KEYFRAME,
    KIND_VOICE_CUT,
)
from avatar_engine.codec.wire import AudioCodec
from avatar_engine.server.fanout import ViewerSet, offer_run_to_all
from avatar_engine.server.streams import StreamKey, Subscriber
from avatar_engine.transport.outbox import Outbox, OutboxOverflowError

Publish = Callable[[str, bytes], bool]
"""Queue one message for a channel; False when it was dropped (Redis away, queue full)."""
FRAME_KINDS = (KIND_KEYFRAME, KIND_DELTA)


class RelayOutbox(Outbox):
    """A subscriber's outbox that publishes instead of buffering (owner side).

    Never latest-wins: Redis pub/sub is the buffer, and every relaying node's own subscriber
    outboxes do the skipping. A message that could not be queued marks the relay so the owner
    forces a keyframe on the group (chained deltas after a gap would not decode).
    """

    __slots__ = ("_publish", "channel", "dropped")

    def __init__(self, channel: str, publish: Publish) -> None:
        super().__init__()
        self.channel = channel
        self._publish = publish
        self.dropped = False

    def offer_frame(self, message: bytes, *, keyframe: bool) -> None:
        """Publish the group's frame (keyframe or delta) on its channel, once."""
        self.frames_offered += 1
        kind = KIND_KEYFRAME if keyframe else KIND_DELTA
        if self._publish(self.channel, bytes((kind,)) + message):
            self.frames_sent += 1
        else:
            self.frames_skipped += 1
            self.dropped = True

    def put_control(self, message: bytes) -> None:
        """Publish a control message (events) on the group's channel."""
        self._publish(self.channel, bytes((KIND_CONTROL,)) + message)


class VoiceRelayOutbox(Outbox):
    """A voice listener's outbox that publishes on a group's channel (owner side).

    The owner's voice fan-out puts each AUDIO message (encoded once per stream id and codec)
    here as in any listener's outbox, and a barge-in's VOICE_CUT; both go out tagged with the
    codec, so a relaying node hands them only to its viewers listening in it. Bounded like
    the frames: by the link's outgoing queue.
    """

    __slots__ = ("_publish", "channel", "codec")

    def __init__(self, channel: str, publish: Publish, codec: AudioCodec) -> None:
        super().__init__()
        self.channel = channel
        self._publish = publish
        self.codec = codec

    def put_audio(self, message: bytes) -> None:
        """Publish an AUDIO message for this codec's listeners."""
        if not self._publish(self.channel, bytes((KIND_AUDIO, int(self.codec))) + message):
            self.audio_dropped += 1

    def put_control(self, message: bytes) -> None:
        """Publish a VOICE_CUT (the voice fan-out's only control message)."""
        self._publish(self.channel, bytes((KIND_VOICE_CUT, int(self.codec))) + message)


@dataclass(eq=False)
class Relay:
    """The owner's relay of one group, alive while some node keeps asking for it."""

    sub: Subscriber
    last_want: float
    voices: dict[AudioCodec, Subscriber] = field(default_factory=dict)
    """One voice listener per codec the relaying nodes' viewers hear."""
    voice_wanted: dict[AudioCodec, float] = field(default_factory=dict)
    """When some node last asked for each codec (dropped like the relay, when not asked)."""


@dataclass(eq=False)
class RemoteGroup:
    """One group this node relays to its local subscribers (relaying side)."""

    session: str
    key: StreamKey
    channel: str
    subs: ViewerSet[Subscriber] = field(default_factory=ViewerSet)
    """The local viewers, with their rows for the group pass (held: leave through
    :meth:`ViewerSet.discard` or :meth:`ViewerSet.clear`)."""
    codecs: dict[Subscriber, AudioCodec] = field(default_factory=dict)
    """The codec each listening viewer hears the voice in (not listening: absent)."""
    last_request: float = -1.0
    answer_due: bool = False
    """A keyframe request is out and its answer has not come: it will serve every viewer
    waiting then, so a viewer joining meanwhile need not ask again."""
    relayed: int = 0

    def wanted_codecs(self) -> list[int]:
        """The codecs the owner should relay the voice in for this group."""
        return sorted({int(c) for c in self.codecs.values()})

    def deliver(self, data: bytes) -> bool:
        """Hand one channel message to every local subscriber; True if one needs a keyframe.

        Subscribers waiting for a keyframe get nothing but keyframes (a delta would not
        decode for them), without counting skips they did not cause.
        """
        if not data:
            return False
        kind = data[0]
        payload = data[1:]
        if kind in FRAME_KINDS:
            return self.deliver_frames([data])
        if kind == KIND_CONTROL:
            for sub in list(self.subs):
                # An overflowing outbox closes itself; its socket's writer ends the subscription.
                with contextlib.suppress(OutboxOverflowError):
                    sub.outbox.put_control(payload)
        elif kind in (KIND_AUDIO, KIND_VOICE_CUT) and len(payload) > 1:
            self._deliver_voice(kind, payload[0], payload[1:])
        self.relayed += 1
        return False

    def deliver_frames(self, messages: Sequence[bytes]) -> bool:
        """Consecutive frame messages of the channel (keyframes, deltas) in one group pass; True
        if a viewer needs a keyframe. Deltas are held back from viewers waiting for one."""
        self.relayed += len(messages)
        frames = [(m[1:], m[0] == KIND_KEYFRAME) for m in messages]
        return offer_run_to_all(self.subs, frames, hold=True)

    def _deliver_voice(self, kind: int, codec: int, message: bytes) -> None:
        for sub, heard in list(self.codecs.items()):
            if heard != codec:
                continue
            if kind == KIND_AUDIO:
                sub.outbox.put_audio(message)
            else:
                with contextlib.suppress(OutboxOverflowError):  # a dead reader: it is closing
                    sub.outbox.put_control(message)

    def offer_keyframe(self, keyframe: bytes, state_event: bytes | None) -> None:
        """The owner's answer to a keyframe request: only for those waiting for one."""
        self.answer_due = False
        for sub in self.subs:
            if sub.outbox.awaiting_keyframe:
                if state_event is not None:
                    try:
                        sub.outbox.put_control(state_event)
                    except OutboxOverflowError:
                        continue
                sub.outbox.offer_frame(keyframe, keyframe=True)
