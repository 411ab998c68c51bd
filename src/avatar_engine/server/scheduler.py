"""The real-time tick: calls the engine at a fixed rate on an injectable clock.

A late tick is counted and the schedule skips ahead to the next slot; missed ticks are never
replayed in a burst, because a burst of stale frames is worse than a dropped one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("avatar_engine.tick")


class Clock(Protocol):
    """Monotonic seconds and a way to sleep on the same timeline (fakes step both)."""

    def now(self) -> float:
        """Seconds on a monotonic timeline."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the same timeline."""


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep(seconds)``."""
        await asyncio.sleep(seconds)


@dataclass
class TickStats:
    """Tick counters for ``/stats``: ticks, failures, late ticks, skipped slots and recent
    durations."""

    ticks: int = 0
    errors: int = 0
    late: int = 0
    skipped: int = 0
    durations: list[float] = field(default_factory=list)
    """The last few tick durations (seconds), bounded."""
    max_samples: int = 600

    def record(self, seconds: float) -> None:
        """Keep one tick duration (only the last ``max_samples``)."""
        self.durations.append(seconds)
        if len(self.durations) > self.max_samples:
            del self.durations[: len(self.durations) - self.max_samples]

    def summary(self) -> dict[str, float | int]:
        """The counters and the p50/p99 tick duration in milliseconds."""
        if self.durations:
            ordered = sorted(self.durations)
            p50 = ordered[len(ordered) // 2]
            p99 = ordered[min(len(ordered) - 1, math.ceil(len(ordered) * 0.99) - 1)]
        else:
            p50 = p99 = 0.0
        return {
            "ticks": self.ticks,
            "errors": self.errors,
            "late": self.late,
            "skipped": self.skipped,
            "p50_ms": round(p50 * 1e3, 3),
            "p99_ms": round(p99 * 1e3, 3),
        }


class TickScheduler:
    """Runs ``on_tick(t)`` every ``1/hz`` seconds of ``clock`` until stopped."""

    def __init__(
        self, clock: Clock, hz: float, on_tick: Callable[[float], Awaitable[None] | None]
    ) -> None:
        self.clock = clock
        self.period = 1.0 / hz
        self.on_tick = on_tick
        self.stats = TickStats()
        self._stopped = asyncio.Event()
        self._next_t = -math.inf
        """The next slot (seconds of ``clock``); :meth:`ran_at` may move it later."""

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current tick."""
        self._stopped.set()

    def ran_at(self, t: float) -> None:
        """A tick ran at ``t`` outside the schedule (kicked by input): the next slot moves to one
        period after it. While input kicks ticks at the tick rate, no scheduled tick then runs
        between two kicked ones, where it would step the engine a second time per frame (for
        nothing a viewer sees: the kicked ticks carry the frames) and hold up the loop when the
        next input arrives; once input stops, slots resume a period after the last kick."""
        self._next_t = max(self._next_t, t + self.period)

    async def run(self) -> None:
        """Tick at every slot of ``period`` until stopped. A late tick is counted and the schedule
        skips the slots it missed (they are never replayed); a tick that raises is counted and
        logged, and the next one runs."""
        self._next_t = max(self._next_t, self.clock.now())
        while not self._stopped.is_set():
            now = self.clock.now()
            next_t = self._next_t
            if now < next_t:
                await self.clock.sleep(next_t - now)
                continue
            behind = int((now - next_t) / self.period + 1e-9)  # slots wholly missed
            if behind:
                self.stats.late += 1
                self.stats.skipped += behind
                next_t += behind * self.period
            started = self.clock.now()
            try:
                result = self.on_tick(next_t)
                if result is not None:
                    await result
            except Exception:
                # A failing tick must not stop the stream for everyone: count, log, go on.
                self.stats.errors += 1
                if self.stats.errors <= 10 or self.stats.errors % 1000 == 0:
                    log.exception("tick failed", extra={"errors": self.stats.errors})
            self.stats.ticks += 1
            self.stats.record(self.clock.now() - started)
            self._next_t = max(self._next_t, next_t + self.period)
