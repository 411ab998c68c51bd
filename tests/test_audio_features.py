"""Feature kernel: every backend matches the numpy reference; the features mean what they say."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from avatar_engine.audio.features import FeatureStage, LevelTracker, hop_windows
from avatar_engine.audio.resample import Resampler, resample
from avatar_engine.kernels.audio_features import (
    HOP,
    N_FEATURES,
    ONSET,
    PEAK,
    PERIODICITY,
    PITCH,
    RATE,
    RMS,
    VAD,
    WINDOW,
)
from avatar_engine.kernels.backends import available_backends

FAST = [b for b in available_backends() if b != "numpy"]


def _run(backend: str, windows: np.ndarray, thr: np.ndarray) -> np.ndarray:
    out = np.full((windows.shape[0], N_FEATURES), np.nan, np.float32)
    FeatureStage(backend=backend).run(windows, thr, out)
    return out


def _close(a: np.ndarray, b: np.ndarray) -> None:
    # Sums run in a different order per backend (float64 inside): pitch may move by the
    # parabolic refinement only; everything else agrees to float32 rounding.
    np.testing.assert_allclose(
        a[:, [RMS, PEAK, PERIODICITY, VAD]],
        b[:, [RMS, PEAK, PERIODICITY, VAD]],
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(a[:, ONSET], b[:, ONSET], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a[:, PITCH], b[:, PITCH], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("backend", FAST)
@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(0, 6),
    seed=st.integers(0, 2**31 - 1),
    f0=st.floats(70.0, 480.0),
    noise=st.floats(0.0, 0.5),
    gain=st.sampled_from([0.0, 1e-4, 0.03, 1.0]),
)
def test_backend_parity(
    backend: str, rows: int, seed: int, f0: float, noise: float, gain: float
) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW) / RATE
    phase = rng.uniform(0, 2 * np.pi, size=(rows, 1))
    x = np.sin(2 * np.pi * f0 * t[None, :] + phase) + noise * rng.standard_normal((rows, WINDOW))
    windows = np.ascontiguousarray(gain * x, dtype=np.float32)
    thr = rng.uniform(0, 0.05, rows).astype(np.float32)
    _close(_run(backend, windows, thr), _run("numpy", windows, thr))


@pytest.mark.parametrize("backend", FAST)
@settings(max_examples=15, deadline=None)
@given(windows=hnp.arrays(np.float32, (3, WINDOW), elements=st.floats(-1, 1, width=32)))
def test_backend_parity_arbitrary_samples(backend: str, windows: np.ndarray) -> None:
    thr = np.full(3, 0.01, np.float32)
    _close(_run(backend, windows, thr), _run("numpy", windows, thr))


@pytest.mark.parametrize("backend", available_backends())
def test_bad_buffers_raise(backend: str) -> None:
    stage = FeatureStage(backend=backend)
    w = np.zeros((2, WINDOW), np.float32)
    with pytest.raises((ValueError, TypeError)):
        stage.run(w, np.zeros(2, np.float32), np.zeros((3, N_FEATURES), np.float32))
    with pytest.raises((ValueError, TypeError)):
        stage.run(
            w.astype(np.float64), np.zeros(2, np.float32), np.zeros((2, N_FEATURES), np.float32)
        )  # type: ignore[arg-type]


@pytest.mark.parametrize("f0", [100.0, 155.0, 230.0, 400.0])
def test_pitch_of_a_sine(f0: float) -> None:
    x = (0.3 * np.sin(2 * np.pi * f0 * np.arange(RATE) / RATE)).astype(np.float32)
    feats = FeatureStage(backend="numpy")(x)
    mid = feats[10:-10]
    assert np.all(np.abs(mid[:, PITCH] - f0) / f0 < 0.01)
    assert np.all(mid[:, PERIODICITY] > 0.9)
    np.testing.assert_allclose(mid[:, RMS], 0.3 / np.sqrt(2), rtol=0.02)


def test_silence_and_noise() -> None:
    feats = FeatureStage()(np.zeros(RATE // 2, np.float32))
    assert np.all(feats == 0)
    noise = np.random.default_rng(0).standard_normal(RATE // 2).astype(np.float32) * 0.1
    feats = FeatureStage()(noise)
    assert np.mean(feats[5:, PITCH] > 0) < 0.1  # white noise is not voiced


def test_onset_marks_a_step() -> None:
    x = np.zeros(RATE // 2, np.float32)
    x[4000:] = 0.2 * np.sin(2 * np.pi * 1500 * np.arange(x.size - 4000) / RATE)
    feats = FeatureStage()(x)
    hop = 4000 // HOP
    assert feats[hop, ONSET] > 20.0
    assert feats[hop + 5 :, ONSET].max() < 1.0
    assert feats[hop, VAD] == 1.0 and feats[hop - 2, VAD] == 0.0


def test_hop_windows_layout() -> None:
    x = np.arange(3 * HOP, dtype=np.float32)
    w = hop_windows(np.zeros(WINDOW - HOP, np.float32), x)
    assert w.shape == (3, WINDOW)
    assert w[0, -1] == HOP - 1 and w[2, -1] == 3 * HOP - 1
    assert hop_windows(np.zeros(WINDOW - HOP, np.float32), x[:0]).shape == (0, WINDOW)


def test_level_tracker_is_chunk_invariant() -> None:
    rng = np.random.default_rng(1)
    feats = np.zeros((300, N_FEATURES), np.float32)
    feats[:, RMS] = np.abs(rng.standard_normal(300)) * 0.1
    feats[:, VAD] = 1.0
    whole = LevelTracker().update(feats)
    tr = LevelTracker()
    parts = [tr.update(feats[a:b]) for a, b in [(0, 7), (7, 8), (8, 150), (150, 300)]]
    np.testing.assert_array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    np.testing.assert_allclose(whole[1], np.concatenate([p[1] for p in parts]), atol=1e-6)


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100, 48000])
def test_resampler_chunk_invariant_and_accurate(rate: int) -> None:
    t = np.arange(rate // 2) / rate
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    whole = resample(x, rate)
    assert whole.shape[0] == RATE // 2
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE // 2) / RATE)
    assert np.abs(whole[100:-100] - ref[100:-100]).max() < 0.01
    r = Resampler(rate)
    cuts = np.random.default_rng(rate).integers(0, x.size, 30)
    parts = [r.push(c) for c in np.split(x, np.sort(cuts))] + [r.flush()]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
