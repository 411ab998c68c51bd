"""The real-time tick: calls the engine at a fixed rate on an injectable clock.

A late tick is counted and the schedule skips ahead to the next slot; missed ticks are never
replayed in a burst, because a burst of stale frames is worse than a dropped one.
:class:`InputBacklog` lets an input-driven tick wait until a burst of capture packets has been
read, so one tick carries the whole burst.
"""

from __future__ import annotations

import asyncio
import logging
import math
import select
import time
from collections.abc import Awaitable, Callable, Iterable
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

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current tick."""
        self._stopped.set()

    async def run(self) -> None:
        """Tick at every slot of ``period`` until stopped. A late tick is counted and the schedule
        skips the slots it missed (they are never replayed); a tick that raises is counted and
        logged, and the next one runs."""
        next_t = self.clock.now()
        while not self._stopped.is_set():
            now = self.clock.now()
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
            next_t += self.period


class InputBacklog:
    """Is capture input already waiting in the kernel, not yet read? (a non-blocking ``poll``
    of the capture sockets).

    asyncio reads one datagram per socket per loop iteration. A tick kicked by the first packet
    of a burst (100 phones' frames of one instant) would run before the loop has read the
    other 99, and every later kick would again carry only the few packets read in between: the
    burst is read in slices between whole ticks, and its last packets wait for many ticks. An
    input-driven tick therefore waits while this says more is waiting (for a bounded time), and
    then carries the whole burst.
    """

    def __init__(self, transports: Callable[[], Iterable[asyncio.BaseTransport | None]]) -> None:
        self._transports = transports
        """The capture receivers' transports (read each time: receivers start after this)."""
        self._poll = select.poll()
        self._fds: set[int] = set()

    def waiting(self) -> bool:
        """Whether any capture socket has a datagram not yet read (a zero-timeout ``poll``); the set
        of sockets polled follows the receivers as they start and close."""
        fds = set()
        for transport in self._transports():
            sock = None if transport is None else transport.get_extra_info("socket")
            if sock is not None and sock.fileno() >= 0:
                fds.add(sock.fileno())
        if fds != self._fds:
            for fd in self._fds - fds:
                self._poll.unregister(fd)
            for fd in fds - self._fds:
                self._poll.register(fd, select.POLLIN)
            self._fds = fds
        return bool(self._poll.poll(0))
