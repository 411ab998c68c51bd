"""Procedural-life events: the random draws of one tick (blinks, gaze, stress beats, breaths).

Events are rare (a blink every few seconds per session), so most ticks draw nothing for most
rows; a numpy version pays a dozen small calls per event kind per tick whatever the count. This
family makes a tick's events one kernel call, ``events(state, t)`` before the life tick
(:mod:`avatar_engine.kernels.life`), and the breath re-draw a second one, ``breaths(state)``,
after it (the tick kernel sets ``wrapped`` and reads ``breath_cycle``).

Random numbers come from the per-session counter-based streams of
:mod:`avatar_engine.kernels.rng`: draw ``j`` of row ``r`` of stream ``s`` is
``splitmix64(keys[r, s] + (counters[r, s] + j) * GAMMA)`` (uint64, wrapping), as a float64
``(bits >> 11) * 2**-53``; a row's draws advance ``counters[r, s]``. ``N(a, b)`` below is the
Box-Muller cosine branch ``sqrt(-2 log1p(-a)) cos(2 pi b)``, ``E(a) = -log1p(-a)``. Rows are
visited in ascending order; per row the draws are (a stream only ever moves its own counter,
so the order between kinds is not observable, but every backend keeps it):

* blink (``STREAM_BLINK``, 5 draws ``u0..u4``), if ``t >= next_blink``, not busy
  (``t < blink_t0 + blink_close + blink_open``) and not deferred (``in_word`` and
  ``t - next_blink < defer_max``): ``dur = duration_min + u0 (duration_max - duration_min)``,
  ``blink_t0 = t``, ``blink_close = dur close_fraction``, ``blink_open = dur (1 -
  close_fraction)``, ``blink_count += 1``; ``next_blink = t + dur + gap`` with ``gap =
  double_gap_min + u2 (double_gap_max - double_gap_min)`` if ``u1 < double_probability``, else
  ``t + max(clip(interval_median exp(interval_sigma N(u3, u4)), interval_min, interval_max),
  dur + 0.1)``;
* fixation (``STREAM_GAZE``, 5 draws) if ``t >= next_fixation``: with the float32 ``spread =
  1 + speaking_spread speaking``, ``fixation = (N(u0, u1) spread_yaw spread, N(u2, u3)
  spread_pitch spread)`` (float64, stored float32), ``next_fixation = t + fixation_min +
  E(u4) (fixation_mean - fixation_min)``;
* micro-saccade (``STREAM_MICRO``, 5 draws) if ``t >= next_micro``: ``micro = (N(u0, u1),
  N(u2, u3)) micro_amplitude``, ``next_micro = t + micro_min + E(u4) (micro_mean -
  micro_min)``;
* stress beat (``STREAM_STRESS``, 2 draws) if ``stress > 0``: with the float32 ``s = min(stress,
  1)``, ``head_vel[1] -= nod_kick s`` if ``u0 < nod_probability`` and ``brow = max(brow, s)``
  if ``u1 < brow_probability`` (float32 arithmetic);
* ``breaths``: for rows with ``wrapped`` set (``STREAM_BREATH``, 1 draw ``u``):
  ``breath_cycle = breath_period (1 + cycle_jitter (2u - 1))``.

Sums and products are evaluated left to right in float64 unless stated (``t + fixation_min``
first); float32 where the stored operands are float32, as numpy does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol, cast

import numpy as np

from avatar_engine.kernels import rng
from avatar_engine.kernels.backends import BackendName, require_native
from avatar_engine.types import B1, F32, F64, I64, U8, U64


class LifeEventConsts(NamedTuple):
    """The scalar event parameters (from :class:`LifeParams`), fixed per animator.

    A NamedTuple so numba takes it as one typed argument; every backend reads it by name.
    """

    interval_median: float
    interval_sigma: float
    interval_min: float
    interval_max: float
    duration_min: float
    duration_max: float
    close_fraction: float
    double_probability: float
    double_gap_min: float
    double_gap_max: float
    defer_max: float
    spread_yaw: float
    spread_pitch: float
    speaking_spread: float
    fixation_min: float
    fixation_mean: float
    micro_amplitude: float
    micro_min: float
    micro_mean: float
    nod_probability: float
    nod_kick: float
    brow_probability: float
    cycle_jitter: float


class LifeEventBuffers(NamedTuple):
    """The per-session rows the event draws read and write; all arrays have the same ``n`` rows.

    Every backend binds these by name (numpy and numba as attributes, C++ through
    ``getattr``), so their order is no contract.
    """

    keys: U64  # (n, rng.N_STREAMS)
    counters: U64  # (n, rng.N_STREAMS), advanced by the draws
    in_word: B1
    speaking: F32
    stress: F32
    next_blink: F64
    blink_t0: F64
    blink_close: F64
    blink_open: F64
    blink_count: I64
    next_fixation: F64
    fixation: F32  # (n, 2)
    next_micro: F64
    micro: F32  # (n, 2)
    head_vel: F32  # (n, 3)
    brow: F32
    breath_period: F64
    breath_cycle: F64
    wrapped: U8


class LifeEventsFn(Protocol):
    """One backend's event draws: ``fn(state, t)`` before the life tick, ``fn.breaths(state)``
    after it."""

    def __call__(self, state: LifeEventBuffers, t: float, /) -> None:
        """Draw the blinks, fixations, micro-saccades and stress beats due at ``t``."""

    def breaths(self, state: LifeEventBuffers, /) -> None:
        """Draw the next breath's length for the rows whose breath wrapped this tick."""


