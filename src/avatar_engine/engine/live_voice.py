"""A live voice (a realtime agent's audio deltas, streamed PCM chunks): where each chunk plays on
the stream clock, and the face the streaming lip-sync decides for it. Sans-I/O: time is an
argument (stream milliseconds).

The streaming lip-sync (:class:`~avatar_engine.audio.stream.LipSyncStream`) decides the face
for audio frame ``h`` (10 ms) once it holds its look-ahead of more audio. So a *segment* of
live audio gets an **anchor**: its sample 0 plays at ``anchor = arrival of its first chunk +
delay``, sample ``i`` at ``anchor + 1000 i / rate``, and frame ``h`` at ``anchor + 10 h``.
Audio and face share the anchor, so they play together, exactly, and viewers get the voice
delayed by exactly the lip-sync delay. The recogniser looks :data:`MARGIN_MS` less than the
delay ahead (:func:`look_ahead_ms`), so for a sender that keeps up with real time frame ``h``
is decided that long before it is shown (its look-ahead arrived ``delay - MARGIN_MS`` after
its own audio, which plays ``delay`` after it); the margin covers the work after that.

A new segment (a new anchor) starts at the first chunk, after :meth:`LiveClock.end` (the
sender's "done") or a cut, and when the sender falls behind real time: a chunk whose place on
the clock has already passed (an underrun, which viewers would hear as a gap anyway) starts a
new segment ``delay`` after its arrival instead of playing late. A segment never starts before
audio already queued has played (``not_before``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from avatar_engine.audio.phones import Voice
from avatar_engine.audio.stream import LipSyncStream, StreamFrames, StreamParams
from avatar_engine.engine.voice_track import MAX_QUEUED_MS, VoiceQueueFullError
from avatar_engine.speech.coarticulation import CHANNELS
from avatar_engine.types import F32, F64, I16

DEFAULT_DELAY_MS: Final = 200
"""The lip-sync delay of a live voice unless the sender asks for another (0..1000): how long
after it arrives its audio and face play."""
MARGIN_MS: Final = 60
"""Kept out of the recogniser's look-ahead. A frame is decided once its look-ahead of audio
has arrived; were that the whole delay, for a sender that keeps exactly real time it would
be the moment the frame is due, and the recogniser's block, the worker and the splice would
make it late. 60 ms (a 40 ms block and 20 ms of work) puts the face in the curves before its
time. A delay under 60 ms plays 60 ms after arrival (no look-ahead)."""


def look_ahead_ms(delay_ms: int) -> int:
    """How far the lip-sync of a live voice with this delay looks ahead of each frame."""
    return max(0, delay_ms - MARGIN_MS)


def play_delay_ms(delay_ms: int) -> int:
    """How long after arriving a live voice's audio and face play (the delay, at least
    :data:`MARGIN_MS`)."""
    return max(delay_ms, MARGIN_MS)


@dataclass(frozen=True, slots=True)
class Piece:
    """Where one chunk of live audio plays."""

    segment: int
    anchor_ms: int
    """Stream time of the segment's sample 0."""
    t_ms: float
    """Stream time of the chunk's first sample."""
    new_segment: bool


@dataclass(frozen=True, slots=True)
class FaceFrames:
    """Speech channel frames of a live voice, on the stream clock."""

    t_ms: F64
    channels: F32
    """(F, 45) in the Speech package's layered channel space (``SpeechRig.run``)."""

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])


NO_FRAMES: Final = FaceFrames(np.zeros(0), np.zeros((0, CHANNELS), np.float32))


