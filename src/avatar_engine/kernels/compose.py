"""The compositor stage: L layers x S sessions x N columns blended, then constrained, in one call.

Semantics (the numpy reference below; numba and native match it, see the parity tests).
Per session ``s`` and column ``c``, ``acc`` starts at 0 (float64) and the layers apply in order
with weight ``w = weight[s, l, region[c]]`` (times ``emask[s, c]`` for the last layer, the
per-column manual-override mask):

====================  =====================================  ===============================
mode (code)           update                                 meaning
====================  =====================================  ===============================
override (0)          ``acc += w * (x - acc)``               lerp towards the layer
additive (1)          ``acc += w * x``                       add the layer
max (2)               ``acc += w * (max(acc, x) - acc)``     take the larger value
multiply (3)          ``acc *= 1 + w * (x - 1)``             scale (``x = 1`` changes nothing)
====================  =====================================  ===============================

Then, in float32 (constraints after composition):

1. left/right coupling (pairs in order, factor ``couple[s]``): both sides move ``couple`` of
   the way towards their mean (0 = independent, 1 = identical);
2. clamp to ``[lower, upper]`` per column;
3. exclusive pairs ``(dominant, suppressed)`` in order: ``out[q] *= clamp(1 - out[d], 0, 1)``;
4. maximum velocity: when the session is primed, ``out`` moves at most
   ``float32(min(vmax[s, region[c]], vcol[c]) * dt)`` from ``prev`` (so nothing pops): a
   per-session, per-region speed with an optional per-morph cap; then ``prev = out``
   and the session is primed. Velocity limiting runs last so its guarantee is exact; it can
   briefly soften step 3 while a suppressed morph is still decaying.

``layers`` is ``(L, Sc, N)`` with ``Sc >= S`` (the engine's capacity, so the active rows of a
preallocated buffer can be passed without a copy); the session count ``S`` is ``out.shape[0]``.
Layer values must be finite (the retarget stage rejects non-finite capture).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from avatar_engine.kernels.backends import BackendName, require_native
from avatar_engine.types import F32, I8, I32, U8


class BlendMode(IntEnum):
    """How a layer blends into the layers below it; the codes are ``BlendMode`` in
    native/include/avatar_engine/compose.hpp (the numba kernel compares the same numbers)."""

    OVERRIDE = 0
    ADDITIVE = 1
    MAX = 2
    MULTIPLY = 3


MODES: Final[dict[str, BlendMode]] = {mode.name.lower(): mode for mode in BlendMode}
"""The mode names users send (``set_layer(..., mode="additive")``)."""


class ComposeTables(NamedTuple):
    """Static per-column data of one frame block (the rig's morphs, or the rotation channels).

    Bound once per backend (copied into C++ by ``ComposePlan``, passed to numba as one typed
    argument); every backend reads it by field name.
    """

    n_regions: int
    region: I8
    lower: F32
    upper: F32
    exclusive: I32
    """``(P, 2)`` column pairs: dominant, suppressed."""
    couple: I32
    """``(Q, 2)`` column pairs: left, right."""
    vcol: F32 | None = None
    """``(N,)`` per-column speed caps (units/s); None or inf: the region's limit alone."""

    @property
    def vcap(self) -> F32:
        """Per-column speed cap (units per second) as float32; infinite when the rig sets none."""
        if self.vcol is None:
            return np.full(self.n, np.inf, np.float32)
        return np.ascontiguousarray(self.vcol, np.float32)

    @property
    def n(self) -> int:
        """Columns composed (morphs and channels)."""
        return int(self.region.size)


class ComposeState(NamedTuple):
    """The per-session rows the compositor carries from tick to tick (first ``S`` rows)."""

    prev: F32
    """``(S, N)`` the last output, for the velocity limit."""
    primed: U8
    """``(S,)`` 1 once ``prev`` holds an output."""


class ComposeInputs(NamedTuple):
    """One tick's inputs; ``S`` (the session count) is ``out.shape[0]``."""

    layers: F32
    """``(L, Sc, N)`` layer planes, ``Sc >= S`` (only the first ``S`` rows are read)."""
    weight: F32
    """``(S, L, R)`` effective weight per session, layer and region."""
    mode: I8
    """``(S, L)`` blend mode codes."""
    emask: F32
    """``(S, N)`` per-column weight of the last (manual) layer."""
    couple: F32
    """``(S,)`` left/right coupling factor."""
    vmax: F32
    """``(S, R)`` region speed limits (units/s)."""


class ComposeFn(Protocol):
    """One backend's compositor call: ``(state, dt, inputs, out)``, the same in every backend."""

    def __call__(
        self, state: ComposeState, dt: float, inputs: ComposeInputs, out: F32, /
    ) -> None: ...


class NumpyCompose:
    """The reference implementation: it defines what every other backend computes."""

    def __init__(self, tables: ComposeTables) -> None:
        self._t = tables
        self._reg = tables.region.astype(np.intp)
        self._vcap = tables.vcap
        cols = tables.couple.reshape(-1)
        self._couple_disjoint = np.unique(cols).size == cols.size

    def __call__(self, state: ComposeState, dt: float, inputs: ComposeInputs, out: F32, /) -> None:
        t = self._t
        layers, weight, mode = inputs.layers, inputs.weight, inputs.mode
        emask, couple, vmax = inputs.emask, inputs.couple, inputs.vmax
        prev, primed = state.prev, state.primed
        n_layers = layers.shape[0]
        sessions = out.shape[0]
        acc = np.zeros((sessions, t.n), np.float64)
        for layer in range(n_layers):
            w = weight[:, layer, :][:, self._reg].astype(np.float64)
            if layer == n_layers - 1:
                w *= emask
            x = layers[layer, :sessions].astype(np.float64)
            m = mode[:, layer][:, None]
            acc = np.where(
                m == BlendMode.OVERRIDE,
                acc + w * (x - acc),
                np.where(
                    m == BlendMode.ADDITIVE,
                    acc + w * x,
                    np.where(
                        m == BlendMode.MAX,
                        acc + w * (np.maximum(acc, x) - acc),
                        acc * (1.0 + w * (x - 1.0)),
                    ),
                ),
            )
        o = acc.astype(np.float32)
        k = couple.astype(np.float32)
        if t.couple.size:
            rows = np.flatnonzero(k != 0)
            if self._couple_disjoint:  # no column in two pairs: order cannot matter
                a, b = t.couple[:, 0], t.couple[:, 1]
                kk = k[rows][:, None]
                left, right = o[np.ix_(rows, a)], o[np.ix_(rows, b)]
                mid = (left + right) * np.float32(0.5)
                o[np.ix_(rows, a)] = left + kk * (mid - left)
                o[np.ix_(rows, b)] = right + kk * (mid - right)
            else:
                for a1, b1 in t.couple:
                    left1, right1 = o[rows, a1], o[rows, b1]
                    mid1 = (left1 + right1) * np.float32(0.5)
                    o[rows, a1] = left1 + k[rows] * (mid1 - left1)
                    o[rows, b1] = right1 + k[rows] * (mid1 - right1)
        np.minimum(np.maximum(o, t.lower), t.upper, out=o)
        one = np.float32(1.0)
        for d, q in t.exclusive:
            o[:, q] *= np.clip(one - o[:, d], np.float32(0.0), one)
        live = primed != 0
        if live.any():
            v = np.minimum(vmax[live][:, self._reg], self._vcap)
            step = (v.astype(np.float64) * dt).astype(np.float32)
            p = prev[live]
            o[live] = np.minimum(np.maximum(o[live], p - step), p + step)
        out[...] = o
        prev[...] = o
        primed[...] = 1


class NumbaCompose:
    """The numba backend: the same loops as the C++ kernel, JIT-compiled."""

    def __init__(self, tables: ComposeTables) -> None:
        from avatar_engine.kernels import _numba_compose

        self._t = tables._replace(vcol=tables.vcap)  # numba needs the array, never None
        self._kernel = _numba_compose.compose

    def __call__(self, state: ComposeState, dt: float, inputs: ComposeInputs, out: F32, /) -> None:
        self._kernel(self._t, state, float(dt), inputs, out)


def make_compose(tables: ComposeTables, backend: BackendName) -> ComposeFn:
    """Compile the compositor for one frame block and one backend."""
    if backend == "native":
        plan: ComposeFn = require_native().ComposePlan(tables)
        return plan
    if backend == "numba":
        return NumbaCompose(tables)
    return NumpyCompose(tables)


class ScatterFn(Protocol):
    """One backend's sparse scatter: ``x`` (S x n_in) through the map into ``out`` (S x n_out)."""

    def __call__(self, x: F32, out: F32, /) -> None: ...


class ScatterTables(NamedTuple):
    """A small sparse ``n_in -> n_out`` map as ordered (row, col, weight) non-zeros.

    Semantics: ``out[s, m] = sum_k weights[k] * x[s, cols[k]]`` over the non-zeros with
    ``rows[k] == m`` (0 where there are none), in float32; the kernels add in non-zero order,
    and backends agree to float32 rounding. Used for emotion presets and the
    procedural ARKit shapes, whose maps have a few dozen non-zeros: a scatter costs a memset
    plus ``nnz`` multiply-adds per session instead of a pass over every morph.
    """

    n_in: int
    n_out: int
    rows: I32
    cols: I32
    weights: F32

    @classmethod
    def from_dense(cls, dense: npt.ArrayLike) -> ScatterTables:
        """From an ``(n_out, n_in)`` matrix; non-zeros in row-major order."""
        d = np.asarray(dense, np.float64)
        rows, cols = np.nonzero(d)
        return cls(
            n_in=int(d.shape[1]),
            n_out=int(d.shape[0]),
            rows=rows.astype(np.int32),
            cols=cols.astype(np.int32),
            weights=d[rows, cols].astype(np.float32),
        )


class NumpyScatter:
    """The reference, as a float32 product with the dense map (no per-non-zero loop).

    ``einsum`` rather than ``@``: it needs no BLAS thread pool, whose hand-offs stall on a
    busy machine, and its float32 sums differ from the in-order scatter only by rounding.
    """

    def __init__(self, tables: ScatterTables) -> None:
        dense = np.zeros((tables.n_in, tables.n_out), np.float32)
        np.add.at(dense, (tables.cols, tables.rows), tables.weights)
        self._dense = dense

    def __call__(self, x: F32, out: F32, /) -> None:
        np.einsum("si,io->so", x, self._dense, out=out)


class NumbaScatter:
    """The numba twin of the sparse scatter, bound to its tables once."""

    def __init__(self, tables: ScatterTables) -> None:
        from avatar_engine.kernels import _numba_compose

        self._t = tables
        self._kernel = _numba_compose.scatter_map

    def __call__(self, x: F32, out: F32, /) -> None:
        self._kernel(self._t, x, out)


def make_scatter(tables: ScatterTables, backend: BackendName) -> ScatterFn:
    """Compile a scatter map for one backend."""
    if backend == "native":
        plan: ScatterFn = require_native().ScatterPlan(tables)
        return plan
    if backend == "numba":
        return NumbaScatter(tables)
    return NumpyScatter(tables)
