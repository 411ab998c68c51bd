"""numba JIT of the retarget loops; imported only when the numba backend is chosen."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def retarget(tables: Any, weights: np.ndarray, out: np.ndarray) -> int:
    """``tables``: a RetargetArrays (NamedTuple, read by field name)."""
    indptr, indices, mapw = tables.indptr, tables.indices, tables.weights
    gain, offset, lower, upper = tables.gain, tables.offset, tables.lower, tables.upper
    exclusive = tables.exclusive
    sessions, n_in = weights.shape
    for s in range(sessions):
        for j in range(n_in):
            if not np.isfinite(weights[s, j]):
                return int(s * n_in + j)
    n_out = out.shape[1]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for s in range(sessions):
        for m in range(n_out):
            acc = 0.0
            for k in range(indptr[m], indptr[m + 1]):
                acc += np.float64(mapw[k]) * np.float64(weights[s, indices[k]])
            y = acc * np.float64(gain[m]) + np.float64(offset[m])
            lo = np.float64(lower[m])
            hi = np.float64(upper[m])
            y = lo if y < lo else (hi if y > hi else y)
            out[s, m] = np.float32(y)
        for p in range(exclusive.shape[0]):
            keep = one - out[s, exclusive[p, 0]]
            keep = zero if keep < zero else (one if keep > one else keep)
            out[s, exclusive[p, 1]] = out[s, exclusive[p, 1]] * keep
    return -1
