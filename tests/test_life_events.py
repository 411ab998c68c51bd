"""Procedural-life event kernel: numba and native draw the same events as the numpy reference.

The reference (:func:`life_events_numpy`, :func:`breaths_numpy`) is the vectorised numpy code
that drew events before the kernel existed; ``test_animation_life.py`` holds its statistics,
replay and row independence. Here every accelerated backend is run beside it on the same
states over a multi-second simulation of 64 sessions (some speaking, in words, thinking, with
stressed syllables): the rows that fire on each tick, the random counters and blink counts
must be identical, and the drawn values equal to within a last-bit tolerance (libm may
differ).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from avatar_engine.animation import LifeParams, ProceduralLife
from avatar_engine.animation.procedural import event_consts
from avatar_engine.kernels.backends import available_backends, native_module
from avatar_engine.kernels.life_events import (
    LifeEventBuffers,
    LifeEventsFn,
    make_life_events,
)

ACCEL = [b for b in available_backends() if b != "numpy"]
SESSIONS = 64
FPS = 60.0
EXACT = ("keys", "counters", "blink_count", "in_word", "speaking", "stress", "wrapped")

pytestmark = pytest.mark.skipif(
    not ACCEL, reason="parity needs numba or the native module, and neither loads on this machine"
)


def _copy(state: LifeEventBuffers) -> LifeEventBuffers:
    return LifeEventBuffers(*(np.array(a, copy=True) for a in state))


def _compare(ref: LifeEventBuffers, got: LifeEventBuffers, where: str) -> None:
    for name, a, b in zip(LifeEventBuffers._fields, ref, got, strict=True):
        if name in EXACT:
            np.testing.assert_array_equal(b, a, err_msg=f"{name} {where}")
        elif a.dtype == np.float64:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=0.0, err_msg=f"{name} {where}")
        else:  # float32, rounded from float64 results that may differ in their last bit
            np.testing.assert_array_max_ulp(b, a, maxulp=1)


class _SideBySide:
    """Stands in for the life's event kernel: runs ``other`` on a copy of each state, the
    reference on the state itself (so the simulation follows the reference), and compares."""

    def __init__(self, ref: LifeEventsFn, other: LifeEventsFn) -> None:
        self.ref, self.other = ref, other
        self.calls = 0
        self.fired = 0

    def __call__(self, state: LifeEventBuffers, t: float, /) -> None:
        got = _copy(state)
        before = state.counters.copy()
        self.other(got, t)
        self.ref(state, t)
        _compare(state, got, f"after the events at t={t}")
        self.calls += 1
        self.fired += int(np.count_nonzero(state.counters != before))

    def breaths(self, state: LifeEventBuffers, /) -> None:
        got = _copy(state)
        self.other.breaths(got)
        self.ref.breaths(state)
        _compare(state, got, "after the breaths")


def _inputs(g: np.random.Generator, t: float) -> tuple[Any, ...]:
    n = SESSIONS
    row = np.arange(n)
    speaking = np.where(row % 3 < 2, 0.5 + 0.5 * np.sin(t + row), 0.0)
    thinking = (row % 7 == 1).astype(np.float32)
    # short words (blinks wait for the pause) and long ones (blinks wait at most defer_max)
    in_word = ((row % 3 == 0) & ((t % 0.5) < 0.35)) | ((row % 3 == 1) & ((t % 2.0) < 1.5))
    stress = np.where(g.random(n) < 0.04, g.uniform(0.1, 1.5, n), 0.0)
    return speaking.astype(np.float32), thinking, in_word, stress.astype(np.float32)


def _simulate(life: ProceduralLife, seconds: float) -> list[np.ndarray]:
    """Run ``life`` from fresh rows; the per-tick log of counters, blink counts and features."""
    for row in range(SESSIONS):
        life.start_row(row, 500 + row, 0.0)
    g = np.random.default_rng(3)
    channels = np.zeros((SESSIONS, 9), np.float32)
    log = []
    for i in range(int(seconds * FPS)):
        t = (i + 1) / FPS
        speaking, thinking, in_word, stress = _inputs(g, t)
        life.update(t, 1 / FPS, SESSIONS, speaking, thinking, in_word, stress, channels)
        log.append(
            np.concatenate(
                [
                    life.counters.ravel().astype(np.float64),
                    life.blink_count.astype(np.float64),
                    life.features.ravel().astype(np.float64),
                ]
            )
        )
    return log


@pytest.mark.parametrize("backend", ACCEL)
def test_event_kernel_matches_numpy_each_tick(backend: str) -> None:
    """Side by side on the reference's own states, tick by tick, for 6 simulated seconds."""
    life = ProceduralLife(SESSIONS, LifeParams(), "numpy")
    checker = _SideBySide(life._events, make_life_events(event_consts(LifeParams()), backend))
    life._events = checker
    _simulate(life, 6.0)
    assert checker.calls == 6 * 60
    # every kind of event fired: ~2 blinks, ~4 fixations, ~8 micro-saccades per session
    assert checker.fired > SESSIONS * 10
    assert int(life.blink_count.sum()) > SESSIONS
    assert int(life.counters[:, 4].sum()) > 0 and int(life.counters[:, 6].sum()) > 0


