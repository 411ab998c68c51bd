"""The curve-sampling stage: S sessions, each with its own keyframed timeline, sampled at once.

Speech (text today, recognised audio phones next) produces per-session keyframed curves in a
rig-independent channel space; every tick the engine samples all sessions in one call and
hands the ``(S, C)`` result to the retarget stage.

Buffer layout (a :class:`CurveBank` owns them; rows are sessions)::

    times : (S, K) float64   | s0: t0 t1 ... t(n0-1) <unused> | s1: ... |   ascending per row
    values: (S, K, C) float32  values[s, k, :] is the channel vector at times[s, k]
    counts: (S,) int32         n_s = keys in use in row s (0 <= n_s <= K)

Semantics (the numpy reference; numba and native match it, see the parity tests), for row s
sampled at time ``t[s]`` into ``out[s, :]``:

- ``n_s == 0``: zeros (no speech: neutral);
- ``t <= times[0]``: ``values[0]``; ``t >= times[n_s - 1]``: ``values[n_s - 1]`` (hold);
- otherwise, with ``k`` the largest index such that ``times[k] <= t``:
  ``w = float32((t - times[k]) / (times[k+1] - times[k]))`` (float64 division), then in
  float32 ``out = values[k] + w * (values[k+1] - values[k])``.

Times must be finite; :meth:`CurveSampler.run` rejects a non-finite ``t`` before any write.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from avatar_engine.kernels.backends import BackendName, require_native, resolve_backend
from avatar_engine.types import F32, F64, I32


class CurveKeys(NamedTuple):
    """The keyframe rows a sampler reads (the layout above): the kernel's state struct, read
    by field name in every backend."""

    times: F64
    values: F32
    counts: I32


class SampleKernel(Protocol):
    """One backend's curve sampler: ``(keys, t, out)``, every backend the same."""

    def __call__(self, keys: CurveKeys, t: F64, out: F32, /) -> None: ...


def _check(keys: CurveKeys, t: F64, out: F32) -> None:
    times, values, counts = keys.times, keys.values, keys.counts
    if times.dtype != np.float64 or t.dtype != np.float64:
        raise TypeError("times and t must be float64 arrays")
    if values.dtype != np.float32 or out.dtype != np.float32:
        raise TypeError("values and out must be float32 arrays")
    if counts.dtype != np.int32:
        raise TypeError("counts must be an int32 array")
    if times.ndim != 2 or values.ndim != 3 or values.shape[:2] != times.shape:
        raise ValueError("times must be (S, K) and values (S, K, C)")
    rows, cap, chans = values.shape
    if counts.shape != (rows,) or t.shape != (rows,) or out.shape != (rows, chans):
        raise ValueError(f"counts and t must be ({rows},), out ({rows}, {chans})")
    for name, arr in (("times", times), ("values", values), ("counts", counts), ("t", t)):
        if not arr.flags.c_contiguous:
            raise ValueError(f"{name}: must be C-contiguous")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out: must be a writeable C-contiguous array")
    if rows and (int(counts.min()) < 0 or int(counts.max()) > cap):
        raise ValueError(f"counts must lie in [0, {cap}]")


def numpy_sample(keys: CurveKeys, t: F64, out: F32, /) -> None:
    """The reference: vectorised over sessions (no per-session Python loop)."""
    times, values, counts = keys.times, keys.values, keys.counts
    rows, cap, _ = values.shape
    if rows == 0:
        return
    n = counts.astype(np.int64)
    active = n > 0
    # Unused slots compare as +inf so the search only sees each row's n keys.
    masked = np.where(np.arange(cap)[None, :] < n[:, None], times, np.inf)
    k = (masked <= t[:, None]).sum(axis=1) - 1  # largest k with times[k] <= t (or -1)
    last = np.maximum(n - 1, 0)
    lo = np.clip(k, 0, last)
    hi = np.minimum(lo + 1, last)
    r = np.arange(rows)
    t_lo = times[r, lo]
    t_hi = times[r, hi]
    inside = (k >= 0) & (k < n - 1)
    span = np.where(inside, t_hi - t_lo, 1.0)
    w = np.where(inside, (t - t_lo) / span, 0.0).astype(np.float32)
    v_lo = values[r, lo]
    v_hi = values[r, hi]
    res = v_lo + w[:, None] * (v_hi - v_lo)
    res[~active] = np.float32(0.0)
    out[...] = res


class NumbaSample:
    """The numba twin of the curve sampler."""

    def __init__(self) -> None:
        from avatar_engine.kernels import _numba_sampling

        self._kernel = _numba_sampling.sample_curves

    def __call__(self, keys: CurveKeys, t: F64, out: F32, /) -> None:
        self._kernel(keys, t, out)


def make_sample_kernel(backend: BackendName) -> SampleKernel:
    """The sampler of ``backend`` (the numpy reference unless native or numba is asked for)."""
    if backend == "native":
        core = require_native()
        kernel: SampleKernel = core.sample_curves
        return kernel
    if backend == "numba":
        return NumbaSample()
    return numpy_sample


