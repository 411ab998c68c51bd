"""Offline audio lip-sync: speech audio (with or without a transcript) -> a viseme timeline.

The result is the Speech package's :class:`~avatar_engine.speech.timing.Segments` table, the
same hand-off the text path produces, so co-articulation, rig mapping and curve sampling are
shared between text and audio (``coarticulate(result.segments)`` then ``SpeechRig.render``).

Pipeline: 16 kHz mono -> per-hop features (the batched kernel) -> PocketSphinx phones
(forced alignment when a transcript is given, with a Viterbi fallback; the phone loop
otherwise) -> gate: recognised phones over hops that are not speech (below the voice's level,
or a steady tone) become silence -> a short silence before a stop becomes its closure ->
ARPAbet -> visemes through the Speech tables, vowels' emphasis from their loudness.
See docs/audio.md for why each step is there and docs/lipsync-quality.md for what it scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

import numpy as np

from avatar_engine.audio.align import viterbi_align
from avatar_engine.audio.features import HOP_S, FeatureStage, LevelParams, LevelTracker
from avatar_engine.audio.phones import (
    SILENCE,
    DecoderConfig,
    ForcedAligner,
    PhoneRecognizer,
    TimedPhone,
    WordRecognizer,
    append_phone,
)
from avatar_engine.audio.resample import resample
from avatar_engine.audio.wav import Pcm, read_wav
from avatar_engine.kernels.audio_features import PERIODICITY, PITCH, RATE, RMS
from avatar_engine.speech.timing import DIPHTHONG_SPLIT, Row, Segments, finish_rows
from avatar_engine.speech.visemes import SIL, TableError, arpabet_info
from avatar_engine.types import B1, F32, I8

TONE_MIN_HOPS: Final = 25
"""A pitch this steady for 250 ms is a tone or a beep, not a voice."""
TONE_ONSET_HOPS: Final = 4
"""Hops before a steady run also marked: their windows straddle the tone's start."""
TONE_MAX_STEP: Final = 0.004
"""Largest hop-to-hop relative pitch change of a steady tone (speech glides far more)."""
MIN_SPEECH_FRACTION: Final = 0.3
"""A recognised phone needs this share of its hops to be speech, or it becomes silence."""
CLOSURE_MAX_S: Final = 0.12
"""A silence this short between speech and a stop is that stop's closure, not a pause."""
_STOPS: Final = frozenset(["P", "B", "T", "D", "K", "G", "CH", "JH"])
PAUSE_BELOW_VOICE_DB: Final = 45.0
"""A hop this far under the voice's level is a pause (measured: pauses inside sentences sit
at -64 dB median on Flite and at digital zero on espeak-ng; 40-50 dB all score the same)."""
PAUSE_MIN_HOPS: Final = 5
"""Silent hops at a phone's edge that make a pause of their own (50 ms: shorter gaps are
part of the articulation)."""
VOICED_PERIODICITY: Final = 0.6
"""A hop this periodic (the kernel's YIN periodicity) is voiced."""
VOICED_SILENCE_SHARE: Final = 0.5
"""A recognised silence with this share of voiced, non-pause hops is an unnamed sound."""
EMPHASIS_RANGE: Final = (0.65, 1.0)
"""Vowel emphasis (jaw target scale) from quiet to loud, as the text path's stress range."""


class Recogniser(StrEnum):
    """What hears the audio without a transcript: the phone loop (default; fast, no
    vocabulary) or word recognition then alignment (Rhubarb's way; better on natural voices,
    4-7x slower: see WordRecognizer)."""

    PHONES = "phones"
    WORDS = "words"


RECOGNISERS: Final = tuple(r.value for r in Recogniser)
"""The names ``--recogniser`` and ``AudioLipSync(recogniser=...)`` accept."""


@dataclass(frozen=True, slots=True)
class AudioTimeline:
    """Everything the offline path learned about one utterance."""

    segments: Segments
    phones: tuple[TimedPhone, ...]
    features: F32
    """(hops, 6) kernel output, one row per 10 ms (columns: ``kernels.audio_features.COLUMNS``)."""
    speaking: B1
    amplitude: F32
    duration: float
    mode: str
    """``"aligned"`` or ``"recognised"``."""
    method: str
    """How the phones were found: ``"pocketsphinx-align"`` (PocketSphinx's forced alignment),
    ``"phone-loop-viterbi"`` (its fallback, :mod:`avatar_engine.audio.align`), ``"phone-loop"``
    (recognition), ``"words-align"`` (word recognition then alignment), or ``"silence"`` (no
    speech in the audio)."""


