"""Timed viseme segments, and the duration model that times phones when no TTS timing exists.

A :class:`Segments` table is the hand-off point between "what is said when" and "how the
mouth moves": text (G2P + duration model), TTS timings (see :mod:`.external`) and, next,
phones recognised from audio all produce one, and co-articulation consumes it.

Duration model (text only): each phone starts from its mean duration (Flite's KAL statistics
for ARPAbet, per-class means for IPA), then

- vowels are lengthened by stress (primary x1.15, secondary x1.0, unstressed x0.8);
- the last syllable before a clause or sentence pause is lengthened x1.3 (phrase-final);
- everything, pauses included, is scaled by ``REFERENCE_WPM / rate`` so the speaking rate in
  words per minute scales time linearly;
- no phone is shorter than ``MIN_PHONE_S``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from avatar_engine.speech.g2p import Phone, Silence, Unit
from avatar_engine.speech.visemes import HH, SIL, VISEME_INDEX, VOWEL_VISEMES
from avatar_engine.types import F32, F64, I8

REFERENCE_WPM: Final = 168.0
"""The rate at which unscaled mean durations speak typical English text, pauses included
(measured on tests/speech_corpus.py: 3.4 phones per word; see docs/speech.md)."""
DEFAULT_WPM: Final = 160.0
MIN_WPM: Final = 40.0
MAX_WPM: Final = 600.0
MIN_PHONE_S: Final = 0.03
STRESS_FACTOR: Final = {0: 0.8, 1: 1.15, 2: 1.0}
PHRASE_FINAL_FACTOR: Final = 1.3
DIPHTHONG_SPLIT: Final = 0.6
HH_STRENGTH: Final = 0.3
HH_LOOKAHEAD: Final = 4
EMPHASIS: Final = {0: 0.65, 1: 1.0, 2: 0.85}
"""Jaw target by vowel stress: an unstressed schwa barely opens the mouth."""


@dataclass(frozen=True, slots=True)
class Segments:
    """Viseme segments in time order (structure of arrays).

    ``strength`` scales the segment's dominance (weak /h/ borrows its neighbours' shape);
    ``emphasis`` scales its targets (stressed vowels open the jaw more).
    """

    viseme: I8
    start: F64
    end: F64
    strength: F32
    emphasis: F32
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.viseme.shape[0])

    @property
    def duration(self) -> float:
        """End of the last segment in seconds (0 when empty)."""
        return float(self.end[-1]) if len(self) else 0.0

    @classmethod
    def empty(cls) -> Segments:
        """No segments (silence)."""
        return cls.from_rows([])

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[int, float, float, float, float, str]]) -> Segments:
        """From ``(viseme, start, end, strength, emphasis, label)`` rows."""
        return cls(
            viseme=np.array([r[0] for r in rows], dtype=np.int8),
            start=np.array([r[1] for r in rows], dtype=np.float64),
            end=np.array([r[2] for r in rows], dtype=np.float64),
            strength=np.array([r[3] for r in rows], dtype=np.float32),
            emphasis=np.array([r[4] for r in rows], dtype=np.float32),
            labels=tuple(r[5] for r in rows),
        )

    def rows(self) -> list[tuple[int, float, float, float, float, str]]:
        """The segments as ``(viseme, start, end, strength, emphasis, label)`` tuples, the inverse
        of :meth:`from_rows`."""
        return list(
            zip(
                self.viseme.tolist(), self.start.tolist(), self.end.tolist(),
                self.strength.tolist(), self.emphasis.tolist(), self.labels, strict=True,
            )
        )  # fmt: skip

    def shifted(self, offset: float) -> Segments:
        """The same segments ``offset`` seconds later."""
        return Segments(
            self.viseme, self.start + offset, self.end + offset, self.strength, self.emphasis,
            self.labels,
        )  # fmt: skip


Row = tuple[int, float, float, float, float, str]


def resolve_hh(visemes: Sequence[str], index: int) -> tuple[int, float]:
    """(viseme, strength) for a segment, resolving ``hh`` to the next vowel-like shape.

    The search stops at a silence or after ``HH_LOOKAHEAD`` segments, so a text made of
    nothing but /h/ stays linear.
    """
    v = visemes[index]
    if v != HH:
        return VISEME_INDEX[v], 1.0
    for j in range(index + 1, min(index + 1 + HH_LOOKAHEAD, len(visemes))):
        nxt = visemes[j]
        if nxt == "sil":
            break
        if nxt != HH and VISEME_INDEX[nxt] in VOWEL_VISEMES:
            return VISEME_INDEX[nxt], HH_STRENGTH
    return SIL, HH_STRENGTH


def rate_scale(rate_wpm: float) -> float:
    """Duration factor for a speaking rate relative to the reference; ValueError outside the
    supported range."""
    if not np.isfinite(rate_wpm) or not MIN_WPM <= rate_wpm <= MAX_WPM:
        raise ValueError(f"speaking rate must be {MIN_WPM:g}..{MAX_WPM:g} words per minute")
    return REFERENCE_WPM / rate_wpm


def phone_rows(phone: Phone, start: float, dur: float, emphasis: float) -> list[tuple[str, Row]]:
    """One phone -> one (viseme, row), or two for a diphthong (the first part takes 60%).

    Rows carry a placeholder viseme (-1) until :func:`finish_rows` resolves /h/.
    """
    if len(phone.visemes) == 1:
        return [(phone.visemes[0], (-1, start, start + dur, 1.0, emphasis, phone.label))]
    cut = start + dur * DIPHTHONG_SPLIT
    return [
        (phone.visemes[0], (-1, start, cut, 1.0, emphasis, phone.label)),
        (phone.visemes[1], (-1, cut, start + dur, 1.0, emphasis, phone.label)),
    ]


def time_units(
    units: Sequence[Unit], *, rate_wpm: float = DEFAULT_WPM, start: float = 0.0
) -> Segments:
    """The duration model: phones and silences -> timed segments starting at ``start``."""
    scale = rate_scale(rate_wpm)
    final = _phrase_final_mask(units)
    rows: list[Row] = []
    flat_visemes: list[str] = []
    t = start
    for i, u in enumerate(units):
        if isinstance(u, Silence):
            dur = u.ms / 1000.0 * scale
            rows.append((SIL, t, t + dur, 1.0, 1.0, "|"))
            flat_visemes.append("sil")
            t += dur
            continue
        ms = u.mean_ms
        emphasis = 1.0
        if u.vowel:
            ms *= STRESS_FACTOR.get(u.stress, 1.0)
            emphasis = EMPHASIS.get(u.stress, 1.0)
        if final[i]:
            ms *= PHRASE_FINAL_FACTOR
        dur = max(ms / 1000.0 * scale, MIN_PHONE_S)
        for viseme, row in phone_rows(u, t, dur, emphasis):
            rows.append(row)
            flat_visemes.append(viseme)
        t += dur
    return finish_rows(rows, flat_visemes)


def finish_rows(rows: list[Row], flat_visemes: Sequence[str]) -> Segments:
    """Resolve the viseme placeholders of ``rows`` from ``flat_visemes`` (one per row)."""
    out: list[Row] = []
    for i, row in enumerate(rows):
        v, strength = resolve_hh(flat_visemes, i)
        out.append((v, row[1], row[2], row[3] * strength, row[4], row[5]))
    return Segments.from_rows(out)


def _phrase_final_mask(units: Sequence[Unit]) -> list[bool]:
    """True for phones of the last syllable (from its vowel on) before a pause or the end."""
    mask = [False] * len(units)
    i = len(units) - 1
    at_boundary = True
    while i >= 0:
        u = units[i]
        if isinstance(u, Silence):
            at_boundary = True
        elif at_boundary:
            mask[i] = True
            if u.vowel:
                at_boundary = False
        i -= 1
    return mask


class _Seg:
    __slots__ = ("emphasis", "end", "label", "start", "strength", "viseme")

    def __init__(self, row: Row) -> None:
        self.viseme, self.start, self.end, self.strength, self.emphasis, self.label = row

    @property
    def dur(self) -> float:
        return self.end - self.start

    def row(self) -> Row:
        return (self.viseme, self.start, self.end, self.strength, self.emphasis, self.label)


CONTACT_VISEMES: Final = frozenset({VISEME_INDEX["PP"], VISEME_INDEX["FF"]})


def enforce_min_duration(seg: Segments, min_s: float) -> Segments:
    """Merge repeated visemes and remove segments shorter than ``min_s`` (anti-flicker).

    Adjacent segments with the same viseme become one (JALI's "duplicate visemes merge"); a
    segment still shorter than ``min_s`` takes time from a neighbour that can spare it, and
    otherwise is absorbed by its neighbour. A contact viseme (PP, FF) absorbs a non-contact
    neighbour rather than vanish, so closures survive. One pass, linear in the segments.
    """
    merged: list[_Seg] = []
    for row in seg.rows():
        cur = _Seg(row)
        if merged and merged[-1].viseme == cur.viseme and abs(merged[-1].end - cur.start) < 1e-9:
            merged[-1].end = cur.end
            merged[-1].strength = max(merged[-1].strength, cur.strength)
            continue
        merged.append(cur)
    out: list[_Seg] = []
    for cur in merged:
        out.append(cur)
        _fix_last(out, min_s)
    if len(out) >= 2 and out[-1].dur < min_s - 1e-12:  # the tail has no next neighbour
        last = out.pop()
        out[-1].end = last.end
    return Segments.from_rows([s.row() for s in out])


def _fix_last(out: list[_Seg], min_s: float) -> None:
    """Make ``out[-2]`` long enough now that its right neighbour ``out[-1]`` is known."""
    if len(out) < 2:
        return
    prev, cur = out[-2], out[-1]
    short = min_s - prev.dur
    if short <= 1e-12:
        return
    if cur.dur - min_s >= short:  # borrow from the right neighbour
        prev.end += short
        cur.start = prev.end
    elif len(out) >= 3 and out[-3].dur - min_s >= short:  # or from the left one
        prev.start -= short
        out[-3].end = prev.start
    elif prev.viseme in CONTACT_VISEMES and cur.viseme not in CONTACT_VISEMES:
        prev.end = cur.end  # the closure swallows its right neighbour
        out.pop()
    elif len(out) >= 3:
        out[-3].end = prev.end  # absorbed by the left neighbour
        del out[-2]
    else:
        cur.start = prev.start  # first segment: absorbed by the right one
        del out[-2]