class LiveClock:
    """Places chunks of one live voice on the stream clock (cheap: call it on arrival)."""

    def __init__(self, rate: int, delay_ms: int, max_queued_ms: int = MAX_QUEUED_MS) -> None:
        if not 0 <= delay_ms <= 1000:
            raise ValueError("delay_ms must lie in 0..1000")
        self.rate = rate
        self.delay_ms = delay_ms
        self.max_queued_ms = max_queued_ms
        self.segment = -1
        self.anchor_ms = 0
        self.samples = 0
        """Samples placed in the current segment."""
        self._earlier_ms = 0.0
        """Audio of the current response in segments before this one (all played)."""
        self._open = False

    def place(self, n: int, now_ms: int, not_before_ms: float = -math.inf) -> Piece:
        """Place ``n`` samples that arrived at ``now_ms``; raises :class:`VoiceQueueFullError`
        (nothing placed) when they would end more than ``max_queued_ms`` ahead of ``now``."""
        start = self.anchor_ms + 1000.0 * self.samples / self.rate
        new = not self._open or start < now_ms
        if new:
            anchor = now_ms + play_delay_ms(self.delay_ms)
            if not_before_ms > anchor:
                anchor = math.ceil(not_before_ms)
            start = float(anchor)
        end = start + 1000.0 * n / self.rate
        if end - now_ms > self.max_queued_ms:
            raise VoiceQueueFullError(
                f"voice queue full: at most {self.max_queued_ms / 1000:g} s of audio may wait "
                "ahead of playback; send audio closer to real time"
            )
        if new:
            # an underrun's segment continues the response; after end() a new one begins
            self._earlier_ms = self._earlier_ms + self._segment_ms() if self._open else 0.0
            self.segment += 1
            self.anchor_ms, self.samples, self._open = int(start), 0, True
        piece = Piece(self.segment, self.anchor_ms, start, new)
        self.samples += n
        return piece

    def end(self) -> None:
        """The sender finished a response: the next chunk starts a new segment."""
        self._open = False

    @property
    def open(self) -> bool:
        """A response is being received (its next chunk continues the segment)."""
        return self._open

    def _segment_ms(self) -> float:
        return 1000.0 * self.samples / self.rate

    def played_ms(self, now_ms: int) -> int:
        """How much of the current response has played by ``now_ms`` (for the agent's
        truncate): its earlier segments, and the current one up to ``now_ms``."""
        if self.segment < 0:
            return 0
        current = min(self._segment_ms(), max(0.0, now_ms - self.anchor_ms))
        return int(self._earlier_ms + current)


class LiveFace:
    """The streaming lip-sync of one live voice: CPU work, so run it off the event loop; one
    caller at a time, in the order the chunks were placed.

    Building a lip-sync stream (its phone recogniser) takes 0.1-0.3 s, longer than the delay
    budget: a segment that had to build one would show its first frames late. So the next
    segment's stream is built ahead (:meth:`prepare`: when the input opens and after each
    segment ends), warm with what the last one learned of the voice. A cold stream stops to
    learn the voice after 0.5 s and 1.5 s of it (re-decoding what it heard: 0.1-0.5 s of CPU,
    during which the face falls behind); ``voice`` (what an earlier face of the same sender
    learned, :meth:`voice`) starts it warm instead.
    """

    def __init__(self, rate: int, delay_ms: int, voice: Voice | None = None) -> None:
        self.rate = rate
        self.params = _with_voice(StreamParams(delay_s=look_ahead_ms(delay_ms) / 1000), voice)
        self._stream: LipSyncStream | None = None
        self._spare: LipSyncStream | None = None
        self._segment = -1
        self._anchor_ms = 0

    def prepare(self) -> None:
        """Build the next segment's stream now, so that segment starts without the wait."""
        if self._spare is None:
            self._spare = LipSyncStream(self.rate, self._params())

    def _params(self) -> StreamParams:
        return _with_voice(self.params, self.voice())

    def voice(self) -> Voice | None:
        """What this face's recogniser has learned of the voice (None before any audio)."""
        return None if self._stream is None else self._stream.voice()

    def run(self, piece: Piece, samples: I16) -> FaceFrames:
        """The face frames this chunk decides (and, at a new segment, the previous one's
        tail), stamped on the stream clock."""
        parts: list[FaceFrames] = []
        if piece.segment != self._segment:
            parts.append(self.finish())
            spare, self._spare = self._spare, None
            self._stream = spare or LipSyncStream(self.rate, self._params())
            self._segment, self._anchor_ms = piece.segment, piece.anchor_ms
        assert self._stream is not None
        parts.append(self._stamp(self._stream.push(samples.astype(np.float32) / 32768.0)))
        return _join(parts)

    def finish(self) -> FaceFrames:
        """The current segment is over: the frames its delay budget still held."""
        if self._stream is None or self._segment < 0:
            return NO_FRAMES
        frames = self._stamp(self._stream.finish())
        self._segment = -1
        return frames

    def _stamp(self, frames: StreamFrames) -> FaceFrames:
        if not len(frames):
            return NO_FRAMES
        times: F64 = self._anchor_ms + frames.times * 1000.0
        return FaceFrames(times, frames.channels())


def _with_voice(params: StreamParams, voice: Voice | None) -> StreamParams:
    """Later segments of one sender start warm from what the previous one learned."""
    return params if voice is None else replace(params, voice=voice)


def _join(parts: list[FaceFrames]) -> FaceFrames:
    parts = [p for p in parts if len(p)]
    if not parts:
        return NO_FRAMES
    if len(parts) == 1:
        return parts[0]
    return FaceFrames(
        np.concatenate([p.t_ms for p in parts]), np.concatenate([p.channels for p in parts])
    )
