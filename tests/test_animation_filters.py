"""One Euro filter and critically damped spring: semantics and backend parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatar_engine.kernels.backends import available_backends
from avatar_engine.kernels.filters import (
    OneEuroFilter,
    OneEuroState,
    SpringState,
    one_euro_kernel,
    one_euro_numpy,
    settle_omega,
    spring_kernel,
    spring_numpy,
)

BACKENDS = available_backends()
ACCEL = [b for b in BACKENDS if b != "numpy"]


def _state(s: int, n: int, r: int, seed: int) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {
        "x": g.uniform(-1, 2, (s, n)).astype(np.float32),
        "xhat": g.uniform(-1, 2, (s, n)).astype(np.float32),
        "dxhat": g.normal(0, 5, (s, n)).astype(np.float32),
        "primed": (g.uniform(size=s) < 0.7).astype(np.uint8),
        "dt": np.where(g.uniform(size=s) < 0.15, 0.0, g.uniform(1 / 240, 0.1, s)).astype(
            np.float32
        ),
        "region": g.integers(0, r, n).astype(np.int8),
        "mc": g.uniform(0.01, 5, (s, r)).astype(np.float32),
        "beta": g.uniform(0, 20, (s, r)).astype(np.float32),
        "dc": g.uniform(0.1, 5, (s, r)).astype(np.float32),
    }


def _run_one_euro(fn: object, st_: dict[str, np.ndarray], in_place: bool) -> tuple[np.ndarray, ...]:
    x = st_["x"].copy()
    xhat, dxhat, primed = st_["xhat"].copy(), st_["dxhat"].copy(), st_["primed"].copy()
    out = x if in_place else np.zeros_like(x)
    state = OneEuroState(st_["region"], xhat, dxhat, primed, st_["mc"], st_["beta"], st_["dc"])
    fn(state, st_["dt"], x, out)  # type: ignore[operator]
    return out, xhat, dxhat, primed


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_euro_converges_on_constant_input(backend: str) -> None:
    f = OneEuroFilter(3, np.zeros(4, np.int8), n_regions=1, min_cutoff=1.0, beta=0.5,
                      d_cutoff=1.0, backend=backend)  # fmt: skip
    x0 = np.zeros((3, 4), np.float32)
    dt = np.full(3, 1 / 60, np.float32)
    out = np.empty_like(x0)
    f.run(x0, dt, out)  # primes at 0
    target = np.array([[0.7, -0.3, 1.0, 0.25]] * 3, np.float32)
    for _ in range(600):  # 10 s at 60 fps
        f.run(target, dt, out)
    np.testing.assert_allclose(out, target, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_euro_primes_and_holds(backend: str) -> None:
    fn = one_euro_kernel(backend)  # type: ignore[arg-type]
    x = np.array([[0.5, 0.25]], np.float32)
    out = np.zeros_like(x)
    xhat = np.zeros_like(x)
    dxhat = np.zeros_like(x)
    primed = np.zeros(1, np.uint8)
    state = OneEuroState(np.zeros(2, np.int8), xhat, dxhat, primed, np.ones((1, 1), np.float32),
                         np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32))  # fmt: skip
    fn(state, np.full(1, 1 / 60, np.float32), x, out)
    np.testing.assert_array_equal(out, x)  # first sample passes through
    assert primed[0] == 1
    fn(state, np.zeros(1, np.float32), np.ones_like(x), out)
    np.testing.assert_array_equal(out, x)  # dt = 0: no sample, held estimate


def test_one_euro_matches_paper_formula() -> None:
    """One scalar step computed by hand from the CHI 2012 equations."""
    fc_min, beta, dcut, dt = 1.2, 0.8, 1.5, 1 / 50
    prev, dprev, x = 0.2, 0.4, 0.9
    alpha = lambda fc: 1.0 / (1.0 + (1.0 / (2 * math.pi * fc)) / dt)  # noqa: E731
    dx = (x - prev) / dt
    dxh = alpha(dcut) * dx + (1 - alpha(dcut)) * dprev
    fc = fc_min + beta * abs(dxh)
    expect = alpha(fc) * x + (1 - alpha(fc)) * prev
    out = np.zeros((1, 1), np.float32)
    xhat = np.full((1, 1), prev, np.float32)
    dxhat = np.full((1, 1), dprev, np.float32)
    state = OneEuroState(
        region=np.zeros(1, np.int8),
        xhat=xhat,
        dxhat=dxhat,
        primed=np.ones(1, np.uint8),
        min_cutoff=np.full((1, 1), fc_min, np.float32),
        beta=np.full((1, 1), beta, np.float32),
        d_cutoff=np.full((1, 1), dcut, np.float32),
    )
    one_euro_numpy(state, np.full(1, dt, np.float32), np.full((1, 1), x, np.float32), out)
    assert out[0, 0] == pytest.approx(expect, rel=1e-6)
    assert dxhat[0, 0] == pytest.approx(dxh, rel=1e-6)


@pytest.mark.skipif(
    not ACCEL, reason="parity needs numba or the native module, and neither loads on this machine"
)
@pytest.mark.parametrize("backend", ACCEL)
@settings(max_examples=25)
@given(s=st.integers(1, 9), n=st.integers(1, 17), r=st.integers(1, 12), seed=st.integers(0, 2**31),
       in_place=st.booleans())  # fmt: skip
def test_one_euro_parity(backend: str, s: int, n: int, r: int, seed: int, in_place: bool) -> None:
    st_ = _state(s, n, r, seed)
    ref = _run_one_euro(one_euro_numpy, st_, in_place)
    got = _run_one_euro(one_euro_kernel(backend), st_, in_place)  # type: ignore[arg-type]
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(b, a, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spring_settles_without_overshoot(backend: str) -> None:
    fn = spring_kernel(backend)  # type: ignore[arg-type]
    pos = np.zeros((2, 3), np.float32)
    vel = np.zeros((2, 3), np.float32)
    target = np.ones((2, 3), np.float32)
    omega = np.full(2, settle_omega(0.5), np.float32)
    trace = []
    for _ in range(120):  # 2 s at 60 fps
        fn(SpringState(pos, vel, omega), 1 / 60, target)
        trace.append(pos[0, 0])
    assert max(trace) <= 1.0 + 1e-6  # critically damped: never overshoots from rest
    assert abs(trace[29] - 1.0) < 0.025  # within ~2 % at the settle time (0.5 s)
    np.testing.assert_allclose(pos, target, atol=1e-4)


@pytest.mark.skipif(
    not ACCEL, reason="parity needs numba or the native module, and neither loads on this machine"
)
@pytest.mark.parametrize("backend", ACCEL)
@settings(max_examples=25)
@given(s=st.integers(1, 9), n=st.integers(1, 17), seed=st.integers(0, 2**31),
       dt=st.floats(1e-4, 0.5))  # fmt: skip
def test_spring_parity(backend: str, s: int, n: int, seed: int, dt: float) -> None:
    g = np.random.default_rng(seed)
    pos = g.uniform(-2, 2, (s, n)).astype(np.float32)
    vel = g.normal(0, 3, (s, n)).astype(np.float32)
    target = g.uniform(-2, 2, (s, n)).astype(np.float32)
    omega = g.uniform(0.1, 150, s).astype(np.float32)
    p1, v1 = pos.copy(), vel.copy()
    spring_numpy(SpringState(p1, v1, omega), dt, target)
    p2, v2 = pos.copy(), vel.copy()
    spring_kernel(backend)(SpringState(p2, v2, omega), dt, target)  # type: ignore[arg-type]
    np.testing.assert_allclose(p2, p1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v2, v1, rtol=1e-5, atol=1e-4)
