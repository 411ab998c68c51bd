"""Smoothing quality measures used by the tests, the benchmarks and docs/expression.md.

Pure functions on ``(T, N)`` arrays (time on axis 0), so a measurement is reproducible from
the data alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_engine.kernels.backends import BackendName
from avatar_engine.kernels.filters import OneEuroState, one_euro_kernel
from avatar_engine.types import F32, F64


def jitter(x: npt.ArrayLike) -> float:
    """Mean absolute second difference over time and columns (units per frame squared)."""
    a = np.asarray(x, np.float64)
    return float(np.mean(np.abs(a[2:] - 2.0 * a[1:-1] + a[:-2])))


def fast_mask(clean: npt.ArrayLike, quantile: float = 0.9) -> npt.NDArray[np.bool_]:
    """Frames of fast motion: per column, |velocity| above that column's ``quantile``.

    Columns that hardly move (range < 0.05) are left out, so still shapes do not count as
    "fast" on their tiny wobbles.
    """
    c = np.asarray(clean, np.float64)
    v: F64 = np.abs(np.gradient(c, axis=0))
    moving = (c.max(axis=0) - c.min(axis=0)) >= 0.05
    thresh: F64 = np.quantile(v, quantile, axis=0)
    mask: npt.NDArray[np.bool_] = (v > thresh[None, :]) & moving[None, :]
    return mask


def lag_frames(output: npt.ArrayLike, clean: npt.ArrayLike, mask: npt.ArrayLike,
               max_shift: int = 8) -> float:  # fmt: skip
    """Delay of ``output`` behind ``clean`` on the masked frames, in frames (sub-frame).

    For each integer shift ``k`` the mean absolute error between ``output[t]`` and
    ``clean[t - k]`` over the masked frames is computed; the minimum is refined with a
    parabola through its neighbours.
    """
    y = np.asarray(output, np.float64)
    c = np.asarray(clean, np.float64)
    m = np.asarray(mask, np.bool_)
    errs = []
    for k in range(max_shift + 1):
        sel = m[max_shift:]
        diff = np.abs(y[max_shift:] - c[max_shift - k : len(c) - k])
        errs.append(float(diff[sel].mean()))
    k = int(np.argmin(errs))
    if 0 < k < max_shift:
        denom = errs[k - 1] - 2.0 * errs[k] + errs[k + 1]
        if denom > 0:
            return k + 0.5 * (errs[k - 1] - errs[k + 1]) / denom
    return float(k)


@dataclass(frozen=True, slots=True)
class SmoothingReport:
    """Jitter and lag of a clean, a noisy and a filtered take (see :func:`smoothing_report`)."""

    noise_sigma: float
    jitter_clean: float
    jitter_noisy: float
    jitter_filtered: float
    lag_noisy: float
    lag_filtered: float

    @property
    def jitter_cut(self) -> float:
        """How many times less jitter the filter leaves than the noisy input had."""
        return self.jitter_noisy / self.jitter_filtered


def one_euro_offline(
    x: npt.ArrayLike,
    fps: float,
    *,
    min_cutoff: float,
    beta: float,
    d_cutoff: float,
    backend: BackendName = "numpy",
) -> F32:
    """Run the batched One Euro kernel over a ``(T, N)`` signal, one column per "session".

    Columns are laid out as sessions so a whole take filters in ``T`` kernel calls.
    """
    a = np.ascontiguousarray(np.asarray(x, np.float32).T)  # (N, T): columns as sessions
    n, frames = a.shape
    fn = one_euro_kernel(backend)
    state = OneEuroState(
        region=np.zeros(1, np.int8),
        xhat=np.zeros((n, 1), np.float32),
        dxhat=np.zeros((n, 1), np.float32),
        primed=np.zeros(n, np.uint8),
        min_cutoff=np.full((n, 1), min_cutoff, np.float32),
        beta=np.full((n, 1), beta, np.float32),
        d_cutoff=np.full((n, 1), d_cutoff, np.float32),
    )
    dt = np.full(n, 1.0 / fps, np.float32)
    out = np.empty((frames, n), np.float32)
    col = np.empty((n, 1), np.float32)
    for i in range(frames):
        fn(state, dt, np.ascontiguousarray(a[:, i : i + 1]), col)
        out[i] = col[:, 0]
    return out


def smoothing_report(
    clean: npt.ArrayLike,
    fps: float,
    *,
    noise_sigma: float,
    seed: int,
    min_cutoff: float,
    beta: float,
    d_cutoff: float,
    backend: BackendName = "numpy",
) -> SmoothingReport:
    """Add Gaussian noise to a clean take, One-Euro filter it, and measure jitter and lag."""
    c = np.asarray(clean, np.float64)
    noisy = c + np.random.default_rng(seed).normal(0.0, noise_sigma, c.shape)
    filtered = one_euro_offline(noisy, fps, min_cutoff=min_cutoff, beta=beta,
                                d_cutoff=d_cutoff, backend=backend)  # fmt: skip
    mask = fast_mask(c)
    return SmoothingReport(
        noise_sigma=noise_sigma,
        jitter_clean=jitter(c),
        jitter_noisy=jitter(noisy),
        jitter_filtered=jitter(filtered),
        lag_noisy=lag_frames(noisy, c, mask),
        lag_filtered=lag_frames(filtered, c, mask),
    )
