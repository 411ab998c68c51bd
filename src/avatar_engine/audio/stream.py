"""Streaming audio lip-sync: PCM chunks in, viseme frames out, a bounded delay behind the audio.

How a stream works (all times in 10 ms hops of the internal 16 kHz signal):

* Chunks at the sender's rate (16, 22.05, 24, 44.1 or 48 kHz; raw PCM16 bytes, base64 deltas
  as a realtime speech API emits them, or float samples) are resampled incrementally.
* The stream works in fixed **blocks** of ``bh`` hops (40 ms, or the delay if shorter),
  counted from the start of the stream, whatever the chunking: per block it runs the
  feature kernel (RMS, pitch, voice activity...) on the block's hops, feeds PocketSphinx's
  phone loop, and reads its current best path.
* Frame ``h`` (audio ``[h, h+1)`` hops) is decided at the end of the last block that ends at
  or before ``h + D`` (``D`` = the delay budget in hops): the decision sees ``D - bh`` to
  ``D - 1`` hops of audio after the frame, so the recogniser's unstable tail has mostly
  settled. No frame is ever more than ``D`` behind the audio received (plus the resampler's
  sub-millisecond latency), and because blocks, not chunks, drive every step, **any chunking
  gives the same frames**.
* **Fast path**: a frame's mouth opening comes from its own hop's loudness (the feature
  kernel's RMS against the voice's running level), so the jaw moves in the first frame of
  voiced audio, with or without a recognised phone. A voiced frame the recogniser still calls
  silence shows ``aa`` at that opening.
* **Refinement without jumps**: the recognised viseme sets the shape; the 15 viseme weights
  follow their targets through a first-order smoother (time constant ``smooth_s``), so a
  phone that changes its mind moves the lips over a few frames instead of snapping.

* **Long streams**: the decoder's utterance ends at each pause longer than the delay budget
  (0.3 s at least) and every 30 s at the latest, so the per-block cost stays bounded.
* **Cold start**: the recogniser's cepstral mean starts from the model's prior, far from real
  voices, and its features are not yet adapted to the voice; after 0.5 s of voice (and again
  at 1.5 s) a cold stream learns both from what it has heard and re-decodes it, unless a ``voice``
  from an earlier stream of the same voice made it warm from the start. Every utterance the
  decoder finishes refines the mean and the adaptation (see :mod:`.adapt`).

Per stream the work is one kernel call and one decoder call per block: about 8 % of a core
(see docs/lipsync-quality.md). Decoders are per stream (PocketSphinx keeps search state);
:class:`StreamBank` runs the feature kernel of many streams in one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.audio.features import (
    HOP_S,
    FeatureStage,
    LevelParams,
    LevelTracker,
    hop_windows,
)
from avatar_engine.audio.lipsync import (
    MIN_SPEECH_FRACTION,
    TONE_MIN_HOPS,
    absorb_closures,
    to_internal,
    tonal_mask,
)
from avatar_engine.audio.phones import DecoderConfig, PhoneRecognizer, TimedPhone, Voice
from avatar_engine.audio.resample import Resampler
from avatar_engine.audio.wav import Pcm, check_rate, decode_base64_pcm16, pcm16_to_float
from avatar_engine.kernels.audio_features import HOP, N_FEATURES, WINDOW
from avatar_engine.speech.timing import DIPHTHONG_SPLIT, HH_STRENGTH
from avatar_engine.speech.visemes import (
    HH,
    SIL,
    VISEME_INDEX,
    VISEMES,
    VOWEL_VISEMES,
    TableError,
    arpabet_info,
)
from avatar_engine.types import B1, F32, F64, I8

N_VISEMES: Final = len(VISEMES)
AA: Final = VISEME_INDEX["aa"]
MAX_DELAY_S: Final = 1.0
MAX_BLOCK_HOPS: Final = 4
STREAM_TONE_MIN_HOPS: Final = 12
SPLIT_PAUSE_HOPS: Final = 30
"""A pause this long (0.3 s, or the delay budget if longer) ends a decoder utterance."""
MIN_UTTERANCE_HOPS: Final = 100
MAX_UTTERANCE_HOPS: Final = 3000
"""A decoder utterance is cut at 30 s even without a pause, so cost stays bounded."""
WARM_VOICED_HOPS: Final = (50, 150)
"""Voiced hops (0.5 s, then 1.5 s) after which a cold stream learns the voice (mean and
adaptation) from its utterance so far and decodes it again: early to help soon, once more
when three times the speech makes a sturdier transform."""
_TONE_CONTEXT: Final = TONE_MIN_HOPS + 40


@dataclass(frozen=True, slots=True)
class StreamParams:
    """Knobs of one stream; every limit is a documented parameter."""

    delay_s: float = 0.2
    """Delay budget: frames are emitted at most this far behind the audio (0..1 s)."""
    smooth_s: float = 0.02
    """Time constant of the viseme-weight smoother (no visible jumps, ~1 frame of lag)."""
    consonant_weight: float = 0.9
    """Target weight of a consonant viseme (lips close for /p/ however quiet it is)."""
    level: LevelParams = field(default_factory=LevelParams)
    decoder: DecoderConfig | None = None
    self_warm: bool = True
    """Without ``voice``: once the voice has spoken ``WARM_VOICED_HOPS`` hops (0.5 s, again at
    1.5 s), learn its cepstral mean and adaptation and re-decode
    (:meth:`PhoneRecognizer.warm_up`)."""
    voice: Voice | None = None
    """Start from this voice (:meth:`LipSyncStream.voice` of an earlier stream of the same
    voice) instead of cold: a cold stream spends its first half second of voice learning it."""
    backend: str | None = None


@dataclass(frozen=True, slots=True)
class StreamFrames:
    """Frames ``first .. first + len - 1`` (frame h = audio ``[h, h+1) * 10 ms``)."""

    first: int
    visemes: I8
    """The decided viseme class per frame (0 = sil)."""
    weights: F32
    """(F, 15) smoothed viseme weights in Oculus order: map with ``rig.sparse_map('visemes')``."""
    amplitude: F32
    """Loudness fast path: mouth opening 0..1 from the frame's own audio."""
    speaking: B1
    features: F32
    """(F, 6) feature rows (``kernels.audio_features.COLUMNS``)."""

    def __len__(self) -> int:
        return int(self.visemes.shape[0])

    def channels(self) -> F32:
        """(F, 45) in the Speech package's layered channel space (lips, jaw, tongue x 15), for
        ``SpeechRig.run``: jaw and tongue follow each weight; the lips too, except for the
        tongue-only visemes (DD, nn, kk, TH), which leave the lips to their neighbours."""
        from avatar_engine.speech.coarticulation import dominance_table

        lips_on = (~dominance_table().tongue_only).astype(np.float32)
        w = self.weights
        out: F32 = np.concatenate([w * lips_on[None, :], w, w], axis=1).astype(np.float32)
        return out

    @property
    def times(self) -> F64:
        """Each frame's time in seconds from the stream's start (frame index times the hop)."""
        return (np.arange(self.first, self.first + len(self), dtype=np.float64)) * HOP_S

    @staticmethod
    def join(parts: list[StreamFrames], first: int = 0) -> StreamFrames:
        """Concatenate consecutive pieces of one stream into one; an empty list gives an empty piece
        starting at ``first``."""
        if not parts:
            return _empty(first)
        return StreamFrames(
            parts[0].first,
            np.concatenate([p.visemes for p in parts]),
            np.concatenate([p.weights for p in parts]),
            np.concatenate([p.amplitude for p in parts]),
            np.concatenate([p.speaking for p in parts]),
            np.concatenate([p.features for p in parts]),
        )


