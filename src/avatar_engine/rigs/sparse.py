"""Sparse weighted maps from a source vocabulary onto a rig's morphs, in CSR form.

Rows are output morphs and columns are source entries, so each output is a short dot
product over the few sources that drive it, and undriven morphs cost nothing but the write.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_engine.types import F32, F64, I32


@dataclass(frozen=True, slots=True)
class SparseMap:
    """A morphs x sources matrix in compressed sparse row form (float32 weights)."""

    n_outputs: int
    n_inputs: int
    indptr: I32
    """``indptr[m]:indptr[m+1]`` is the slice of ``indices``/``weights`` for output ``m``."""
    indices: I32
    weights: F32

    @classmethod
    def from_triplets(
        cls, n_outputs: int, n_inputs: int, triplets: list[tuple[int, int, float]]
    ) -> SparseMap:
        """Build from ``(output, input, weight)`` triplets; repeated pairs add up."""
        dense: dict[tuple[int, int], float] = {}
        for out, inp, w in triplets:
            if not (0 <= out < n_outputs and 0 <= inp < n_inputs):
                raise IndexError(f"triplet ({out}, {inp}) outside {n_outputs}x{n_inputs}")
            dense[(out, inp)] = dense.get((out, inp), 0.0) + w
        ordered = sorted(dense.items())
        counts = np.zeros(n_outputs + 1, dtype=np.int32)
        for (out, _), _w in ordered:
            counts[out + 1] += 1
        return cls(
            n_outputs=n_outputs,
            n_inputs=n_inputs,
            indptr=np.cumsum(counts, dtype=np.int32),
            indices=np.array([inp for (_, inp), _ in ordered], dtype=np.int32),
            weights=np.array([w for _, w in ordered], dtype=np.float32),
        )

    def to_dense(self) -> F64:
        """The full ``n_outputs x n_inputs`` matrix (float64), for the numpy reference."""
        dense = np.zeros((self.n_outputs, self.n_inputs), dtype=np.float64)
        rows = np.repeat(np.arange(self.n_outputs), np.diff(self.indptr))
        np.add.at(dense, (rows, self.indices), self.weights.astype(np.float64))
        return dense

    @property
    def nnz(self) -> int:
        """Stored non-zeros: the work one retarget of a row costs."""
        return int(self.indices.shape[0])
