"""Streaming text (voice agents): LLM text deltas in, co-articulated curves per session out.

:class:`SpeechSessions` owns a :class:`~avatar_engine.kernels.sampling.CurveBank` (one row per
session) and one :class:`TextStream` per session that has spoken. Time is always passed in.

Per session:

- ``push(delta, now)`` appends text; every word that is complete (followed by a space or a
  clause/sentence mark) is timed at once and its keyframes spliced into the session's row, so
  the mouth starts moving on the first word, not at the sentence end. Punctuation becomes
  pauses (clause/sentence detector of :mod:`.text`).
- When no delta arrives for ``quiet_s`` (default 0.5 s), the stream treats the text as
  complete: the unfinished last word is spoken and the utterance fades to neutral;
  ``update(now)`` reports the session as finished once its speech has played out.
- ``interrupt(now)`` (barge-in) drops everything pending and eases to neutral within
  ``INTERRUPT_EASE_S`` (80 ms).

Per tick, ``sample(t, out)`` samples every session in one kernel call; ``update(now)`` only
visits sessions with pending work.

Memory is bounded however long a stream runs: the unfinished-word buffer is capped at
``MAX_WORD_CHARS``; scheduled segments older than ``HISTORY_S`` are dropped; speech is
scheduled at most ``horizon_s`` ahead of ``now`` and the rest waits as words, at most
``max_queued_words`` of them (further words are dropped and counted in ``dropped_words``);
each bank row has a fixed keyframe capacity.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np

from avatar_engine.kernels.sampling import CurveBank
from avatar_engine.speech.coarticulation import (
    CHANNELS,
    CoarticulationParams,
    coarticulate,
    jali_gain,
)
from avatar_engine.speech.g2p import Silence, Unit, english, g2p, is_english
from avatar_engine.speech.text import PAUSE_MS, Pause, Token, Word, normalize
from avatar_engine.speech.timing import (
    DEFAULT_WPM,
    Row,
    Segments,
    enforce_min_duration,
    time_units,
)
from avatar_engine.types import F32, F64

MAX_WORD_CHARS: Final = 64
HISTORY_S: Final = 1.0
"""Segments this far in the past still shape the present (dominance reach) and are kept."""
REACH_S: Final = 0.35
"""How far back a re-render starts before new speech (the anticipatory reach)."""
INTERRUPT_EASE_S: Final = 0.08
START_DELAY_S: Final = 0.1
"""New speech after silence starts this long after ``now``, so the lips can anticipate it."""
_COMPLETE_RE: Final = re.compile(r"[\s,;:!?…]")


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How one session's streamed text is spoken: language, rate, JALI intensities, the quiet gap
    that ends an utterance, the scheduling horizon and the queue bound."""

    lang: str = "en"
    rate_wpm: float = DEFAULT_WPM
    ja: float = 0.5
    li: float = 0.5
    quiet_s: float = 0.5
    horizon_s: float = 8.0
    max_queued_words: int = 4096
    fps: float = 60.0
    params: CoarticulationParams = field(default_factory=CoarticulationParams)


