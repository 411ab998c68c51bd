"""The retarget stage: S sessions x N source weights -> S x M rig morphs, in one call.

Semantics (the numpy reference below; numba and native match it, see the parity tests):

1. ``acc = weights @ map.T`` in float64 over the rig's sparse map (e.g. ARKit 52 -> CC4);
2. ``y = clamp(acc * gain + offset, lower, upper)`` per morph, in float64, then float32;
3. for each exclusive pair ``(dominant, suppressed)`` in rig-file order, in float32:
   ``out[suppressed] *= clamp(1 - out[dominant], 0, 1)`` (a blink wins over a wide eye).

Inputs outside [0, 1] are not an error (calibrated capture overshoots); the morph limits clamp
the result. Non-finite inputs are rejected: the call raises :class:`NonFiniteInputError` naming
the session row and source name, and ``out`` is left untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from avatar_engine.kernels.backends import BackendName, require_native, resolve_backend
from avatar_engine.rigs.arkit import ARKIT_NAMES
from avatar_engine.rigs.profile import RigProfile
from avatar_engine.rigs.sparse import SparseMap
from avatar_engine.types import F32, I32


class NonFiniteInputError(ValueError):
    """A NaN or infinity reached a kernel; nothing was written."""

    def __init__(self, row: int, source_name: str) -> None:
        super().__init__(f"non-finite input at session row {row}, source {source_name!r}")
        self.row = row
        self.source_name = source_name


@dataclass(frozen=True, slots=True)
class RetargetTables:
    """Everything the kernel needs about one (rig, source vocabulary) pair."""

    mapping: SparseMap
    gain: F32
    offset: F32
    lower: F32
    upper: F32
    exclusive: I32

    @classmethod
    def for_rig(cls, rig: RigProfile, source: str, source_names: Sequence[str]) -> RetargetTables:
        """The tables that retarget ``source_names`` (in that order) onto ``rig``'s morphs."""
        return cls(
            mapping=rig.sparse_map(source, source_names),
            gain=rig.gain,
            offset=rig.offset,
            lower=rig.lower,
            upper=rig.upper,
            exclusive=rig.exclusive,
        )


class RetargetArrays(NamedTuple):
    """:class:`RetargetTables` as flat arrays: the struct numba and ``RetargetPlan`` bind by
    field name (the sparse map in CSR form, ``exclusive`` as ``(P, 2)`` pairs)."""

    n_inputs: int
    indptr: I32
    indices: I32
    weights: F32
    gain: F32
    offset: F32
    lower: F32
    upper: F32
    exclusive: I32

    @classmethod
    def of(cls, tables: RetargetTables) -> RetargetArrays:
        """The flat arrays the kernels read, taken from ``tables`` without copying."""
        m = tables.mapping
        return cls(
            n_inputs=m.n_inputs,
            indptr=m.indptr,
            indices=m.indices,
            weights=m.weights,
            gain=tables.gain,
            offset=tables.offset,
            lower=tables.lower,
            upper=tables.upper,
            exclusive=tables.exclusive.reshape(-1, 2),
        )


class RetargetKernel(Protocol):
    """A backend's compiled stage: returns -1, or the flat index of the first bad input."""

    def __call__(self, weights: F32, out: F32, /) -> int: ...


def _check(weights: F32, out: F32, n_in: int, n_out: int) -> None:
    if weights.dtype != np.float32 or out.dtype != np.float32:
        raise TypeError("weights and out must be float32 arrays")
    if weights.ndim != 2 or weights.shape[1] != n_in:
        raise ValueError(f"weights: expected a float32 array of shape (S, {n_in})")
    if out.ndim != 2 or out.shape[1] != n_out or out.shape[0] != weights.shape[0]:
        raise ValueError(f"out: expected shape ({weights.shape[0]}, {n_out})")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out: must be a writeable C-contiguous array")


