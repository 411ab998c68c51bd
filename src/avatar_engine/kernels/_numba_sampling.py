"""numba JIT of the curve-sampling loops; imported only when the numba backend is chosen."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def sample_curves(keys: Any, t: np.ndarray, out: np.ndarray) -> None:
    """``keys``: a CurveKeys (NamedTuple, read by field name)."""
    times, values, counts = keys.times, keys.values, keys.counts
    rows = values.shape[0]
    chans = values.shape[2]
    for s in range(rows):
        n = counts[s]
        if n == 0:
            for c in range(chans):
                out[s, c] = np.float32(0.0)
            continue
        ts = t[s]
        if ts < times[s, 0]:
            for c in range(chans):
                out[s, c] = values[s, 0, c]
            continue
        if ts >= times[s, n - 1]:
            for c in range(chans):
                out[s, c] = values[s, n - 1, c]
            continue
        lo = 0
        hi = n - 1  # invariant: times[lo] <= ts < times[hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if times[s, mid] <= ts:
                lo = mid
            else:
                hi = mid
        w = np.float32((ts - times[s, lo]) / (times[s, lo + 1] - times[s, lo]))
        for c in range(chans):
            a = values[s, lo, c]
            out[s, c] = a + w * (values[s, lo + 1, c] - a)
