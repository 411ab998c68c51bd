"""numba JIT of the procedural-life tick; imported only when the numba backend is chosen.

Mirrors native/include/avatar_engine/life.hpp (and the numpy reference in life.py): float64
arithmetic, float32 where the reference stores or computes in float32.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

_PI = math.pi
_TWO_PI = 2.0 * math.pi


@numba.njit(cache=True, nogil=True, inline="always")
def _spring(
    pos: np.ndarray, vel: np.ndarray, goal: np.ndarray, s: int, w: float, dt: float
) -> None:
    e = math.exp(-w * dt)
    for c in range(pos.shape[1]):
        tgt = np.float64(goal[s, c])
        y = np.float64(pos[s, c]) - tgt
        j = (np.float64(vel[s, c]) + w * y) * dt
        pos[s, c] = np.float32(tgt + (y + j) * e)
        vel[s, c] = np.float32((np.float64(vel[s, c]) - w * j) * e)


@numba.njit(cache=True, nogil=True)
def life_step(c: Any, b: Any, t: float, dt: float) -> None:
    """``c``: a LifeConsts, ``b``: a LifeBuffers (both NamedTuples, read by field name)."""
    n = b.blink_t0.shape[0]
    fi = c.inhale_fraction
    decay = math.exp(-dt / c.brow_decay)
    k = np.float32(1.0 / c.eye_morph_range)
    zero = np.float32(0.0)
    amps = (c.amp_yaw, c.amp_pitch, c.amp_roll)
    for s in range(n):
        # lid
        el = t - b.blink_t0[s]
        cl = b.blink_close[s]
        op = b.blink_open[s]
        v = 0.0
        if el >= 0.0 and el < cl + op:
            if el < cl:
                v = 0.5 - 0.5 * math.cos(_PI * (el / cl))
            else:
                v = 0.5 + 0.5 * math.cos(_PI * ((el - cl) / op))
            v = v * c.blink_amplitude
        b.blink_value[s] = np.float32(v)
        # breath
        ph = b.breath_phase[s] + dt / b.breath_cycle[s]
        if ph >= 1.0:
            ph = ph - math.floor(ph)
            b.wrapped[s] = 1
        else:
            b.wrapped[s] = 0
        b.breath_phase[s] = ph
        if ph < fi:
            br = 0.5 - 0.5 * math.cos(_PI * (ph / fi))
        else:
            br = 0.5 + 0.5 * math.cos(_PI * ((ph - fi) / (1.0 - fi)))
        sp = np.float64(b.speaking[s])
        br = br * (1.0 - (1.0 - c.breath_speaking_scale) * sp)
        b.breath[s] = np.float32(br)
        # gaze
        th = b.thinking[s]
        aim0 = b.look[s, 0] + b.fixation[s, 0] + th * b.avert[s, 0]
        aim1 = b.look[s, 1] + b.fixation[s, 1] + th * b.avert[s, 1]
        b.gaze_goal[s, 0] = aim0 + b.micro[s, 0]
        b.gaze_goal[s, 1] = aim1 + b.micro[s, 1]
        _spring(b.gaze, b.gaze_vel, b.gaze_goal, s, np.float64(b.gaze_omega[s]), dt)
        # head
        gain = 1.0 + c.speaking_gain * sp
        for a in range(3):
            w0 = math.sin(_TWO_PI * b.head_freq[s, 2 * a] * t + b.head_phase[s, 2 * a])
            w1 = math.sin(_TWO_PI * b.head_freq[s, 2 * a + 1] * t + b.head_phase[s, 2 * a + 1])
            idle = (0.6 * w0 + 0.4 * w1) * amps[a]
            idle = idle * gain
            if a == 0:
                idle += c.follow * np.float64(aim0)
            elif a == 1:
                idle += c.follow * np.float64(aim1)
                idle += c.breath_head_pitch * br
            b.head_goal[s, a] = np.float32(idle)
        _spring(b.head, b.head_vel, b.head_goal, s, np.float64(b.head_omega[s]), dt)
        b.brow[s] = np.float32(np.float64(b.brow[s]) * decay)
        # outputs
        e0 = b.gaze[s, 0] - b.head[s, 0]
        e1 = b.gaze[s, 1] - b.head[s, 1]
        b.channels[s, 0] = b.head[s, 0]
        b.channels[s, 1] = b.head[s, 1]
        b.channels[s, 2] = b.head[s, 2]
        b.channels[s, 3] = e0
        b.channels[s, 4] = e1
        b.channels[s, 5] = zero
        b.channels[s, 6] = e0
        b.channels[s, 7] = e1
        b.channels[s, 8] = zero
        b.features[s, 0] = b.blink_value[s]
        b.features[s, 1] = max(e0 * k, zero)
        b.features[s, 2] = max(e1 * k, zero)
        b.features[s, 3] = max(e0 * -k, zero)
        b.features[s, 4] = max(e1 * -k, zero)
        b.features[s, 5] = b.brow[s]
        b.features[s, 6] = b.breath[s]
