"""The compositor kernel: modes, masks, weights and constraints do what the docs say."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatar_engine.kernels.backends import available_backends
from avatar_engine.kernels.compose import (
    BlendMode,
    ComposeInputs,
    ComposeState,
    ComposeTables,
    NumpyCompose,
    NumpyScatter,
    ScatterTables,
    make_compose,
    make_scatter,
)

BACKENDS = available_backends()
ACCEL = [b for b in BACKENDS if b != "numpy"]


def _tables(n: int, r: int = 2, region: list[int] | None = None, lower: float = -10.0,
            upper: float = 10.0, exclusive: list[tuple[int, int]] | None = None,
            couple: list[tuple[int, int]] | None = None,
            vcol: list[float] | None = None) -> ComposeTables:  # fmt: skip
    return ComposeTables(
        n_regions=r,
        region=np.array(region if region is not None else [0] * n, np.int8),
        lower=np.full(n, lower, np.float32),
        upper=np.full(n, upper, np.float32),
        exclusive=np.array(exclusive or [], np.int32).reshape(-1, 2),
        couple=np.array(couple or [], np.int32).reshape(-1, 2),
        vcol=None if vcol is None else np.array(vcol, np.float32),
    )


def _compose(
    backend: str,
    t: ComposeTables,
    layers: np.ndarray,
    weight: np.ndarray,
    mode: np.ndarray,
    *,
    emask: np.ndarray | None = None,
    couple: float = 0.0,
    vmax: float = np.inf,
    dt: float = 1 / 60,
    prev: np.ndarray | None = None,
) -> np.ndarray:
    s = layers.shape[1]
    out = np.zeros((s, t.n), np.float32)
    p = np.zeros((s, t.n), np.float32) if prev is None else prev.copy()
    primed = np.full(s, 0 if prev is None else 1, np.uint8)
    em = np.ones((s, t.n), np.float32) if emask is None else emask
    inputs = ComposeInputs(
        layers=np.ascontiguousarray(layers, np.float32),
        weight=np.ascontiguousarray(weight, np.float32),
        mode=np.ascontiguousarray(mode, np.int8),
        emask=em,
        couple=np.full(s, couple, np.float32),
        vmax=np.full((s, t.n_regions), vmax, np.float32),
    )
    make_compose(t, backend)(ComposeState(p, primed), dt, inputs, out)  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("mode", "x", "expect"),
    [
        (BlendMode.OVERRIDE, 0.8, 0.3 + 0.5 * (0.8 - 0.3)),  # lerp towards the layer by its weight
        (BlendMode.ADDITIVE, 0.8, 0.3 + 0.5 * 0.8),
        (BlendMode.MAX, 0.8, 0.3 + 0.5 * (0.8 - 0.3)),
        (BlendMode.MAX, 0.1, 0.3),  # a smaller value leaves the base alone
        (BlendMode.MULTIPLY, 0.8, 0.3 * (1 + 0.5 * (0.8 - 1))),
        (BlendMode.MULTIPLY, 1.0, 0.3),  # 1 is the identity of multiply
    ],
)
def test_modes(backend: str, mode: int, x: float, expect: float) -> None:
    t = _tables(1, r=1)
    layers = np.array([[[0.3]], [[x]], [[0.0]]], np.float32)  # base, tested layer, manual
    weight = np.array([[[1.0], [0.5], [0.0]]], np.float32)
    modes = np.array([[BlendMode.OVERRIDE, mode, BlendMode.OVERRIDE]], np.int8)
    out = _compose(backend, t, layers, weight, modes)
    assert out[0, 0] == pytest.approx(expect, abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_region_masks_and_manual_mask(backend: str) -> None:
    # 4 columns: two in region 0 (say mouth), two in region 1 (say brow)
    t = _tables(4, r=2, region=[0, 0, 1, 1])
    base = np.full((1, 4), 0.2, np.float32)
    speech = np.full((1, 4), 0.9, np.float32)
    manual = np.full((1, 4), 0.5, np.float32)
    layers = np.stack([base, speech, manual])
    weight = np.array([[[1, 1], [1, 0], [1, 1]]], np.float32)  # speech masked to region 0
    modes = np.zeros((1, 3), np.int8)
    emask = np.array([[0, 0, 0, 1]], np.float32)  # manual override on the last column only
    out = _compose(backend, t, layers, weight, modes, emask=emask)
    np.testing.assert_allclose(out[0], [0.9, 0.9, 0.2, 0.5], atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_constraints(backend: str) -> None:
    # columns: 0 blink(dominant) 1 wide(suppressed) 2 smileL 3 smileR 4 fast jaw
    t = _tables(5, r=1, lower=0.0, upper=1.0, exclusive=[(0, 1)], couple=[(2, 3)])
    layer = np.array([[[0.75, 0.8, 1.4, 0.2, 0.9]]], np.float32)
    weight = np.ones((1, 1, 1), np.float32)
    modes = np.zeros((1, 1), np.int8)
    out = _compose(backend, t, layer, weight, modes, couple=0.5)
    # coupling: 1.4/0.2 -> halfway to their mean 0.8 -> 1.1 / 0.5, then clamp 1.1 -> 1
    np.testing.assert_allclose(out[0], [0.75, 0.8 * 0.25, 1.0, 0.5, 0.9], atol=1e-6)
    # velocity: from prev = 0 at 6 units/s and dt = 1/60, nothing moves more than 0.1
    out2 = _compose(backend, t, layer, weight, modes, vmax=6.0, prev=np.zeros((1, 5), np.float32))
    assert np.all(np.abs(out2) <= 0.1 + 1e-6)
    assert out2[0, 4] == pytest.approx(0.1, abs=1e-6)
    # a per-morph cap tightens one column below its region's limit
    t3 = _tables(5, r=1, lower=0.0, upper=1.0, vcol=[np.inf, np.inf, np.inf, np.inf, 3.0])
    out3 = _compose(backend, t3, layer, weight, modes, vmax=6.0, prev=np.zeros((1, 5), np.float32))
    assert out3[0, 4] == pytest.approx(0.05, abs=1e-6)
    assert out3[0, 0] == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_active_rows_of_layer_planes_are_read(backend: str) -> None:
    t = _tables(3, r=1)
    layers = np.zeros((2, 5, 3), np.float32)  # capacity 5, 2 live sessions
    layers[1, :2] = 0.4
    layers[1, 2:] = np.nan  # garbage in the free rows must not be touched
    weight = np.ones((2, 2, 1), np.float32)
    modes = np.zeros((2, 2), np.int8)
    out = np.zeros((2, 3), np.float32)
    inputs = ComposeInputs(
        layers=layers,
        weight=weight,
        mode=modes,
        emask=np.ones((2, 3), np.float32),
        couple=np.zeros(2, np.float32),
        vmax=np.full((2, 1), np.inf, np.float32),
    )
    state = ComposeState(prev=np.zeros((2, 3), np.float32), primed=np.zeros(2, np.uint8))
    make_compose(t, backend)(state, 1 / 60, inputs, out)  # type: ignore[arg-type]
    np.testing.assert_allclose(out, 0.4)


@pytest.mark.skipif(
    not ACCEL, reason="parity needs numba or the native module, and neither loads on this machine"
)
@pytest.mark.parametrize("backend", ACCEL)
@settings(max_examples=30)
@given(s=st.integers(1, 6), n=st.integers(2, 14), n_layers=st.integers(1, 5),
       seed=st.integers(0, 2**31))  # fmt: skip
def test_parity(backend: str, s: int, n: int, n_layers: int, seed: int) -> None:
    g = np.random.default_rng(seed)
    r = 3
    pairs = g.choice(n, size=(2, 2), replace=False) if n >= 4 else np.zeros((0, 2), int)
    t = ComposeTables(
        n_regions=r,
        region=g.integers(0, r, n).astype(np.int8),
        lower=g.uniform(-0.5, 0.2, n).astype(np.float32),
        upper=g.uniform(0.5, 1.5, n).astype(np.float32),
        exclusive=pairs[:1].astype(np.int32),
        couple=pairs[1:].astype(np.int32),
        vcol=np.where(g.uniform(size=n) < 0.3, g.uniform(0.5, 30, n), np.inf).astype(np.float32),
    )
    cap = s + int(g.integers(0, 3))
    inputs = ComposeInputs(
        layers=g.uniform(-1, 2, (n_layers, cap, n)).astype(np.float32),
        weight=np.where(
            g.uniform(size=(s, n_layers, r)) < 0.2, 0, g.uniform(0, 1.2, (s, n_layers, r))
        ).astype(np.float32),
        mode=g.integers(0, 4, (s, n_layers)).astype(np.int8),
        emask=g.uniform(0, 1, (s, n)).astype(np.float32),
        couple=np.where(g.uniform(size=s) < 0.5, 0, g.uniform(0, 1, s)).astype(np.float32),
        vmax=g.uniform(0.5, 30, (s, r)).astype(np.float32),
    )
    dt = float(g.uniform(1 / 240, 0.1))
    prev0 = g.uniform(-0.5, 1.5, (s, n)).astype(np.float32)
    primed0 = (g.uniform(size=s) < 0.6).astype(np.uint8)
    results = []
    for fn in (NumpyCompose(t), make_compose(t, backend)):  # type: ignore[arg-type]
        prev, primed, out = prev0.copy(), primed0.copy(), np.zeros((s, n), np.float32)
        fn(ComposeState(prev, primed), dt, inputs, out)
        results.append((out, prev, primed))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scatter_map_matches_dense_product(backend: str) -> None:
    g = np.random.default_rng(3)
    dense = np.where(g.uniform(size=(20, 7)) < 0.2, g.uniform(-1, 1, (20, 7)), 0.0)
    x = g.uniform(0, 1, (5, 7)).astype(np.float32)
    out = np.full((5, 20), np.nan, np.float32)  # every output is written, touched or not
    make_scatter(ScatterTables.from_dense(dense), backend)(x, out)  # type: ignore[arg-type]
    np.testing.assert_allclose(out, x.astype(np.float64) @ dense.T, atol=1e-6)


@pytest.mark.skipif(
    not ACCEL, reason="parity needs numba or the native module, and neither loads on this machine"
)
@pytest.mark.parametrize("backend", ACCEL)
@settings(max_examples=20)
@given(s=st.integers(1, 6), n_in=st.integers(1, 12), n_out=st.integers(1, 30),
       seed=st.integers(0, 2**31))  # fmt: skip
def test_scatter_parity(backend: str, s: int, n_in: int, n_out: int, seed: int) -> None:
    g = np.random.default_rng(seed)
    dense = np.where(g.uniform(size=(n_out, n_in)) < 0.3, g.uniform(-2, 2, (n_out, n_in)), 0.0)
    t = ScatterTables.from_dense(dense)
    x = g.uniform(-1, 2, (s, n_in)).astype(np.float32)
    ref = np.zeros((s, n_out), np.float32)
    got = np.zeros((s, n_out), np.float32)
    NumpyScatter(t)(x, ref)
    make_scatter(t, backend)(x, got)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(
    not ACCEL, reason="parity needs numba or the native module, and neither loads on this machine"
)
@pytest.mark.parametrize("backend", ACCEL)
def test_overlapping_coupling_pairs_apply_in_order(backend: str) -> None:
    t = _tables(3, r=1, couple=[(0, 1), (1, 2)])
    layer = np.array([[[0.9, 0.1, 0.5]]], np.float32)
    args = (layer, np.ones((1, 1, 1), np.float32), np.zeros((1, 1), np.int8))
    ref = _compose("numpy", t, *args, couple=0.5)
    got = _compose(backend, t, *args, couple=0.5)
    # pair 1 sees pair 0's result: 0.9/0.1 -> 0.7/0.3, then 0.3/0.5 -> 0.35/0.45
    np.testing.assert_allclose(ref[0], [0.7, 0.35, 0.45], atol=1e-6)
    np.testing.assert_allclose(got, ref, atol=1e-7)