class TextStream:
    """One session's incremental text -> segments -> keyframes in its bank row."""

    __slots__ = (
        "_buffer", "_finished", "_last_delta", "_queue", "_rows", "_sched_end", "bank",
        "dropped_words", "options", "row",
    )  # fmt: skip

    def __init__(self, bank: CurveBank, row: int, options: StreamOptions) -> None:
        self.bank = bank
        self.row = row
        self.options = options
        self._buffer = ""
        self._queue: deque[Token] = deque()
        self._rows: list[Row] = []  # scheduled segments (recent history + future)
        self._sched_end = -np.inf
        self._last_delta = -np.inf
        self._finished = True
        self.dropped_words = 0

    # -- input -------------------------------------------------------------------------
    def push(self, delta: str, now: float) -> None:
        """Add a text delta at ``now``: complete words are queued and scheduled, a trailing partial
        word waits for more (or for the quiet gap)."""
        self._last_delta = now
        self._finished = False
        self._buffer += delta
        cut = _last_boundary(self._buffer)
        if cut < 0 and len(self._buffer) > MAX_WORD_CHARS:
            cut = len(self._buffer)  # a runaway "word": speak what we have
        if cut >= 0:
            ready, self._buffer = self._buffer[:cut], self._buffer[cut:]
            self._enqueue(self._tokens(ready))
        self._schedule(now)

    def interrupt(self, now: float) -> None:
        """Barge-in: drop pending text and ease whatever is showing to neutral."""
        self._buffer = ""
        self._queue.clear()
        self._rows.clear()
        self._sched_end = -np.inf
        self._finished = True
        current = self.bank.sample_row(self.row, now)[None, :]
        times = np.array([now, now + INTERRUPT_EASE_S])
        values = np.concatenate([current, np.zeros((1, CHANNELS), dtype=np.float32)])
        self.bank.splice(self.row, times, values, keep_after=now)

    def update(self, now: float) -> bool:
        """Quiet-gap completion and horizon refill; True when the session has finished."""
        if self._finished:
            return True
        if now - self._last_delta >= self.options.quiet_s and self._buffer:
            tail, self._buffer = self._buffer, ""
            self._enqueue(self._tokens(tail))
        self._schedule(now)
        idle = not self._queue and not self._buffer
        if idle and now - self._last_delta >= self.options.quiet_s and now >= self.speech_end:
            self._finished = True
        return self._finished

    @property
    def speech_end(self) -> float:
        """When the scheduled speech, tail included, is over (``-inf`` before any)."""
        return float(self._sched_end) + self.options.params.tail_s

    @property
    def finished(self) -> bool:
        """Whether everything pushed has been spoken and the quiet gap has passed."""
        return self._finished

    # -- internals ---------------------------------------------------------------------
    def _tokens(self, text: str) -> list[Token]:
        """Words of complete text. Other languages are split at whitespace too, so a long
        text is scheduled (and run through espeak-ng) a horizon at a time, never whole."""
        if is_english(self.options.lang):
            return normalize(text)
        return [Word(w) for w in text.split()]

    def _enqueue(self, tokens: list[Token]) -> None:
        for tok in tokens:
            if len(self._queue) >= self.options.max_queued_words:
                self.dropped_words += isinstance(tok, Word)
                continue
            self._queue.append(tok)

    def _units(self, tokens: list[Token]) -> list[Unit]:
        if is_english(self.options.lang):
            return english().units(tokens)
        units: list[Unit] = []
        text = " ".join(tok.text for tok in tokens if isinstance(tok, Word))
        if text.strip():
            units.extend(g2p(text, self.options.lang))  # one espeak-ng run per chunk
        units.extend(Silence(t.kind, PAUSE_MS[t.kind]) for t in tokens if isinstance(t, Pause))
        return units

    def _schedule(self, now: float) -> None:
        opts = self.options
        if not self._queue:
            return
        start = max(self._sched_end, now + START_DELAY_S)
        if start - now >= opts.horizon_s / 2:
            # Refill only when less than half the horizon is scheduled: each refill
            # re-renders the recent past, so refilling a word per tick would cost a render
            # per tick per session.
            return
        fresh = start > self._sched_end  # speech (re)starts after a silence
        if fresh and self._queue and isinstance(self._queue[0], Pause):
            while self._queue and isinstance(self._queue[0], Pause):
                self._queue.popleft()  # no pause before the first word
        tokens: list[Token] = []
        budget = opts.horizon_s - (start - now)
        approx = 0.0
        while self._queue and approx < budget:
            tok = self._queue.popleft()
            tokens.append(tok)
            approx += 0.35 if isinstance(tok, Word) else PAUSE_MS[tok.kind] / 1000.0
        units = self._units(tokens)
        if not units:
            return
        seg = time_units(units, rate_wpm=opts.rate_wpm, start=start)
        new_rows = seg.rows()
        self._rows = [r for r in self._rows if r[2] >= now - HISTORY_S] + new_rows
        self._sched_end = new_rows[-1][2]
        self._render(now, start, fresh)

    def _render(self, now: float, new_start: float, fresh: bool) -> None:
        opts = self.options
        p = opts.params
        params = CoarticulationParams(
            ja=opts.ja, li=opts.li, key_rate=p.key_rate, max_velocity=p.max_velocity,
            lead_s=p.lead_s, tail_s=p.tail_s, table=p.table,
        )  # fmt: skip
        seg = enforce_min_duration(Segments.from_rows(self._rows), max(1.0 / opts.fps, 0.02))
        t0 = max(now, new_start - (p.lead_s if fresh else REACH_S))
        t1 = self._sched_end + p.tail_s
        keys = coarticulate(seg, params, t0=t0, t1=t1, fade_in=False, fade_out=True)
        values = keys.values
        if self.bank.counts[self.row]:
            # Join the old curve without a jump: funnel the new one into a cone around the
            # old value at t0 whose slope is the velocity limit.
            old = self.bank.sample_row(self.row, t0).astype(np.float64)
            reach = (p.max_velocity * (keys.times - t0))[:, None]
            values = np.clip(values, old[None, :] - reach, old[None, :] + reach).astype(np.float32)
        self.bank.splice(self.row, keys.times, values, keep_after=now)


