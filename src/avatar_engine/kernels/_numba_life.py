"""numba JIT of the procedural-life tick; imported only when the numba backend is chosen.

Mirrors native/include/avatar_engine/life.hpp (and the numpy reference in life.py): float64
arithmetic, float32 where the reference stores or computes in float32.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_PI = math.pi
_TWO_PI = 2.0 * math.pi


@numba.njit(cache=True, nogil=True, inline="always")
def _spring(pos: np.ndarray, vel: np.ndarray, goal: np.ndarray, s: int, w: float,
            dt: float) -> None:  # fmt: skip
    e = math.exp(-w * dt)
    for c in range(pos.shape[1]):
        tgt = np.float64(goal[s, c])
        y = np.float64(pos[s, c]) - tgt
        j = (np.float64(vel[s, c]) + w * y) * dt
        pos[s, c] = np.float32(tgt + (y + j) * e)
        vel[s, c] = np.float32((np.float64(vel[s, c]) - w * j) * e)


@numba.njit(cache=True, nogil=True)
def life_step(
    blink_amplitude: float, inhale_fraction: float, breath_speaking_scale: float,
    breath_head_pitch: float, amp_yaw: float, amp_pitch: float, amp_roll: float,
    speaking_gain: float, follow: float, brow_decay: float, eye_morph_range: float,
    t: float, dt: float,
    blink_t0: np.ndarray, blink_close: np.ndarray, blink_open: np.ndarray,
    blink_value: np.ndarray, breath_phase: np.ndarray, breath_cycle: np.ndarray,
    breath: np.ndarray, wrapped: np.ndarray, speaking: np.ndarray, thinking: np.ndarray,
    look: np.ndarray, fixation: np.ndarray, micro: np.ndarray, avert: np.ndarray,
    gaze_goal: np.ndarray, gaze: np.ndarray, gaze_vel: np.ndarray, gaze_omega: np.ndarray,
    head_freq: np.ndarray, head_phase: np.ndarray, head_goal: np.ndarray, head: np.ndarray,
    head_vel: np.ndarray, head_omega: np.ndarray, brow: np.ndarray, channels: np.ndarray,
    features: np.ndarray,
) -> None:  # fmt: skip
    n = blink_t0.shape[0]
    fi = inhale_fraction
    decay = math.exp(-dt / brow_decay)
    k = np.float32(1.0 / eye_morph_range)
    zero = np.float32(0.0)
    amps = (amp_yaw, amp_pitch, amp_roll)
    for s in range(n):
        # lid
        el = t - blink_t0[s]
        cl = blink_close[s]
        op = blink_open[s]
        v = 0.0
        if el >= 0.0 and el < cl + op:
            if el < cl:
                v = 0.5 - 0.5 * math.cos(_PI * (el / cl))
            else:
                v = 0.5 + 0.5 * math.cos(_PI * ((el - cl) / op))
            v = v * blink_amplitude
        blink_value[s] = np.float32(v)
        # breath
        ph = breath_phase[s] + dt / breath_cycle[s]
        if ph >= 1.0:
            ph = ph - math.floor(ph)
            wrapped[s] = 1
        else:
            wrapped[s] = 0
        breath_phase[s] = ph
        if ph < fi:
            br = 0.5 - 0.5 * math.cos(_PI * (ph / fi))
        else:
            br = 0.5 + 0.5 * math.cos(_PI * ((ph - fi) / (1.0 - fi)))
        sp = np.float64(speaking[s])
        br = br * (1.0 - (1.0 - breath_speaking_scale) * sp)
        breath[s] = np.float32(br)
        # gaze
        th = thinking[s]
        aim0 = look[s, 0] + fixation[s, 0] + th * avert[s, 0]
        aim1 = look[s, 1] + fixation[s, 1] + th * avert[s, 1]
        gaze_goal[s, 0] = aim0 + micro[s, 0]
        gaze_goal[s, 1] = aim1 + micro[s, 1]
        _spring(gaze, gaze_vel, gaze_goal, s, np.float64(gaze_omega[s]), dt)
        # head
        gain = 1.0 + speaking_gain * sp
        for a in range(3):
            w0 = math.sin(_TWO_PI * head_freq[s, 2 * a] * t + head_phase[s, 2 * a])
            w1 = math.sin(_TWO_PI * head_freq[s, 2 * a + 1] * t + head_phase[s, 2 * a + 1])
            idle = (0.6 * w0 + 0.4 * w1) * amps[a]
            idle = idle * gain
            if a == 0:
                idle += follow * np.float64(aim0)
            elif a == 1:
                idle += follow * np.float64(aim1)
                idle += breath_head_pitch * br
            head_goal[s, a] = np.float32(idle)
        _spring(head, head_vel, head_goal, s, np.float64(head_omega[s]), dt)
        brow[s] = np.float32(np.float64(brow[s]) * decay)
        # outputs
        e0 = gaze[s, 0] - head[s, 0]
        e1 = gaze[s, 1] - head[s, 1]
        channels[s, 0] = head[s, 0]
        channels[s, 1] = head[s, 1]
        channels[s, 2] = head[s, 2]
        channels[s, 3] = e0
        channels[s, 4] = e1
        channels[s, 5] = zero
        channels[s, 6] = e0
        channels[s, 7] = e1
        channels[s, 8] = zero
        features[s, 0] = blink_value[s]
        features[s, 1] = max(e0 * k, zero)
        features[s, 2] = max(e1 * k, zero)
        features[s, 3] = max(e0 * -k, zero)
        features[s, 4] = max(e1 * -k, zero)
        features[s, 5] = brow[s]
        features[s, 6] = breath[s]