@pytest.mark.parametrize("backend", ACCEL)
def test_backends_fire_the_same_events(backend: str) -> None:
    """Whole procedural life per backend (event and tick kernels): the same rows fire on the
    same ticks (counters and blink counts equal every tick) and the outputs agree."""
    ref = _simulate(ProceduralLife(SESSIONS, LifeParams(), "numpy"), 5.0)
    got = _simulate(ProceduralLife(SESSIONS, LifeParams(), backend), 5.0)
    events = SESSIONS * 7 + SESSIONS  # counters and blink counts lead each row of the log
    for tick, (a, b) in enumerate(zip(ref, got, strict=True)):
        np.testing.assert_array_equal(b[:events], a[:events], err_msg=f"tick {tick}")
        np.testing.assert_allclose(b[events:], a[events:], atol=1e-5, err_msg=f"tick {tick}")


def _event_state(n: int) -> LifeEventBuffers:
    life = ProceduralLife(n, LifeParams(), "numpy")
    for row in range(n):
        life.start_row(row, row, 0.0)
    return LifeEventBuffers(
        keys=life.keys,
        counters=life.counters,
        in_word=np.zeros(n, np.bool_),
        speaking=np.zeros(n, np.float32),
        stress=np.ones(n, np.float32),
        next_blink=np.zeros(n),
        blink_t0=life.blink_t0,
        blink_close=life.blink_close,
        blink_open=life.blink_open,
        blink_count=life.blink_count,
        next_fixation=life.next_fixation,
        fixation=life.fixation,
        next_micro=life.next_micro,
        micro=life.micro,
        head_vel=life.head_vel,
        brow=life.brow,
        breath_period=life.breath_period,
        breath_cycle=life.breath_cycle,
        wrapped=np.ones(n, np.uint8),
    )


@pytest.mark.skipif(native_module() is None, reason="the native module is not built here")
def test_native_events_refuse_bad_arguments() -> None:
    """A wrong dtype, shape or a read-only output is an error naming the field, raised before
    any draw (counters unchanged); the same struct with the right fields then runs."""
    life = ProceduralLife(3, LifeParams(), "native")
    fn = life._events
    good = _event_state(3)
    counters = good.counters.copy()
    with pytest.raises(TypeError, match="counters"):
        fn(good._replace(counters=good.counters.astype(np.int64)), 1.0)
    with pytest.raises(TypeError, match="in_word"):
        fn(good._replace(in_word=good.in_word.astype(np.uint8)), 1.0)
    with pytest.raises(ValueError, match="keys"):
        fn(good._replace(keys=good.keys[:, :6].copy()), 1.0)
    with pytest.raises(ValueError, match="fixation"):
        fn(good._replace(fixation=np.zeros((2, 2), np.float32)), 1.0)
    frozen = good.counters.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="counters"):
        fn(good._replace(counters=frozen), 1.0)
    with pytest.raises(ValueError, match="breath_cycle"):
        fn.breaths(good._replace(breath_cycle=np.zeros(4)))
    with pytest.raises(TypeError, match="wrapped"):
        fn.breaths(good._replace(wrapped=np.ones(3, np.bool_)))
    with pytest.raises(TypeError, match="speaking"):
        fn(good._replace(speaking=np.zeros(3)), 1.0)  # float64: never a silent copy
    np.testing.assert_array_equal(good.counters, counters)  # nothing was drawn
    fn(good, 100.0)
    fn.breaths(good)
    assert (good.counters[:, [1, 2, 3, 4, 6]] > counters[:, [1, 2, 3, 4, 6]]).all()
    assert good.blink_count.tolist() == [1, 1, 1]