def _last_boundary(text: str) -> int:
    """Index just past the last complete word (-1 when none is complete yet)."""
    last = -1
    for m in _COMPLETE_RE.finditer(text):
        last = m.end()
    return last


class SpeechSessions:
    """Speech for S sessions: push text per session, sample all sessions per tick at once."""

    __slots__ = ("_active", "_streams", "bank", "options")

    def __init__(
        self,
        sessions: int,
        *,
        options: StreamOptions | None = None,
        capacity: int = 1024,
        backend: str | None = None,
    ) -> None:
        self.options = options or StreamOptions()
        self.bank = CurveBank(sessions, CHANNELS, capacity=capacity, backend=backend)
        self._streams: dict[int, TextStream] = {}
        self._active: set[int] = set()

    def stream(self, row: int, options: StreamOptions | None = None) -> TextStream:
        """The session's text stream (created on first use; ``options`` replace the defaults)."""
        if not 0 <= row < self.bank.sessions:
            raise IndexError(f"session row {row} out of range")
        s = self._streams.get(row)
        if s is None or options is not None:
            s = TextStream(self.bank, row, options or self.options)
            self._streams[row] = s
        return s

    def grow(self, sessions: int) -> None:
        """More rows; existing streams keep their rows and keys."""
        self.bank.grow(sessions)

    def release(self, row: int) -> None:
        """Forget a row's stream and keys (its session is gone); the row can be reused."""
        self._streams.pop(row, None)
        self._active.discard(row)
        self.bank.clear(row)

    def push(self, row: int, delta: str, now: float) -> None:
        """Add a text delta to the session in ``row`` (its stream opened on first use); the row
        speaks until it finishes."""
        self.stream(row).push(delta, now)
        self._active.add(row)

    def interrupt(self, row: int, now: float) -> None:
        """Barge-in on the session in ``row``: pending text dropped, the face eased to neutral."""
        self.stream(row).interrupt(now)
        self._active.discard(row)

    def set_style(self, row: int, *, ja: float | None = None, li: float | None = None) -> None:
        """Per-session JALI controls (0..1, 0.5 neutral) for speech rendered from now on."""
        s = self.stream(row)
        new = replace(s.options, ja=s.options.ja if ja is None else ja,
                      li=s.options.li if li is None else li)  # fmt: skip
        jali_gain(new.ja), jali_gain(new.li)  # validates the range
        s.options = new

    def update(self, now: float) -> list[int]:
        """Advance sessions with pending work; returns the rows that finished speaking."""
        done = [row for row in sorted(self._active) if self._streams[row].update(now)]
        self._active.difference_update(done)
        return done

    def sample(self, t: F64 | float, out: F32) -> None:
        """Every session's channels at its time (one kernel call) into ``out`` (S, 45)."""
        times = np.full(self.bank.sessions, t) if np.isscalar(t) else np.asarray(t, np.float64)
        self.bank.sample(times, out)

    @property
    def speaking(self) -> frozenset[int]:
        """Rows with speech in progress (a snapshot)."""
        return frozenset(self._active)
