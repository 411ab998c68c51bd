"""One-shot lip-sync: text or TTS timings -> segments -> co-articulated keyframes.

This is the offline/batch path (the CLI, a script, a TTS that returns the whole utterance).
Streaming text goes through :mod:`.stream`, which uses the same pieces incrementally.
"""

from __future__ import annotations

from dataclasses import dataclass

from avatar_engine.speech.coarticulation import (
    CoarticulationParams,
    Keyframes,
    assimilate_contacts,
    coarticulate,
)
from avatar_engine.speech.g2p import g2p
from avatar_engine.speech.timing import (
    DEFAULT_WPM,
    MIN_PHONE_S,
    Segments,
    enforce_min_duration,
    time_units,
)

DEFAULT_FPS = 60.0


@dataclass(frozen=True, slots=True)
class Utterance:
    """The timed segments (for labels and plots) and the keyframed channel curves."""

    segments: Segments
    keys: Keyframes


def min_segment_s(fps: float) -> float:
    """Shortest segment kept: one output frame (no sub-frame flicker), at least 20 ms."""
    return max(1.0 / fps, 0.02)


def from_segments(
    segments: Segments,
    *,
    ja: float = 0.5,
    li: float = 0.5,
    fps: float = DEFAULT_FPS,
    params: CoarticulationParams | None = None,
) -> Utterance:
    """Co-articulate already-timed segments (external timings, recognised phones)."""
    base = params or CoarticulationParams()
    p = CoarticulationParams(
        ja=ja, li=li, key_rate=base.key_rate, max_velocity=base.max_velocity,
        lead_s=base.lead_s, tail_s=base.tail_s, table=base.table,
    )  # fmt: skip
    seg = enforce_min_duration(assimilate_contacts(segments), min_segment_s(fps))
    return Utterance(seg, coarticulate(seg, p))


def text_segments(
    text: str, *, lang: str = "en", rate_wpm: float = DEFAULT_WPM, start: float = 0.0
) -> Segments:
    """Text -> timed segments through G2P and the duration model."""
    return time_units(g2p(text, lang), rate_wpm=rate_wpm, start=start)


def from_text(
    text: str,
    *,
    lang: str = "en",
    rate_wpm: float = DEFAULT_WPM,
    ja: float = 0.5,
    li: float = 0.5,
    fps: float = DEFAULT_FPS,
    start: float | None = None,
    params: CoarticulationParams | None = None,
) -> Utterance:
    """Text -> utterance. Speech starts after the lead-in (default 0.15 s) so the lips can
    anticipate the first sound from neutral at time 0."""
    p = params or CoarticulationParams()
    t0 = p.lead_s if start is None else start
    seg = text_segments(text, lang=lang, rate_wpm=rate_wpm, start=t0)
    return from_segments(seg, ja=ja, li=li, fps=fps, params=p)


__all__ = ["MIN_PHONE_S", "Utterance", "from_segments", "from_text", "text_segments"]