class CurveSampler:
    """The stage object: validates buffers once per call, then runs the chosen backend."""

    __slots__ = ("_kernel", "backend")

    def __init__(self, backend: str | None = None) -> None:
        self.backend: BackendName = resolve_backend(backend)
        self._kernel = make_sample_kernel(self.backend)

    def run(self, keys: CurveKeys, t: F64, out: F32) -> None:
        """Sample every row's curves at its time ``t[s]`` into ``out``; shapes and dtypes are
        checked, non-finite times refused."""
        _check(keys, t, out)
        if not np.isfinite(t).all():
            raise ValueError("sample times must be finite")
        self._kernel(keys, t, out)


class BankFullError(RuntimeError):
    """A row would need more keyframes than the bank's per-session capacity."""


class CurveBank:
    """Per-session keyframe rows (struct-of-arrays), edited per event, sampled per tick.

    Editing (:meth:`splice`) is per session and event-driven (new words, an interrupt);
    sampling (:meth:`sample`) covers every row in one kernel call. Memory is fixed at
    construction: ``sessions * capacity * (8 + 4 * channels)`` bytes.
    """

    __slots__ = ("_sampler", "capacity", "channels", "counts", "times", "values")

    def __init__(
        self, sessions: int, channels: int, *, capacity: int = 512, backend: str | None = None
    ) -> None:
        if sessions < 0 or channels < 1 or capacity < 2:
            raise ValueError("need sessions >= 0, channels >= 1 and capacity >= 2")
        self.capacity = capacity
        self.channels = channels
        self.times: F64 = np.zeros((sessions, capacity), dtype=np.float64)
        self.values: F32 = np.zeros((sessions, capacity, channels), dtype=np.float32)
        self.counts: I32 = np.zeros(sessions, dtype=np.int32)
        self._sampler = CurveSampler(backend)

    @property
    def sessions(self) -> int:
        """Rows allocated (grow with :meth:`grow`)."""
        return int(self.counts.shape[0])

    @property
    def backend(self) -> BackendName:
        """The sampling backend in use."""
        return self._sampler.backend

    def clear(self, row: int) -> None:
        """Forget row ``row``'s keys: it samples as zeros (no speech) from now on."""
        self.counts[row] = 0

    def grow(self, sessions: int) -> None:
        """Reallocate for ``sessions`` rows, keeping every existing row's keys."""
        if sessions <= self.sessions:
            return
        times = np.zeros((sessions, self.capacity), dtype=np.float64)
        values = np.zeros((sessions, self.capacity, self.channels), dtype=np.float32)
        counts = np.zeros(sessions, dtype=np.int32)
        n = self.sessions
        times[:n], values[:n], counts[:n] = self.times, self.values, self.counts
        self.times, self.values, self.counts = times, values, counts

    def keys(self, row: int) -> tuple[F64, F32]:
        """Copies of a row's keyframes (for tests and offline export)."""
        n = int(self.counts[row])
        return self.times[row, :n].copy(), self.values[row, :n].copy()

    def splice(self, row: int, times: F64, values: F32, *, keep_after: float | None = None) -> None:
        """Replace row ``row``'s keys from ``times[0]`` on with the given ones.

        Keys before ``times[0]`` are kept (the past a sampler may still be between), except
        those older than ``keep_after`` (the caller's "now"): of those only the last stays, as
        the left end of the interval being sampled. Raises :class:`BankFullError` (row left
        unchanged) when the result exceeds the capacity.
        """
        times = np.ascontiguousarray(times, dtype=np.float64)
        values = np.ascontiguousarray(values, dtype=np.float32)
        if times.ndim != 1 or values.shape != (times.shape[0], self.channels):
            raise ValueError(f"expected times (N,) and values (N, {self.channels})")
        if times.shape[0] and not (np.all(np.isfinite(times)) and np.all(np.diff(times) >= 0)):
            raise ValueError("key times must be finite and ascending")
        n = int(self.counts[row])
        old_t = self.times[row, :n]
        start = float(times[0]) if times.shape[0] else np.inf
        keep_end = int(np.searchsorted(old_t, start, side="left"))
        keep_start = 0
        if keep_after is not None and keep_end:
            keep_start = max(0, int(np.searchsorted(old_t[:keep_end], keep_after, "right")) - 1)
        kept = keep_end - keep_start
        total = kept + times.shape[0]
        if total > self.capacity:
            raise BankFullError(f"row {row}: {total} keys exceed the capacity {self.capacity}")
        if keep_start:
            self.times[row, :kept] = self.times[row, keep_start:keep_end]
            self.values[row, :kept] = self.values[row, keep_start:keep_end]
        self.times[row, kept:total] = times
        self.values[row, kept:total] = values
        self.counts[row] = total

    def end_time(self, row: int) -> float:
        """Time of the row's last key (``-inf`` when it has none): when its curves reach their final
        value."""
        n = int(self.counts[row])
        return float(self.times[row, n - 1]) if n else -np.inf

    def sample_row(self, row: int, t: float) -> F32:
        """One row at one time (event-driven edits; the tick path uses :meth:`sample`)."""
        out = np.empty((1, self.channels), dtype=np.float32)
        sl = slice(row, row + 1)
        numpy_sample(
            CurveKeys(self.times[sl], self.values[sl], self.counts[sl]), np.array([t]), out
        )
        row_values: F32 = out[0]
        return row_values

    def sample(self, t: F64, out: F32) -> None:
        """Sample every row at its own time ``t[s]`` into ``out`` (S, C)."""
        self._sampler.run(CurveKeys(self.times, self.values, self.counts), t, out)
