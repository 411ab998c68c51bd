"""Curve-sampling stage: every backend matches the numpy reference; CurveBank editing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatar_engine.kernels.backends import available_backends
from avatar_engine.kernels.sampling import BankFullError, CurveBank, CurveKeys, CurveSampler

BACKENDS = available_backends()


@st.composite
def banks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    sessions = draw(st.integers(0, 12))
    cap = draw(st.integers(1, 9))
    chans = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Duplicate times (steps) are allowed: draw from a coarse grid.
    times = np.sort(rng.integers(0, 6, (sessions, cap)).astype(np.float64) * 0.25, axis=1)
    values = rng.uniform(-2, 2, (sessions, cap, chans)).astype(np.float32)
    counts = rng.integers(0, cap + 1, sessions).astype(np.int32)
    t = rng.choice(np.linspace(-0.5, 2.0, 21), sessions) + rng.uniform(-0.01, 0.01, sessions) * (
        rng.random(sessions) < 0.5
    )
    return times, values, counts, t


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40)
@given(data=banks())
def test_backends_match_reference(backend: str, data: tuple[np.ndarray, ...]) -> None:
    times, values, counts, t = data
    ref = np.full((values.shape[0], values.shape[2]), np.nan, np.float32)
    out = np.full_like(ref, np.nan)
    CurveSampler("numpy").run(CurveKeys(times, values, counts), t, ref)
    CurveSampler(backend).run(CurveKeys(times, values, counts), t, out)
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6)


def test_reference_semantics() -> None:
    times = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    values = np.array([[[0.0], [1.0], [3.0]], [[5.0], [5.0], [5.0]]], np.float32)
    counts = np.array([3, 0], np.int32)
    out = np.empty((2, 1), np.float32)
    sampler = CurveSampler("numpy")
    for t, want in ((-1.0, 0.0), (0.5, 0.5), (1.5, 2.0), (9.0, 3.0)):
        sampler.run(CurveKeys(times, values, counts), np.array([t, t]), out)
        assert out[0, 0] == pytest.approx(want)
        assert out[1, 0] == 0.0  # an empty row is neutral


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_buffers_are_rejected(backend: str) -> None:
    s = CurveSampler(backend)
    times = np.zeros((2, 3))
    values = np.zeros((2, 3, 4), np.float32)
    counts = np.zeros(2, np.int32)
    keys = CurveKeys(times, values, counts)
    with pytest.raises(ValueError):
        s.run(keys, np.zeros(2), np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError):
        s.run(keys, np.zeros(2), np.zeros((2, 4), np.float64))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        s.run(
            keys._replace(counts=np.array([0, 9], np.int32)),
            np.zeros(2),
            np.zeros((2, 4), np.float32),
        )
    with pytest.raises(ValueError):
        s.run(keys, np.array([0.0, np.nan]), np.zeros((2, 4), np.float32))


def test_bank_splice_keeps_past_and_bounds_memory() -> None:
    bank = CurveBank(2, 3, capacity=8, backend="numpy")
    t = np.arange(5, dtype=np.float64)
    bank.splice(0, t, np.tile(t[:, None], (1, 3)).astype(np.float32))
    bank.splice(0, np.array([2.5, 3.5]), np.zeros((2, 3), np.float32), keep_after=1.2)
    times, values = bank.keys(0)
    # keys older than now=1.2 are dropped except the one bracketing it; >= 2.5 replaced
    np.testing.assert_array_equal(times, [1.0, 2.0, 2.5, 3.5])
    assert values[-1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(BankFullError):
        bank.splice(1, np.arange(9, dtype=np.float64), np.zeros((9, 3), np.float32))
    assert bank.counts[1] == 0
    out = np.empty((2, 3), np.float32)
    bank.sample(np.array([3.0, 3.0]), out)
    assert out[0, 0] == pytest.approx(0.0) and out[1, 0] == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_offline_render_matches_the_live_stage(backend: str) -> None:
    """Keyframes.sample (CLI, offline) and CurveBank.sample (per tick) agree."""
    from avatar_engine.speech.coarticulation import CHANNELS
    from avatar_engine.speech.lipsync import from_text

    keys = from_text("Maybe the baby wants a bottle of warm milk.").keys
    bank = CurveBank(1, CHANNELS, capacity=len(keys), backend=backend)
    bank.splice(0, keys.times, keys.values)
    t = np.linspace(-0.1, float(keys.times[-1]) + 0.1, 97)
    offline = keys.sample(t)
    out = np.empty((1, CHANNELS), np.float32)
    for i, ti in enumerate(t):
        bank.sample(np.array([ti]), out)
        np.testing.assert_allclose(out[0], offline[i], atol=2e-6)
