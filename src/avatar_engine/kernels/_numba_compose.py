"""numba JIT of the compositor loops; imported only when the numba backend is chosen.

Mirrors native/include/avatar_engine/compose.hpp: float64 accumulation over the layers,
float32 constraints, so the backends agree with the numpy reference to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def compose(tables: Any, state: Any, dt: float, inputs: Any, out: np.ndarray) -> None:
    """``tables``: ComposeTables (vcol an array), ``state``: ComposeState, ``inputs``:
    ComposeInputs; NamedTuples read by field name."""
    layers, weight, mode = inputs.layers, inputs.weight, inputs.mode
    emask, couple, vmax = inputs.emask, inputs.couple, inputs.vmax
    prev, primed = state.prev, state.primed
    region, lower, upper = tables.region, tables.lower, tables.upper
    exclusive, pairs, vcol = tables.exclusive, tables.couple, tables.vcol
    n_layers = layers.shape[0]
    sessions, n = out.shape
    acc = np.zeros(n, np.float64)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    half = np.float32(0.5)
    for s in range(sessions):
        acc[:] = 0.0
        for ly in range(n_layers):
            m = mode[s, ly]
            last = ly == n_layers - 1
            skip = True
            for r in range(weight.shape[2]):
                if weight[s, ly, r] != 0.0:
                    skip = False
            if last and not skip:
                skip = True
                for c in range(n):
                    if emask[s, c] != 0.0:
                        skip = False
                        break
            if skip:
                continue
            for c in range(n):
                w = np.float64(weight[s, ly, region[c]])
                if last:
                    w *= np.float64(emask[s, c])
                if w == 0.0:
                    continue
                x = np.float64(layers[ly, s, c])
                a = acc[c]
                if m == 0:
                    acc[c] = a + w * (x - a)
                elif m == 1:
                    acc[c] = a + w * x
                elif m == 2:
                    acc[c] = a + w * (max(a, x) - a)
                else:
                    acc[c] = a * (1.0 + w * (x - 1.0))
        for c in range(n):
            out[s, c] = np.float32(acc[c])
        k = couple[s]
        if k != 0:
            for p in range(pairs.shape[0]):
                ia = pairs[p, 0]
                ib = pairs[p, 1]
                left = out[s, ia]
                right = out[s, ib]
                mid = (left + right) * half
                out[s, ia] = left + k * (mid - left)
                out[s, ib] = right + k * (mid - right)
        for c in range(n):
            v = out[s, c]
            lo = lower[c]
            hi = upper[c]
            v = lo if v < lo else v
            v = hi if v > hi else v
            out[s, c] = v
        for p in range(exclusive.shape[0]):
            keep = one - out[s, exclusive[p, 0]]
            keep = zero if keep < zero else (one if keep > one else keep)
            out[s, exclusive[p, 1]] = out[s, exclusive[p, 1]] * keep
        if primed[s] != 0:
            for c in range(n):
                vr = vmax[s, region[c]]
                v = vcol[c] if vcol[c] < vr else vr
                step = np.float32(np.float64(v) * dt)
                lo = prev[s, c] - step
                hi = prev[s, c] + step
                v = out[s, c]
                v = lo if v < lo else v
                v = hi if v > hi else v
                out[s, c] = v
        for c in range(n):
            prev[s, c] = out[s, c]
        primed[s] = 1


@numba.njit(cache=True, nogil=True)
def scatter_map(tables: Any, x: np.ndarray, out: np.ndarray) -> None:
    """``tables``: a ScatterTables (NamedTuple, read by field name)."""
    rows, cols, weights = tables.rows, tables.cols, tables.weights
    sessions = out.shape[0]
    for s in range(sessions):
        out[s, :] = 0.0
        any_input = False
        for j in range(x.shape[1]):
            if x[s, j] != 0.0:
                any_input = True
                break
        if not any_input:
            continue
        for k in range(weights.shape[0]):
            out[s, rows[k]] += weights[k] * x[s, cols[k]]