def _empty(first: int) -> StreamFrames:
    return StreamFrames(
        first, np.zeros(0, np.int8), np.zeros((0, N_VISEMES), np.float32),
        np.zeros(0, np.float32), np.zeros(0, bool), np.zeros((0, N_FEATURES), np.float32),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Work:
    """Complete blocks taken from a stream, waiting for their feature rows."""

    audio: F32
    windows: F32
    n_blocks: int
    final: bool
    n_frames: int


@cache
def _smoother(n: int, a: float) -> tuple[F64, F64]:
    """y = L @ target + g * y0 for a first-order smoother over n frames (vectorised IIR)."""
    i = np.arange(n)
    diff = i[:, None] - i[None, :]
    lower: F64 = np.where(diff >= 0, (1.0 - a) * a ** np.maximum(diff, 0), 0.0)
    gain: F64 = np.power(a, i + 1.0)
    return lower, gain


class LipSyncStream:
    """One live audio stream -> viseme frames; see the module docstring for the timing."""

    def __init__(self, rate: int, params: StreamParams | None = None) -> None:
        self.rate = check_rate(rate, stream=True)
        self.params = p = params or StreamParams()
        if not 0.0 <= p.delay_s <= MAX_DELAY_S:
            raise ValueError(f"delay_s must be within 0..{MAX_DELAY_S} s")
        self._delay = round(p.delay_s / HOP_S)
        self._bh = max(1, min(MAX_BLOCK_HOPS, self._delay))
        # A tone must be recognised within the look-ahead the delay budget allows.
        self._tone_hops = max(STREAM_TONE_MIN_HOPS, min(TONE_MIN_HOPS, self._delay - 3))
        self._resampler = Resampler(self.rate)
        self._pending = np.zeros(0, np.float32)
        self._history = np.zeros(WINDOW - HOP, np.float32)
        self._features = FeatureStage(backend=p.backend)
        self._vad_rms = float(10.0 ** (p.level.floor_dbfs / 20.0))
        self._level = LevelTracker(p.level)
        self._recognizer = PhoneRecognizer(p.decoder)
        self._recognizer.start(p.voice)
        # Warm-up stages still ahead (see WARM_VOICED_HOPS).
        self._warm_at = list(WARM_VOICED_HOPS) if p.voice is None and p.self_warm else []
        self._voiced = 0
        # Decoder utterances: see _maybe_split.
        self._utt_hop0 = 0
        self._silent_run = 0
        self._prev_phones: list[TimedPhone] = []
        self._split_hops = max(SPLIT_PAUSE_HOPS, self._delay + self._bh)
        self._min_utt_hops = max(MIN_UTTERANCE_HOPS, self._delay + self._bh + 1)
        self._hops = 0  # hops analysed
        self._emitted = 0  # frames emitted
        # Rolling per-hop history from frame `_base` on (tone detection needs some past).
        self._base = 0
        self._feat = np.zeros((0, N_FEATURES), np.float32)
        self._speak = np.zeros(0, bool)
        self._amp = np.zeros(0, np.float32)
        self._y = np.zeros(N_VISEMES, np.float64)
        self._a = float(np.exp(-HOP_S / p.smooth_s)) if p.smooth_s > 0 else 0.0
        self._finished = False

    @property
    def delay_hops(self) -> int:
        """The look-ahead the stream holds back before emitting a frame, in hops: the lip-sync delay
        the caller must give the audio."""
        return self._delay

    @property
    def frames_emitted(self) -> int:
        """Frames handed out so far: the index the next emitted frame will have."""
        return self._emitted

    def voice(self) -> Voice:
        """What the recogniser has learned of this voice, to warm-start the next stream of it
        (``StreamParams(voice=...)``), e.g. an agent's next turn."""
        return self._recognizer.voice()

    def push_pcm16(self, data: bytes | bytearray | memoryview) -> StreamFrames:
        """Raw little-endian PCM16 mono at the declared rate."""
        return self.push(pcm16_to_float(data))

    def push_base64(self, delta: str | bytes) -> StreamFrames:
        """A base64 PCM16 delta (e.g. a realtime speech API's ``response.audio.delta``)."""
        return self.push_pcm16(decode_base64_pcm16(delta))

    def push(self, samples: npt.ArrayLike) -> StreamFrames:
        """Float samples in [-1, 1) at the declared rate -> frames that are now decided."""
        return self._complete(self._take(samples), None)

    def finish(self) -> StreamFrames:
        """End of audio: flush, decide every remaining frame with the final recognition."""
        if self._finished:
            return _empty(self._emitted)
        return self._complete(self._take_final(), None)

    # The two halves of a push, split so that a StreamBank can run the feature kernel of
    # many streams in one call between them.
    def _take(self, samples: npt.ArrayLike) -> _Work:
        if self._finished:
            raise RuntimeError("stream already finished")
        y = self._resampler.push(np.asarray(samples, dtype=np.float32))
        self._pending = np.concatenate([self._pending, y])
        return self._blocks(final=False, n_frames=0)

    def _take_final(self) -> _Work:
        tail = self._resampler.flush()
        total = self._hops * HOP + self._pending.shape[0] + tail.shape[0]
        n_frames = -(-total // HOP)
        self._pending = np.concatenate([self._pending, tail])
        block = self._bh * HOP
        pad = (-self._pending.shape[0]) % block
        self._pending = np.concatenate([self._pending, np.zeros(pad, np.float32)])
        self._finished = True
        return self._blocks(final=True, n_frames=n_frames)

    def _blocks(self, final: bool, n_frames: int) -> _Work:
        block = self._bh * HOP
        n_blocks = self._pending.shape[0] // block
        audio = self._pending[: n_blocks * block]
        self._pending = self._pending[n_blocks * block :]
        windows = hop_windows(self._history, audio)
        if audio.shape[0]:
            self._history = np.concatenate([self._history, audio])[-(WINDOW - HOP) :]
        return _Work(audio, windows, n_blocks, final, n_frames)

    def _complete(self, work: _Work, feats: F32 | None) -> StreamFrames:
        if work.n_blocks == 0 and not work.final:
            return _empty(self._emitted)
        if feats is None:  # one kernel call for every hop of every complete block
            feats = np.empty((work.windows.shape[0], N_FEATURES), np.float32)
            thr = np.full(work.windows.shape[0], self._vad_rms, np.float32)
            self._features.run(work.windows, thr, feats)
        speaking, amp = self._level.update(feats)
        self._feat = np.concatenate([self._feat, feats])
        self._speak = np.concatenate([self._speak, speaking])
        self._amp = np.concatenate([self._amp, amp])
        audio, block = work.audio, self._bh * HOP
        parts: list[StreamFrames] = []
        for b in range(work.n_blocks):  # the decoder is sequential: one call per 40 ms block
            chunk = audio[b * block : (b + 1) * block]
            self._recognizer.feed(chunk)
            self._hops += self._bh
            lo = self._hops - self._bh - self._base
            voiced = int(self._speak[lo : lo + self._bh].sum())
            self._silent_run = 0 if voiced else self._silent_run + self._bh
            if self._warm_at:
                self._voiced += voiced
                if self._voiced >= self._warm_at[0]:
                    self._recognizer.warm_up()
                    del self._warm_at[0]
            if work.final and b == work.n_blocks - 1:
                continue
            # Frames h < hops + bh - D are due now (and need their own audio): until the next
            # block ends, the audio can run at most bh hops ahead, so no frame falls > D behind.
            due = min(self._hops + self._bh - self._delay, self._hops)
            if due > self._emitted:
                parts.append(self._emit(due, self._phones(self._recognizer.partial())))
            self._maybe_split()
        if work.final:
            phones = self._phones(self._recognizer.finish())
            end = min(max(work.n_frames, self._emitted), self._hops)
            if end > self._emitted:
                parts.append(self._emit(end, phones))
        return StreamFrames.join(parts, self._emitted)

    def _phones(self, current: list[TimedPhone]) -> list[TimedPhone]:
        """The previous utterance's final phones, then the current one's (stream time)."""
        return self._prev_phones + current

    def _maybe_split(self) -> None:
        """End the decoder's utterance after a pause (or at :data:`MAX_UTTERANCE_HOPS`) and
        start the next from the current cepstral mean.

        PocketSphinx's best path is recomputed over the whole utterance at every block, so an
        endless utterance would cost more and more (a 5-minute stream went from 8 % to 20 %
        of a core); pauses are where people and TTS voices breathe anyway. The split waits for
        a pause longer than the delay budget, so every frame still to be emitted lies in it.
        """
        length = self._hops - self._utt_hop0
        pause = self._silent_run >= self._split_hops and length >= self._min_utt_hops
        if not pause and length < MAX_UTTERANCE_HOPS:
            return
        self._prev_phones = self._phones(self._recognizer.restart())
        self._utt_hop0 = self._hops
        if self._warm_at:  # not warm yet: keep listening in the next utterance
            self._voiced = 0

    def _emit(self, upto: int, phones: list[TimedPhone]) -> StreamFrames:
        """Decide frames ``_emitted .. upto - 1`` from the current best path."""
        h0 = self._emitted
        n = upto - h0
        lo = h0 - self._base
        feats = self._feat[lo : lo + n]
        speaking = self._speak[lo : lo + n].copy()
        amp = self._amp[lo : lo + n].copy()
        # Tone gate over everything analysed so far (includes the look-ahead).
        voice = self._speak & ~tonal_mask(self._feat, self._tone_hops)
        speaking &= voice[lo : lo + n]
        amp[~speaking] = 0.0
        phones = absorb_closures(phones)
        classes, strength, which = _classes(phones, h0, n)
        # A recognised phone keeps its shape through its own quiet frames (a stop's closure)
        # when enough of it, as far as it has been heard, is voice: the offline rule.
        keep = np.zeros(n, dtype=bool)
        for j in np.unique(which[which >= 0]):  # the few phones under these frames
            ph = phones[int(j)]
            a = max(int(np.floor(ph.start / HOP_S + 1e-9)) - self._base, 0)
            b = min(int(np.ceil(ph.end / HOP_S - 1e-9)) - self._base, voice.shape[0])
            if b > a and float(voice[a:b].mean()) >= MIN_SPEECH_FRACTION:
                keep[which == j] = True
        p = self.params
        vowel = np.isin(classes, list(VOWEL_VISEMES))
        target_w = np.where(vowel, 0.65 + 0.35 * amp, p.consonant_weight) * strength
        recognised = keep & (classes != SIL)
        fast = speaking & ~recognised
        classes = np.where(recognised, classes, np.where(fast, AA, SIL)).astype(np.int8)
        target_w = np.where(recognised, target_w, np.where(fast, amp, 0.0))
        targets = np.zeros((n, N_VISEMES), np.float64)
        rows = np.flatnonzero(classes != SIL)
        targets[rows, classes[rows]] = target_w[rows]
        lower, gain = _smoother(n, self._a)
        y = lower @ targets + gain[:, None] * self._y[None, :]
        self._y = y[-1].copy()
        self._emitted = upto
        self._trim()
        return StreamFrames(h0, classes, y.astype(np.float32), amp, speaking, feats.copy())

    def _trim(self) -> None:
        """Keep only the per-hop history tone detection still needs."""
        keep_from = max(self._emitted - _TONE_CONTEXT, self._base)
        cut = keep_from - self._base
        if cut > 256:
            self._feat = self._feat[cut:]
            self._speak = self._speak[cut:]
            self._amp = self._amp[cut:]
            self._base = keep_from


class StreamBank:
    """Many live streams, one feature-kernel call per push round (batch, don't loop).

    ``push({key: samples, ...})`` resamples each stream's new audio and cuts its complete
    blocks, runs the feature kernel once over the hop windows of *all* of them (rows are
    independent, per-row voice-activity thresholds), then lets each stream feed its own
    decoder and emit its frames. Results are identical to pushing each stream on its own.
    PocketSphinx decoders cannot be batched: that part stays one call per stream and block.
    """

    def __init__(self, backend: str | None = None) -> None:
        self.streams: dict[str, LipSyncStream] = {}
        self._features = FeatureStage(backend=backend)

    def open(self, key: str, rate: int, params: StreamParams | None = None) -> LipSyncStream:
        """Start a stream under ``key`` (one per talking session); a key already open is a caller
        error (KeyError), not a silent restart."""
        if key in self.streams:
            raise KeyError(f"stream {key!r} is already open")
        stream = LipSyncStream(rate, params)
        self.streams[key] = stream
        return stream

    def close(self, key: str) -> StreamFrames:
        """Finish a stream (its remaining frames) and forget it."""
        return self.streams.pop(key).finish()

    def push(self, chunks: dict[str, npt.ArrayLike]) -> dict[str, StreamFrames]:
        """Float samples per stream key -> the frames each stream has now decided."""
        keys = list(chunks)
        work = [self.streams[k]._take(chunks[k]) for k in keys]
        rows = [w.windows.shape[0] for w in work]
        total = sum(rows)
        feats = np.empty((total, N_FEATURES), np.float32)
        if total:
            windows = np.concatenate([w.windows for w in work])
            thr = np.concatenate(
                [
                    np.full(n, self.streams[k]._vad_rms, np.float32)
                    for k, n in zip(keys, rows, strict=True)
                ]
            )
            self._features.run(windows, thr, feats)
        out: dict[str, StreamFrames] = {}
        start = 0
        for k, w, n in zip(keys, work, rows, strict=True):
            out[k] = self.streams[k]._complete(w, feats[start : start + n])
            start += n
        return out


def _classes(phones: list[TimedPhone], h0: int, n: int) -> tuple[I8, F64, npt.NDArray[np.int64]]:
    """Viseme class, dominance strength and phone index (-1: none) under each frame centre."""
    classes = np.zeros(n, np.int8)
    strength = np.ones(n, np.float64)
    which = np.full(n, -1, np.int64)
    if not phones:
        return classes, strength, which
    starts = np.array([p.start for p in phones])
    ends = np.array([p.end for p in phones])
    t = (np.arange(h0, h0 + n) + 0.5) * HOP_S
    k = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(phones) - 1)
    inside = (t >= starts[k]) & (t < ends[k])
    for j in np.unique(k[inside]):  # phones under these frames: a handful per block
        ph = phones[int(j)]
        mask = inside & (k == j)
        if ph.silent:
            continue
        v, s = _phone_viseme(phones, int(j), t[mask])
        classes[mask] = v
        strength[mask] = s
        which[mask] = j
    return classes, strength, which


def _phone_viseme(phones: list[TimedPhone], j: int, t: F64) -> tuple[I8, float]:
    ph = phones[j]
    try:
        vis = arpabet_info(ph.phone).visemes
    except TableError:
        vis = ("aa",)
    if vis[0] == HH:
        for nxt in phones[j + 1 :]:
            if nxt.silent:
                break
            try:
                nv = arpabet_info(nxt.phone).visemes[0]
            except TableError:
                break
            if nv != HH and VISEME_INDEX[nv] in VOWEL_VISEMES:
                return np.full(t.shape, VISEME_INDEX[nv], np.int8), HH_STRENGTH
            break
        return np.full(t.shape, SIL, np.int8), 1.0
    if len(vis) == 1:
        return np.full(t.shape, VISEME_INDEX[vis[0]], np.int8), 1.0
    cut = ph.start + (ph.end - ph.start) * DIPHTHONG_SPLIT
    first, second = VISEME_INDEX[vis[0]], VISEME_INDEX[vis[1]]
    return np.where(t < cut, first, second).astype(np.int8), 1.0


def stream_run(
    pcm: Pcm, params: StreamParams | None = None, chunk_s: float = 0.02
) -> tuple[StreamFrames, Voice]:
    """Stream a whole recording in ``chunk_s`` chunks: all frames, and the voice learned."""
    rate = pcm.rate
    samples = pcm.samples
    if rate not in (16_000, 22_050, 24_000, 44_100, 48_000):
        samples, rate = to_internal(pcm), 16_000
    s = LipSyncStream(rate, params)
    step = max(1, round(chunk_s * rate))
    parts = [s.push(samples[i : i + step]) for i in range(0, samples.shape[0], step)]
    parts.append(s.finish())
    return StreamFrames.join(parts), s.voice()


def stream_visemes(
    pcm: Pcm, params: StreamParams | None = None, n_frames: int | None = None, chunk_s: float = 0.02
) -> I8:
    """Evaluation helper: stream a whole recording, return the decided class per frame."""
    frames, _ = stream_run(pcm, params, chunk_s)
    out = frames.visemes
    if n_frames is not None:
        out = np.concatenate([out, np.zeros(max(0, n_frames - out.shape[0]), np.int8)])[:n_frames]
    return out
