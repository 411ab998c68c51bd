"""numba JIT of the procedural-life event draws; imported only when the numba backend is chosen.

Mirrors the numpy reference in life_events.py (and LifeEventsPlan in
native/src/register_life.cpp): one loop over the rows in ascending order, the counter-based
splitmix64 draws of avatar_engine.kernels.rng in uint64 (wrapping), float64 arithmetic and
float32 where the reference computes in float32.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from avatar_engine.kernels import rng

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV_2_53 = 1.0 / float(1 << 53)
_TWO_PI = 2.0 * math.pi
_BLINK = rng.STREAM_BLINK
_GAZE = rng.STREAM_GAZE
_MICRO = rng.STREAM_MICRO
_STRESS = rng.STREAM_STRESS
_BREATH = rng.STREAM_BREATH


@numba.njit(cache=True, nogil=True, inline="always")
def _draw(keys: np.ndarray, counters: np.ndarray, r: int, s: int, j: int) -> float:
    """Uniform ``j`` past the counter of row ``r``'s stream ``s`` (the counter is not moved)."""
    z = keys[r, s] + (counters[r, s] + np.uint64(j)) * _GAMMA
    z = z + _GAMMA
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return np.float64(z >> _S11) * _INV_2_53


@numba.njit(cache=True, nogil=True, inline="always")
def _draw5(keys: np.ndarray, counters: np.ndarray, r: int, s: int) -> tuple[float, ...]:
    """The next five uniforms of row ``r``'s stream ``s``; its counter moves past them."""
    u = (
        _draw(keys, counters, r, s, 0),
        _draw(keys, counters, r, s, 1),
        _draw(keys, counters, r, s, 2),
        _draw(keys, counters, r, s, 3),
        _draw(keys, counters, r, s, 4),
    )
    counters[r, s] += np.uint64(5)
    return u


@numba.njit(cache=True, nogil=True, inline="always")
def _normal(u1: float, u2: float) -> float:
    return math.sqrt(-2.0 * math.log1p(-u1)) * math.cos(_TWO_PI * u2)


@numba.njit(cache=True, nogil=True)
def life_events_step(c: Any, b: Any, t: float) -> None:
    """``c``: a LifeEventConsts, ``b``: a LifeEventBuffers (both NamedTuples, read by name)."""
    n = b.next_blink.shape[0]
    keys = b.keys
    cnt = b.counters
    kick = np.float32(c.nod_kick)
    sp_spread = np.float32(c.speaking_spread)
    one = np.float32(1.0)
    for r in range(n):
        # blink
        nxt = b.next_blink[r]
        if t >= nxt:
            busy = t < b.blink_t0[r] + b.blink_close[r] + b.blink_open[r]
            deferred = b.in_word[r] and (t - nxt < c.defer_max)
            if not busy and not deferred:
                u0, u1, u2, u3, u4 = _draw5(keys, cnt, r, _BLINK)
                dur = c.duration_min + u0 * (c.duration_max - c.duration_min)
                b.blink_t0[r] = t
                b.blink_close[r] = dur * c.close_fraction
                b.blink_open[r] = dur * (1.0 - c.close_fraction)
                b.blink_count[r] += 1
                if u1 < c.double_probability:
                    gap = c.double_gap_min + u2 * (c.double_gap_max - c.double_gap_min)
                    b.next_blink[r] = t + (dur + gap)
                else:
                    z = _normal(u3, u4)
                    iv = c.interval_median * math.exp(c.interval_sigma * z)
                    iv = min(max(iv, c.interval_min), c.interval_max)
                    iv = max(iv, dur + 0.1)
                    b.next_blink[r] = t + iv
        # fixation
        if t >= b.next_fixation[r]:
            u0, u1, u2, u3, u4 = _draw5(keys, cnt, r, _GAZE)
            spread = np.float64(one + sp_spread * b.speaking[r])
            b.fixation[r, 0] = np.float32(_normal(u0, u1) * c.spread_yaw * spread)
            b.fixation[r, 1] = np.float32(_normal(u2, u3) * c.spread_pitch * spread)
            e = -math.log1p(-u4)
            b.next_fixation[r] = t + c.fixation_min + e * (c.fixation_mean - c.fixation_min)
        # micro-saccade
        if t >= b.next_micro[r]:
            u0, u1, u2, u3, u4 = _draw5(keys, cnt, r, _MICRO)
            b.micro[r, 0] = np.float32(_normal(u0, u1) * c.micro_amplitude)
            b.micro[r, 1] = np.float32(_normal(u2, u3) * c.micro_amplitude)
            e = -math.log1p(-u4)
            b.next_micro[r] = t + c.micro_min + e * (c.micro_mean - c.micro_min)
        # stress beat
        st = b.stress[r]
        if st > 0.0:
            u0 = _draw(keys, cnt, r, _STRESS, 0)
            u1 = _draw(keys, cnt, r, _STRESS, 1)
            cnt[r, _STRESS] += np.uint64(2)
            s = min(st, one)
            if u0 < c.nod_probability:
                b.head_vel[r, 1] = b.head_vel[r, 1] - kick * s
            if u1 < c.brow_probability:
                b.brow[r] = max(b.brow[r], s)


@numba.njit(cache=True, nogil=True)
def breaths_step(c: Any, b: Any) -> None:
    """The breath re-draw for the rows with ``wrapped`` set (see life_events.py)."""
    n = b.wrapped.shape[0]
    for r in range(n):
        if b.wrapped[r]:
            u = _draw(b.keys, b.counters, r, _BREATH, 0)
            b.counters[r, _BREATH] += np.uint64(1)
            b.breath_cycle[r] = b.breath_period[r] * (1.0 + c.cycle_jitter * (2.0 * u - 1.0))
