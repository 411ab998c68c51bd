"""Smoothing stages: the One Euro filter and a critically damped spring, batched over sessions.

Semantics (the numpy reference below; numba and native match it, see the parity tests):

**One Euro** (Casiez, Roussel & Vogel, CHI 2012), per element, in float64, state kept as
float32 in caller-owned ``(S, N)`` arrays. With ``alpha(fc, dt) = r / (r + 1)``,
``r = 2*pi*fc*dt`` (the paper's ``1 / (1 + tau/Te)`` with ``tau = 1/(2*pi*fc)``)::

    dx    = (x - xhat) * (1 / dt)                            # reciprocal once per row
    dxhat = alpha(d_cutoff) * dx + (1 - alpha(d_cutoff)) * dxhat
    fc    = min_cutoff + beta * |dxhat|
    xhat  = alpha(fc) * x + (1 - alpha(fc)) * xhat          # the output

Parameters are per session and per face region (``(S, R)`` tables indexed through a per-column
region code), because eyelids need a faster filter than brows. ``dt`` is per session: a row
with ``dt <= 0`` got no new sample this tick and outputs its held estimate unchanged; a row
not yet primed starts at its input (no ramp from zero).

**Critically damped spring** toward a target, integrated exactly over ``dt`` so it is stable
at any tick length and never overshoots from rest::

    y = pos - target;  j = (vel + omega*y) * dt;  e = exp(-omega*dt)
    pos = target + (y + j) * e;   vel = (vel - omega*j) * e

It settles to within 2 % of a step in ``5.83 / omega`` seconds (``settle_omega`` converts).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from avatar_engine.kernels.backends import BackendName, require_native, resolve_backend
from avatar_engine.rows import BlockField, RowTable, table_of
from avatar_engine.types import F32, F64, I8, U8

SETTLE_2PCT = 5.8335
"""``omega * t`` at which a critically damped step response is within 2 % of its target."""


def settle_omega(seconds: float) -> float:
    """Spring rate that settles a step to within 2 % in ``seconds``."""
    return SETTLE_2PCT / max(float(seconds), 1e-6)


class OneEuroState(NamedTuple):
    """A One Euro filter's state struct: per-session rows (the first ``S`` of each) and the
    column regions. Every backend reads it by field name."""

    region: I8
    """``(N,)`` region code per column."""
    xhat: F32
    """``(S, N)`` the filtered estimate."""
    dxhat: F32
    """``(S, N)`` the filtered derivative."""
    primed: U8
    """``(S,)`` 1 once a row has had its first sample."""
    min_cutoff: F32
    """``(S, R)`` Hz."""
    beta: F32
    """``(S, R)`` 1/unit."""
    d_cutoff: F32
    """``(S, R)`` Hz."""


class OneEuroFn(Protocol):
    """One backend's One Euro call: ``(state, dt, x, out)`` with a dt per row (capture arrives
    unevenly)."""

    def __call__(self, state: OneEuroState, dt: F32, x: F32, out: F32, /) -> None: ...


class SpringState(NamedTuple):
    """Springs of ``S`` rows x ``N`` columns, advanced in place; read by field name."""

    pos: F32
    """``(S, N)``"""
    vel: F32
    """``(S, N)``"""
    omega: F32
    """``(S,)`` rate per row (1/s; :func:`settle_omega`)."""


class SpringFn(Protocol):
    """One backend's spring step: ``(state, dt, target)``, advancing the state in place."""

    def __call__(self, state: SpringState, dt: float, target: F32, /) -> None: ...


def _alpha(cutoff: F64, dt: F64) -> F64:
    r = (2.0 * math.pi) * cutoff * dt
    return r / (r + 1.0)


def one_euro_numpy(state: OneEuroState, dt: F32, x: F32, out: F32, /) -> None:
    """The reference One Euro step (see the module docstring); ``out`` may alias ``x``."""
    xhat, dxhat, primed, region = state.xhat, state.dxhat, state.primed, state.region
    min_cutoff, beta, d_cutoff = state.min_cutoff, state.beta, state.d_cutoff
    step = dt.astype(np.float64)
    live = step > 0.0
    fresh = live & (primed == 0)
    run = live & (primed != 0)
    hold = ~live
    if hold.any():
        out[hold] = xhat[hold]
    if fresh.any():
        xf = x[fresh].copy()
        xhat[fresh] = xf
        dxhat[fresh] = 0.0
        out[fresh] = xf
        primed[fresh] = 1
    if run.any():
        rows = np.flatnonzero(run)
        h = step[rows][:, None]
        xi = x[rows].astype(np.float64)
        prev = xhat[rows].astype(np.float64)
        reg = region.astype(np.intp)
        dx = (xi - prev) * (1.0 / h)
        ad = _alpha(d_cutoff[rows][:, reg].astype(np.float64), h)
        dxh = ad * dx + (1.0 - ad) * dxhat[rows].astype(np.float64)
        fc = min_cutoff[rows][:, reg].astype(np.float64) + beta[rows][:, reg].astype(
            np.float64
        ) * np.abs(dxh)
        a = _alpha(fc, h)
        y = (a * xi + (1.0 - a) * prev).astype(np.float32)
        dxhat[rows] = dxh.astype(np.float32)
        xhat[rows] = y
        out[rows] = y