class NumpyRetarget:
    """The reference implementation: it defines what every other backend must compute."""

    def __init__(self, tables: RetargetTables) -> None:
        self._t = tables
        self._dense_t = tables.mapping.to_dense().T.copy()  # (N, M) float64
        self._gain = tables.gain.astype(np.float64)
        self._offset = tables.offset.astype(np.float64)
        self._lower = tables.lower.astype(np.float64)
        self._upper = tables.upper.astype(np.float64)

    def __call__(self, weights: F32, out: F32, /) -> int:
        t = self._t
        _check(weights, out, t.mapping.n_inputs, t.mapping.n_outputs)
        finite = np.isfinite(weights)
        if not finite.all():
            return int(np.flatnonzero(~finite)[0])
        acc = weights.astype(np.float64) @ self._dense_t
        np.multiply(acc, self._gain, out=acc)
        np.add(acc, self._offset, out=acc)
        np.clip(acc, self._lower, self._upper, out=acc)
        out[...] = acc
        one = np.float32(1.0)
        for dominant, suppressed in t.exclusive:  # a handful of pairs, vectorised over sessions
            keep = np.clip(one - out[:, dominant], np.float32(0), one)
            out[:, suppressed] *= keep
        return -1


class NumbaRetarget:
    """The numba backend: the same loops as the C++ kernel, JIT-compiled."""

    def __init__(self, tables: RetargetTables) -> None:
        from avatar_engine.kernels import _numba_retarget

        self._t = tables
        self._kernel = _numba_retarget.retarget
        self._arrays = RetargetArrays.of(tables)

    def __call__(self, weights: F32, out: F32, /) -> int:
        _check(weights, out, self._t.mapping.n_inputs, self._t.mapping.n_outputs)
        return int(self._kernel(self._arrays, weights, out))


def _native_kernel(tables: RetargetTables) -> RetargetKernel:
    plan: RetargetKernel = require_native().RetargetPlan(RetargetArrays.of(tables))
    return plan


def make_kernel(tables: RetargetTables, backend: BackendName) -> RetargetKernel:
    """Compile the retarget stage for one backend."""
    if backend == "native":
        return _native_kernel(tables)
    if backend == "numba":
        return NumbaRetarget(tables)
    return NumpyRetarget(tables)


class Retargeter:
    """The retarget stage for one rig: construct once, call per tick for every session.

    >>> from avatar_engine import Retargeter, load_rig
    >>> stage = Retargeter(load_rig("cc4-extended"))
    >>> morphs = stage.map(np.zeros((4, 52), np.float32))  # 4 sessions at once
    """

    __slots__ = ("_kernel", "_source_names", "backend", "rig", "source")

    def __init__(
        self,
        rig: RigProfile,
        *,
        source: str = "arkit52",
        source_names: Sequence[str] = ARKIT_NAMES,
        backend: str | None = None,
    ) -> None:
        self.rig = rig
        self.source = source
        self.backend: BackendName = resolve_backend(backend)
        self._source_names = tuple(source_names)
        self._kernel = make_kernel(
            RetargetTables.for_rig(rig, source, self._source_names), self.backend
        )

    @property
    def n_inputs(self) -> int:
        """Input columns (source names) a row of ``weights`` must have."""
        return len(self._source_names)

    @property
    def n_outputs(self) -> int:
        """Output columns (the rig's morphs) a row of ``out`` must have."""
        return self.rig.morph_count

    def run(self, weights: F32, out: F32) -> None:
        """Retarget ``weights`` (S x N float32) into the caller's ``out`` (S x M float32)."""
        bad = self._kernel(weights, out)
        if bad >= 0:
            row, col = divmod(bad, self.n_inputs)
            raise NonFiniteInputError(row, self._source_names[col])

    def map(self, weights: npt.ArrayLike) -> F32:
        """Convenience for one-off use: converts the input and allocates the result."""
        arr = np.ascontiguousarray(weights, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        out = np.empty((arr.shape[0], self.n_outputs), dtype=np.float32)
        self.run(arr, out)
        return out
