"""numba JIT of the smoothing loops; imported only when the numba backend is chosen.

The loops mirror native/include/avatar_engine/filters.hpp line for line (float64 arithmetic,
float32 state), so the numpy reference, numba and C++ agree to float32 rounding.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

_TWO_PI = 2.0 * math.pi


@numba.njit(cache=True, nogil=True)
def one_euro(state: Any, dt: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """``state``: a OneEuroState (NamedTuple, read by field name)."""
    xhat, dxhat, primed, region = state.xhat, state.dxhat, state.primed, state.region
    min_cutoff, beta, d_cutoff = state.min_cutoff, state.beta, state.d_cutoff
    sessions, n = x.shape
    for s in range(sessions):
        step = np.float64(dt[s])
        if not step > 0.0:
            for c in range(n):
                out[s, c] = xhat[s, c]
            continue
        if primed[s] == 0:
            for c in range(n):
                v = x[s, c]
                xhat[s, c] = v
                dxhat[s, c] = 0.0
                out[s, c] = v
            primed[s] = 1
            continue
        rate = 1.0 / step
        for c in range(n):
            r = region[c]
            xi = np.float64(x[s, c])
            prev = np.float64(xhat[s, c])
            dx = (xi - prev) * rate
            rd = _TWO_PI * np.float64(d_cutoff[s, r]) * step
            ad = rd / (rd + 1.0)
            dxh = ad * dx + (1.0 - ad) * np.float64(dxhat[s, c])
            fc = np.float64(min_cutoff[s, r]) + np.float64(beta[s, r]) * abs(dxh)
            ra = _TWO_PI * fc * step
            a = ra / (ra + 1.0)
            y = np.float32(a * xi + (1.0 - a) * prev)
            dxhat[s, c] = np.float32(dxh)
            xhat[s, c] = y
            out[s, c] = y


@numba.njit(cache=True, nogil=True)
def spring_step(state: Any, dt: float, target: np.ndarray) -> None:
    """``state``: a SpringState (NamedTuple, read by field name)."""
    pos, vel, omega = state.pos, state.vel, state.omega
    sessions, n = pos.shape
    for s in range(sessions):
        w = np.float64(omega[s])
        e = math.exp(-w * dt)
        for c in range(n):
            tgt = np.float64(target[s, c])
            y = np.float64(pos[s, c]) - tgt
            j = (np.float64(vel[s, c]) + w * y) * dt
            pos[s, c] = np.float32(tgt + (y + j) * e)
            vel[s, c] = np.float32((np.float64(vel[s, c]) - w * j) * e)