def _expo(u: F64) -> F64:
    """Unit-mean exponential variates from uniforms."""
    return -np.log1p(-u)


def _blinks_numpy(c: LifeEventConsts, b: LifeEventBuffers, t: float) -> None:
    nxt = b.next_blink
    due = t >= nxt
    if not due.any():
        return
    busy = t < b.blink_t0 + b.blink_close + b.blink_open
    due &= ~busy & ~(b.in_word & (t - nxt < c.defer_max))
    rows = np.flatnonzero(due)
    if rows.size == 0:
        return
    u = rng.uniforms(b.keys, b.counters, rows, rng.STREAM_BLINK, 5)
    dur = c.duration_min + u[:, 0] * (c.duration_max - c.duration_min)
    b.blink_t0[rows] = t
    b.blink_close[rows] = dur * c.close_fraction
    b.blink_open[rows] = dur * (1.0 - c.close_fraction)
    b.blink_count[rows] += 1
    gap = c.double_gap_min + u[:, 2] * (c.double_gap_max - c.double_gap_min)
    z = rng.normals(u[:, 3], u[:, 4])
    interval = np.clip(
        c.interval_median * np.exp(c.interval_sigma * z), c.interval_min, c.interval_max
    )
    interval = np.maximum(interval, dur + 0.1)
    nxt[rows] = t + np.where(u[:, 1] < c.double_probability, dur + gap, interval)


def _gaze_numpy(c: LifeEventConsts, b: LifeEventBuffers, t: float) -> None:
    rows = np.flatnonzero(t >= b.next_fixation)
    if rows.size:
        u = rng.uniforms(b.keys, b.counters, rows, rng.STREAM_GAZE, 5)
        spread = 1.0 + c.speaking_spread * b.speaking[rows]  # float32
        b.fixation[rows, 0] = rng.normals(u[:, 0], u[:, 1]) * c.spread_yaw * spread
        b.fixation[rows, 1] = rng.normals(u[:, 2], u[:, 3]) * c.spread_pitch * spread
        b.next_fixation[rows] = (
            t + c.fixation_min + _expo(u[:, 4]) * (c.fixation_mean - c.fixation_min)
        )
    rows = np.flatnonzero(t >= b.next_micro)
    if rows.size:
        u = rng.uniforms(b.keys, b.counters, rows, rng.STREAM_MICRO, 5)
        b.micro[rows, 0] = rng.normals(u[:, 0], u[:, 1]) * c.micro_amplitude
        b.micro[rows, 1] = rng.normals(u[:, 2], u[:, 3]) * c.micro_amplitude
        b.next_micro[rows] = t + c.micro_min + _expo(u[:, 4]) * (c.micro_mean - c.micro_min)


def _stress_numpy(c: LifeEventConsts, b: LifeEventBuffers) -> None:
    rows = np.flatnonzero(b.stress > 0.0)
    if rows.size == 0:
        return
    u = rng.uniforms(b.keys, b.counters, rows, rng.STREAM_STRESS, 2)
    strength = np.minimum(b.stress[rows], 1.0)  # float32
    nod = u[:, 0] < c.nod_probability
    b.head_vel[rows[nod], 1] -= c.nod_kick * strength[nod]
    brow = u[:, 1] < c.brow_probability
    b.brow[rows[brow]] = np.maximum(b.brow[rows[brow]], strength[brow])


def life_events_numpy(c: LifeEventConsts, b: LifeEventBuffers, t: float) -> None:
    """The reference event draws of one tick (see the module docstring)."""
    _blinks_numpy(c, b, t)
    _gaze_numpy(c, b, t)
    _stress_numpy(c, b)


def breaths_numpy(c: LifeEventConsts, b: LifeEventBuffers) -> None:
    """The reference breath re-draw for the rows with ``wrapped`` set (module docstring)."""
    rows = np.flatnonzero(b.wrapped)
    if rows.size == 0:
        return
    u = rng.uniforms(b.keys, b.counters, rows, rng.STREAM_BREATH, 1)[:, 0]
    b.breath_cycle[rows] = b.breath_period[rows] * (1.0 + c.cycle_jitter * (2.0 * u - 1.0))


_EventsImpl = Callable[[LifeEventConsts, LifeEventBuffers, float], None]
_BreathsImpl = Callable[[LifeEventConsts, LifeEventBuffers], None]


class _BoundEvents:
    """A numpy or numba pair of entry points with the constants bound (a :class:`LifeEventsFn`)."""

    def __init__(self, consts: LifeEventConsts, events: _EventsImpl, breaths: _BreathsImpl) -> None:
        self._consts = consts
        self._events = events
        self._breaths = breaths

    def __call__(self, state: LifeEventBuffers, t: float, /) -> None:
        self._events(self._consts, state, t)

    def breaths(self, state: LifeEventBuffers, /) -> None:
        self._breaths(self._consts, state)


def make_life_events(consts: LifeEventConsts, backend: BackendName) -> LifeEventsFn:
    """Compile the event draws for one backend; call as ``fn(state, t)``, ``fn.breaths(state)``."""
    if backend == "native":
        plan: LifeEventsFn = require_native().LifeEventsPlan(consts)
        return plan
    if backend == "numba":
        from avatar_engine.kernels import _numba_life_events

        return _BoundEvents(
            consts,
            cast(_EventsImpl, _numba_life_events.life_events_step),
            cast(_BreathsImpl, _numba_life_events.breaths_step),
        )
    return _BoundEvents(consts, life_events_numpy, breaths_numpy)
