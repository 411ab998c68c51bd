"""The capture range check: the native pass holds rows exactly as the numpy reference does."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from avatar_engine.ingest.range_check import (
    CENTER,
    HALF,
    clamp_rows_reference,
    range_check_backend,
)
from avatar_engine.kernels.backends import native_module

NATIVE = native_module() is not None and hasattr(native_module(), "clamp_rows")


def _rows(seed: int, n: int) -> np.ndarray:
    """Rows of 61 values, mostly in range, with the edge cases a datagram can carry: values
    just outside, infinities, NaN, negative zero and denormals."""
    rng = np.random.default_rng(seed)
    values = (CENTER + HALF * rng.uniform(-1.0, 1.0, (n, len(CENTER)))).astype(np.float32)
    picks = rng.integers(0, values.size, 12 * n // 10 + 8)
    specials = np.array(
        [np.inf, -np.inf, np.nan, -0.0, 1e-45, -1e-45, 1.0000001, -1e-7, 8.000001, -8.5, 3e38],
        np.float32,
    )
    values.flat[picks] = specials[rng.integers(0, len(specials), len(picks))]
    return values


@pytest.mark.skipif(not NATIVE, reason="the native module is not built here")
@pytest.mark.parametrize("seed", range(6))
def test_the_native_pass_clamps_and_counts_as_the_reference(seed: int) -> None:
    values = _rows(seed, 100)
    if seed == 0:
        values[:] = CENTER  # nothing out of range: nothing changes, total 0
    got = []
    for clamp in (clamp_rows_reference, range_check_backend("native")):
        rows = values.copy()
        counts = np.full(128, -1, np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # garbage rows must not warn
            total = clamp(rows, CENTER, HALF, counts)
        got.append((total, counts.copy(), rows))
    (total, counts, rows), (n_total, n_counts, n_rows) = got
    assert n_total == total == int(counts[:100].sum())
    assert np.array_equal(n_counts, counts) and (counts[100:] == -1).all()
    assert np.array_equal(n_rows.view(np.uint32), rows.view(np.uint32))  # bit for bit (NaN, -0)
    if seed == 0:
        assert total == 0 and np.array_equal(rows, values)
    else:
        inside = (values >= CENTER - HALF) & (values <= CENTER + HALF)
        assert total > 0 and np.array_equal(rows[inside], values[inside])
        assert (np.abs(rows[~np.isnan(rows)] - np.broadcast_to(CENTER, rows.shape)[~np.isnan(rows)])
                <= np.broadcast_to(HALF, rows.shape)[~np.isnan(rows)]).all()  # fmt: skip


@pytest.mark.skipif(not NATIVE, reason="the native module is not built here")
def test_the_native_pass_refuses_bad_arguments_before_writing() -> None:
    clamp = range_check_backend("native")
    values = _rows(7, 4)
    before = values.copy()
    counts = np.zeros(4, np.int64)
    for args in (
        (values.astype(np.float64), CENTER, HALF, counts),  # never a silent copy
        (values, CENTER, HALF, counts.astype(np.int32)),
        (values, CENTER[:60], HALF, counts),
        (values, CENTER, HALF, counts[:3]),
        (values[0], CENTER, HALF, counts),
    ):
        with pytest.raises((TypeError, ValueError)):
            clamp(*args)
    assert np.array_equal(values.view(np.uint32), before.view(np.uint32)) and not counts.any()