def to_internal(pcm: Pcm) -> F32:
    """Any-rate mono audio -> 16 kHz float32."""
    if pcm.rate == RATE:
        return pcm.samples
    return resample(pcm.samples, pcm.rate)


def tonal_mask(features: F32, min_hops: int = TONE_MIN_HOPS) -> B1:
    """Hops inside a run of ``min_hops`` or more with an unnaturally steady pitch (plus the
    few onset hops before it, whose analysis windows straddle the start of the tone)."""
    pitch = features[:, PITCH].astype(np.float64)
    n = pitch.shape[0]
    steady = np.zeros(n, dtype=bool)
    if n > 1:
        ok = (pitch[1:] > 0) & (pitch[:-1] > 0) & (features[1:, PERIODICITY] > 0.8)
        step = np.abs(np.log(np.maximum(pitch[1:], 1.0) / np.maximum(pitch[:-1], 1.0)))
        steady[1:] = ok & (step < TONE_MAX_STEP)
    # Run lengths of `steady`, vectorised: label runs, count, broadcast back.
    edges = np.diff(np.concatenate([[0], steady.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    out = np.zeros(n, dtype=bool)
    for s, e in zip(starts, ends, strict=True):  # runs, not hops: a handful per utterance
        if e - s >= min_hops:
            out[max(s - TONE_ONSET_HOPS, 0) : e] = True
    return out


def absorb_closures(phones: Sequence[TimedPhone]) -> list[TimedPhone]:
    """Give short silences before a stop to that stop: the lips are already shaped for it
    (a /p/ is closed during its silent closure), so the mouth must not relax to neutral."""
    out = list(phones)
    for i in range(1, len(out) - 1):
        p, nxt = out[i], out[i + 1]
        if (
            p.silent
            and not out[i - 1].silent
            and nxt.phone in _STOPS
            and p.end - p.start <= CLOSURE_MAX_S
        ):
            out[i + 1] = TimedPhone(nxt.phone, p.start, nxt.end)
            out[i] = TimedPhone(SILENCE, p.start, p.start)
    return [p for p in out if p.end > p.start]


def _hop_span(p: TimedPhone, n: int) -> tuple[int, int]:
    """The 10 ms hops ``[h0, h1)`` a phone covers, nearest boundaries, clipped to ``n``."""
    h0 = min(max(round(p.start / HOP_S), 0), n)
    return h0, min(max(round(p.end / HOP_S), h0), n)


def carve_pauses(
    phones: Sequence[TimedPhone], pause: B1, min_hops: int = PAUSE_MIN_HOPS
) -> list[TimedPhone]:
    """Turn runs of at least ``min_hops`` ``pause`` hops at a phone's start or end into silence.

    Decoders stretch a word's first or last phone over a following or preceding pause when
    their silence model loses to it (a comma's pause inside "once, the" came back as one long
    DH); the mouth must rest there. Runs inside a phone are left alone (a stop's closure is
    silent by nature), and a silence this makes before a stop is its closure again once
    :func:`absorb_closures` has run.
    """
    n = pause.shape[0]
    out: list[TimedPhone] = []
    for p in phones:  # tens of phones per utterance
        h0, h1 = _hop_span(p, n)
        if p.silent or h1 - h0 < min_hops:
            append_phone(out, p)
            continue
        sounding = np.flatnonzero(~pause[h0:h1])
        if sounding.size == 0:
            append_phone(out, TimedPhone(SILENCE, p.start, p.end))
            continue
        lead, trail = int(sounding[0]), int(h1 - h0 - 1 - sounding[-1])
        start, end = p.start, p.end
        if lead >= min_hops:
            start = (h0 + lead) * HOP_S
            append_phone(out, TimedPhone(SILENCE, p.start, start))
        if trail >= min_hops:
            end = (h1 - trail) * HOP_S
        append_phone(out, TimedPhone(p.phone, start, end))
        if end < p.end:
            append_phone(out, TimedPhone(SILENCE, end, p.end))
    return out


def fill_voiced_silences(phones: Sequence[TimedPhone], voiced: B1) -> list[TimedPhone]:
    """Give a silence the recogniser heard over voiced, non-pause hops to its neighbours.

    A stretch that is periodic and well above the pause level is a sound the acoustic model
    could not name (on espeak-ng's voice, mostly its quiet nasal murmurs), not a rest: the
    mouth keeps moving, so the phones either side split it at its midpoint.
    """
    out = list(phones)
    n = voiced.shape[0]
    for i in range(1, len(out) - 1):
        p, prev, nxt = out[i], out[i - 1], out[i + 1]
        if not p.silent or prev.silent or nxt.silent:
            continue
        h0, h1 = _hop_span(p, n)
        if h1 <= h0 or float(voiced[h0:h1].mean()) < VOICED_SILENCE_SHARE:
            continue
        mid = 0.5 * (p.start + p.end)
        out[i - 1] = TimedPhone(prev.phone, prev.start, mid)
        out[i + 1] = TimedPhone(nxt.phone, mid, nxt.end)
        out[i] = TimedPhone(SILENCE, mid, mid)
    return [p for p in out if p.end > p.start]


def phones_to_segments(
    phones: Sequence[TimedPhone], amplitude: F32 | None = None, speaking: B1 | None = None
) -> Segments:
    """Timed ARPAbet phones -> viseme segments (Speech tables; diphthongs split 60/40).

    With ``speaking`` (per 10 ms hop), phones over mostly non-speech hops become silence; with
    ``amplitude``, a vowel's emphasis follows its loudness.
    """
    rows: list[Row] = []
    flat: list[str] = []
    lo, hi = EMPHASIS_RANGE
    for p in phones:
        h0 = int(np.floor(p.start / HOP_S + 1e-9))
        h1 = max(int(np.ceil(p.end / HOP_S - 1e-9)), h0 + 1)
        silent = p.silent
        if not silent and speaking is not None and speaking.shape[0]:
            span = speaking[min(h0, speaking.shape[0] - 1) : h1]
            silent = span.size == 0 or float(span.mean()) < MIN_SPEECH_FRACTION
        if silent:
            if rows and flat[-1] == "sil":
                rows[-1] = (SIL, rows[-1][1], p.end, 1.0, 1.0, SILENCE)
            else:
                rows.append((SIL, p.start, p.end, 1.0, 1.0, SILENCE))
                flat.append("sil")
            continue
        try:
            info = arpabet_info(p.phone)
        except TableError:
            info = arpabet_info("AH")  # an unknown label from a future model: a neutral vowel
        emphasis = 1.0
        if info.vowel and amplitude is not None and amplitude.shape[0]:
            a = float(amplitude[min(h0, amplitude.shape[0] - 1) : h1].max(initial=0.0))
            emphasis = lo + (hi - lo) * a
        if len(info.visemes) == 1:
            rows.append((-1, p.start, p.end, 1.0, emphasis, p.phone))
            flat.append(info.visemes[0])
        else:
            cut = p.start + (p.end - p.start) * DIPHTHONG_SPLIT
            rows.append((-1, p.start, cut, 1.0, emphasis, p.phone))
            rows.append((-1, cut, p.end, 1.0, emphasis, p.phone))
            flat.extend(info.visemes[:2])
    return finish_rows(rows, flat)


def frame_visemes(segments: Segments, n_frames: int, frame_s: float = HOP_S) -> I8:
    """Viseme class of the segment under each frame's centre (silence outside all segments)."""
    out = np.zeros(n_frames, dtype=np.int8)
    if len(segments) == 0 or n_frames == 0:
        return out
    t = (np.arange(n_frames) + 0.5) * frame_s
    k = np.searchsorted(segments.start, t, side="right") - 1
    ok = (k >= 0) & (t < segments.end[np.clip(k, 0, len(segments) - 1)])
    out[ok] = segments.viseme[k[ok]]
    return out


def _voice_level(feats: F32, level: LevelParams) -> float:
    """dBFS of a recording's voice: the 95th percentile of its hops above the absolute gate."""
    rms = feats[:, RMS]
    loud = rms[rms >= 10.0 ** (level.floor_dbfs / 20.0)]
    return float(20.0 * np.log10(np.percentile(loud, 95))) if loud.size else level.initial_dbfs


class AudioLipSync:
    """Offline audio -> timeline; keeps its decoders, so reuse one for a folder of files."""

    def __init__(
        self,
        *,
        decoder: DecoderConfig | None = None,
        level: LevelParams | None = None,
        backend: str | None = None,
        recogniser: str = Recogniser.PHONES,
    ) -> None:
        if recogniser not in RECOGNISERS:
            raise ValueError(f"recogniser must be one of {', '.join(RECOGNISERS)}")
        self.recogniser = Recogniser(recogniser)
        self._decoder_config = decoder
        self._words: WordRecognizer | None = None
        self.level = level or LevelParams()
        self.features = FeatureStage(backend=backend)
        self._recognizer: PhoneRecognizer | None = None
        self._aligner: ForcedAligner | None = None

    @property
    def recognizer(self) -> PhoneRecognizer:
        """The phone-loop recogniser, built on first use and reused (building a decoder takes longer
        than decoding a short file)."""
        if self._recognizer is None:
            self._recognizer = PhoneRecognizer(self._decoder_config)
        return self._recognizer

    @property
    def aligner(self) -> ForcedAligner:
        """The forced aligner for audio with a transcript, built on first use and reused like the
        recogniser."""
        if self._aligner is None:
            self._aligner = ForcedAligner()
        return self._aligner

    def analyse(self, samples: F32) -> tuple[F32, B1, F32]:
        """Features, speaking flags and opening per hop, levels relative to this recording."""
        floor = float(10.0 ** (self.level.floor_dbfs / 20.0))
        feats = self.features(samples, vad_rms=floor)
        # The whole file is known: start the level tracker at the voice's own level.
        initial = _voice_level(feats, self.level)
        tracker = LevelTracker(
            LevelParams(
                floor_dbfs=self.level.floor_dbfs, range_db=self.level.range_db,
                decay_db_per_s=self.level.decay_db_per_s, initial_dbfs=initial,
            )
        )  # fmt: skip
        speaking, amp = tracker.update(feats)
        speaking &= ~tonal_mask(feats)
        amp[~speaking] = 0.0
        return feats, speaking, amp

    def pauses(self, feats: F32) -> B1:
        """Hops quiet enough to be a pause: :data:`PAUSE_BELOW_VOICE_DB` under the recording's
        voice level (weak fricatives and stop bursts sit well above it)."""
        db = 20.0 * np.log10(np.maximum(feats[:, RMS].astype(np.float64), 1e-9))
        return db < _voice_level(feats, self.level) - PAUSE_BELOW_VOICE_DB

    def timeline(self, samples: F32, text: str | None = None) -> AudioTimeline:
        """16 kHz mono float32 -> timeline; with ``text``, aligned, else recognised."""
        x = np.ascontiguousarray(samples, dtype=np.float32)
        feats, speaking, amp = self.analyse(x)
        pause = self.pauses(feats)
        duration = x.shape[0] / RATE
        aligned = text is not None and bool(text.strip())
        mode = "aligned" if aligned else "recognised"
        if not speaking.any():
            phones = [TimedPhone(SILENCE, 0.0, duration)]
            method = "silence"
        else:
            # Peak-normalise before decoding so very quiet recordings keep their detail in PCM16.
            peak = float(np.max(np.abs(x)))
            y = x * np.float32(0.9 / peak) if 0.0 < peak < 0.5 else x
            if aligned:
                assert text is not None
                words = self.aligner.words(text)
                found, spans = self.aligner.align_words(y, words)
                method = "pocketsphinx-align"
                if found is None:
                    heard = self.recognizer.recognize(y)
                    n = int(np.ceil(duration / HOP_S))
                    prons = self.aligner.pronunciations(words)
                    found = viterbi_align(prons, heard, feats, speaking, n, spans)
                    method = "phone-loop-viterbi" + ("+words" if spans is not None else "")
                phones = found
            elif self.recogniser == Recogniser.WORDS:
                if self._words is None:
                    self._words = WordRecognizer()
                heard_words = [w for w in self._words.words(y) if self.aligner.known(w)]
                found, _ = self.aligner.align_words(y, heard_words) if heard_words else (None, None)
                if found is None:
                    phones = self.recognizer.recognize(y)
                    method = "phone-loop"
                else:
                    phones = found
                    method = "words-align"
            else:
                phones = self.recognizer.recognize(y)
                method = "phone-loop"
                voiced = (feats[:, PERIODICITY] > VOICED_PERIODICITY) & ~pause
                phones = fill_voiced_silences(phones, voiced)
            phones = absorb_closures(carve_pauses(phones, pause))
        # Recognised phones over pauses or a steady tone are silence (a transcript's are not:
        # its words are known to be there).
        gate = None if aligned else ~(pause | tonal_mask(feats))
        segments = phones_to_segments(phones, amp, gate)
        return AudioTimeline(segments, tuple(phones), feats, speaking, amp, duration, mode, method)


def timeline_from_pcm(
    pcm: Pcm, text: str | None = None, *, lipsync: AudioLipSync | None = None
) -> AudioTimeline:
    """Any-rate audio -> timeline (see :class:`AudioLipSync`)."""
    return (lipsync or AudioLipSync()).timeline(to_internal(pcm), text)


def timeline_from_wav(
    path: str | Path, text: str | None = None, *, lipsync: AudioLipSync | None = None
) -> AudioTimeline:
    """A 16-bit PCM WAV file -> timeline: the entry point the ``lipsync`` CLI calls.

    Raises :class:`~avatar_engine.audio.wav.AudioFormatError` for unreadable audio and
    :class:`~avatar_engine.audio.phones.AlignmentError` when the transcript does not fit.
    """
    return timeline_from_pcm(read_wav(path), text, lipsync=lipsync)
