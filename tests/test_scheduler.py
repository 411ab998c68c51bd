"""The tick scheduler on a fake clock: steady rate, late ticks skipped (never replayed); and
the capture backlog an input-driven tick waits for."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from avatar_engine.server.scheduler import TickScheduler
from inprocess import FakeClock


def run(scheduler: TickScheduler, ticks: int) -> None:
    async def main() -> None:
        task = asyncio.create_task(scheduler.run())
        while scheduler.stats.ticks < ticks:
            await asyncio.sleep(0)
        scheduler.stop()
        await task

    asyncio.run(main())


def test_steady_ticks_at_the_nominal_times() -> None:
    clock = FakeClock()
    seen: list[float] = []
    scheduler = TickScheduler(clock, 60.0, seen.append)
    run(scheduler, 60)
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert gaps == pytest.approx([1 / 60] * len(gaps))
    assert scheduler.stats.late == 0 and scheduler.stats.skipped == 0


def test_a_slow_tick_is_counted_and_missed_slots_are_skipped_not_replayed() -> None:
    clock = FakeClock()
    seen: list[float] = []

    def on_tick(t: float) -> None:
        seen.append(t)
        if len(seen) == 10:
            clock.t += 0.1  # this tick took 100 ms: six slots go by

    scheduler = TickScheduler(clock, 60.0, on_tick)
    run(scheduler, 20)
    assert scheduler.stats.late == 1 and scheduler.stats.skipped == 5
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert max(gaps) == pytest.approx(6 / 60)  # one jump forward ...
    assert min(gaps) == pytest.approx(1 / 60)  # ... and no burst of catch-up ticks


def test_a_failing_tick_is_counted_and_the_loop_goes_on() -> None:
    clock = FakeClock()
    calls = 0

    def on_tick(t: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("boom")

    scheduler = TickScheduler(clock, 60.0, on_tick)
    run(scheduler, 10)
    assert scheduler.stats.errors == 1 and calls >= 10
