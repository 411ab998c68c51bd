"""Input-driven frames: a stream that follows capture sends one frame per input at the input's
rate whatever the arrival jitter, never more than its level's rate; a kicked tick moves the
next scheduled slot, so the engine is stepped once per input, not twice."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar_engine import load_rig
from avatar_engine.codec import BatchEncoder, StreamParams, StreamSchema
from avatar_engine.codec.encoder import NONE, _fast
from avatar_engine.server.scheduler import TickScheduler
from inprocess import FakeClock

SCHEMA = StreamSchema.from_rig(load_rig("arkit52"))
IMPLS = [False] + ([True] if _fast is not None else [])


def frames_sent(arrivals_ms: list[int], *, use_fast: bool) -> list[int]:
    """Drive one 60 fps stream as the tick does for fresh capture: make due, encode, follow.
    Returns the times of the frames it sent."""
    enc = BatchEncoder(SCHEMA, 1, use_fast=use_fast)
    enc.add_stream(0, 1, 0, StreamParams())
    slot = np.array([0], np.intp)
    rng = np.random.default_rng(0)
    sent = []
    for t in arrivals_ms:
        morphs = rng.random((1, SCHEMA.n_morphs), dtype=np.float32)
        channels = np.zeros((1, SCHEMA.n_channels), np.float32)
        enc.make_due(slot, t)
        if enc.encode(t, morphs, channels).kinds[0] != NONE:
            enc.follow_input(slot, t)
            sent.append(t)
    return sent


@pytest.mark.parametrize("use_fast", IMPLS)
def test_jittered_input_at_the_level_rate_loses_no_frame(use_fast: bool) -> None:
    # Every other packet is read 12 ms late (the loop was busy in a tick): intervals of 28.7
    # and 4.7 ms. A check of the interval since the last frame alone dropped the short ones.
    arrivals = [round(k * 1000 / 60) + (12 if k % 2 else 0) for k in range(600)]
    assert len(frames_sent(arrivals, use_fast=use_fast)) == len(arrivals)


@pytest.mark.parametrize("use_fast", IMPLS)
def test_input_faster_than_the_level_rate_is_held_to_it(use_fast: bool) -> None:
    arrivals = [round(k * 1000 / 240) for k in range(240 * 5)]  # 240 Hz for 5 s
    sent = frames_sent(arrivals, use_fast=use_fast)
    assert 5 * 60 - 1 <= len(sent) <= 5 * 60 + 2  # the level's rate, plus the one-frame slack
    for second in range(5):  # and within any one second as well
        assert sum(1 for t in sent if second * 1000 <= t < (second + 1) * 1000) <= 61


def test_a_kicked_tick_moves_the_next_scheduled_slot() -> None:
    clock = FakeClock()
    seen: list[float] = []
    scheduler = TickScheduler(clock, 60.0, lambda t: None)

    def on_tick(t: float) -> None:
        seen.append(t)
        if len(seen) == 3:
            scheduler.ran_at(t + 0.005)  # input kicked a tick 5 ms after this slot

    scheduler.on_tick = on_tick

    async def main() -> None:
        task = asyncio.create_task(scheduler.run())
        while scheduler.stats.ticks < 5:
            await asyncio.sleep(0)
        scheduler.stop()
        await task

    asyncio.run(main())
    gaps = np.diff(seen)
    assert gaps == pytest.approx([1 / 60, 1 / 60, 0.005 + 1 / 60, 1 / 60])
    assert scheduler.stats.late == 0 and scheduler.stats.skipped == 0