def spring_numpy(state: SpringState, dt: float, target: F32, /) -> None:
    """The reference spring step (see the module docstring), in place on ``pos`` and ``vel``."""
    pos, vel = state.pos, state.vel
    w = state.omega.astype(np.float64)[:, None]
    e = np.exp(-w * dt)
    tgt = target.astype(np.float64)
    y = pos.astype(np.float64) - tgt
    v = vel.astype(np.float64)
    j = (v + w * y) * dt
    pos[...] = tgt + (y + j) * e
    vel[...] = (v - w * j) * e


def _compiled(backend: BackendName, name: str) -> Any:
    """Kernel ``name`` from the native module or the numba module (both use the same names)."""
    if backend == "native":
        return getattr(require_native(), name)
    from avatar_engine.kernels import _numba_filters

    return getattr(_numba_filters, name)


def one_euro_kernel(backend: BackendName) -> OneEuroFn:
    """The One Euro step compiled for one backend."""
    if backend == "numpy":
        return one_euro_numpy
    fn: OneEuroFn = _compiled(backend, "one_euro")
    return fn


def spring_kernel(backend: BackendName) -> SpringFn:
    """The spring step compiled for one backend."""
    if backend == "numpy":
        return spring_numpy
    fn: SpringFn = _compiled(backend, "spring_step")
    return fn


class OneEuroFilter:
    """One Euro filters for a table's rows x ``n`` columns, state in blocks of that table.

    ``rows`` is the :class:`~avatar_engine.rows.RowTable` the state lives in (blocks named
    ``name.*``), or a capacity for a filter used on its own. Parameters are ``(rows, R)``
    tables (``min_cutoff`` Hz, ``beta`` 1/unit, ``d_cutoff`` Hz) indexed by each column's
    region code; the arguments are a new row's values (a scalar, or one per region); edit
    the tables in place to reconfigure a session.

    >>> f = OneEuroFilter(2, np.zeros(3, np.int8), n_regions=1, backend="numpy")
    >>> x = np.ones((2, 3), np.float32)
    >>> f.run(x, np.full(2, 1 / 60, np.float32), x)
    """

    xhat = BlockField[np.float32]()
    dxhat = BlockField[np.float32]()
    primed = BlockField[np.uint8]()
    min_cutoff = BlockField[np.float32]()
    beta = BlockField[np.float32]()
    d_cutoff = BlockField[np.float32]()

    def __init__(
        self,
        rows: RowTable[Any] | int,
        region: npt.ArrayLike,
        *,
        n_regions: int,
        min_cutoff: npt.ArrayLike = 1.0,
        beta: npt.ArrayLike = 0.0,
        d_cutoff: npt.ArrayLike = 1.0,
        backend: str | None = None,
        name: str = "one_euro",
    ) -> None:
        self.region: I8 = np.ascontiguousarray(region, dtype=np.int8)
        if self.region.ndim != 1 or (self.region.size and (
            self.region.min() < 0 or self.region.max() >= n_regions
        )):  # fmt: skip
            raise ValueError("region: expected a 1-D array of codes in [0, n_regions)")
        n = self.region.size
        self.backend: BackendName = resolve_backend(backend)
        self._fn = one_euro_kernel(self.backend)
        declare = table_of(rows).declare
        self.xhat = declare(f"{name}.xhat", (n,), np.float32)
        self.dxhat = declare(f"{name}.dxhat", (n,), np.float32)
        self.primed = declare(f"{name}.primed", (), np.uint8)
        self.min_cutoff = declare(f"{name}.min_cutoff", (n_regions,), np.float32, min_cutoff)
        self.beta = declare(f"{name}.beta", (n_regions,), np.float32, beta)
        self.d_cutoff = declare(f"{name}.d_cutoff", (n_regions,), np.float32, d_cutoff)

    def run(self, x: F32, dt: F32, out: F32, rows: int | None = None) -> None:
        """Filter the first ``rows`` sessions of ``x`` into ``out`` (may be ``x`` itself)."""
        n = x.shape[0] if rows is None else rows
        state = OneEuroState(
            region=self.region,
            xhat=self.xhat[:n],
            dxhat=self.dxhat[:n],
            primed=self.primed[:n],
            min_cutoff=self.min_cutoff[:n],
            beta=self.beta[:n],
            d_cutoff=self.d_cutoff[:n],
        )
        self._fn(state, dt[:n], x[:n], out[:n])
