"""The retarget stage: numpy defines the semantics; numba and native must match it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from avatar_engine.kernels.backends import available_backends
from avatar_engine.kernels.retarget import NonFiniteInputError, Retargeter
from avatar_engine.rigs.arkit import ARKIT_NAMES
from avatar_engine.rigs.profile import builtin_rig_names, load_rig

ACCELERATED = [b for b in available_backends() if b != "numpy"]
RIGS = builtin_rig_names()

values = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False, width=32)
specials = st.sampled_from([0.0, 1.0, -0.0, 1.5, -1.0, 1e-30, 2.0**-126])
batches = st.integers(min_value=1, max_value=17).flatmap(
    lambda s: arrays(np.float32, (s, 52), elements=st.one_of(values, specials))
)


def stage(rig: str, backend: str) -> Retargeter:
    return Retargeter(load_rig(rig), backend=backend)


def test_both_accelerated_backends_are_built_here() -> None:
    assert ACCELERATED == ["native", "numba"]


@pytest.mark.parametrize("rig", RIGS)
@pytest.mark.parametrize("backend", ACCELERATED)
@given(batch=batches)
def test_backends_match_the_numpy_reference(rig: str, backend: str, batch: np.ndarray) -> None:
    expected = stage(rig, "numpy").map(batch)
    got = stage(rig, backend).map(batch)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_rejected_and_out_untouched(backend: str, bad: float) -> None:
    s = stage("arkit52", backend)
    weights = np.full((3, 52), 0.25, dtype=np.float32)
    weights[2, ARKIT_NAMES.index("jawOpen")] = bad
    out = np.full((3, s.n_outputs), -7.0, dtype=np.float32)
    with pytest.raises(NonFiniteInputError) as info:
        s.run(weights, out)
    assert info.value.row == 2 and info.value.source_name == "jawOpen"
    assert (out == -7.0).all()


@pytest.mark.parametrize("backend", available_backends())
def test_out_of_range_inputs_are_clamped_to_morph_limits(backend: str) -> None:
    s = stage("arkit52", backend)
    weights = np.full((1, 52), 5.0, dtype=np.float32)
    weights[0, 0] = -5.0
    out = s.map(weights)
    assert out.max() <= 1.0 and out.min() >= 0.0
    assert out[0, 0] == 0.0


@pytest.mark.parametrize("backend", available_backends())
def test_exclusive_pair_blink_suppresses_wide(backend: str) -> None:
    s = stage("arkit52", backend)
    weights = np.zeros((2, 52), dtype=np.float32)
    blink, wide = ARKIT_NAMES.index("eyeBlinkLeft"), ARKIT_NAMES.index("eyeWideLeft")
    weights[0, [blink, wide]] = [1.0, 0.8]
    weights[1, [blink, wide]] = [0.25, 0.8]
    out = s.map(weights)
    rig = load_rig("arkit52")
    b, w = rig.morph_index("eyeBlinkLeft"), rig.morph_index("eyeWideLeft")
    assert out[0, b] == 1.0 and out[0, w] == 0.0
    assert out[1, b] == 0.25 and out[1, w] == pytest.approx(0.6)


@pytest.mark.parametrize("backend", available_backends())
def test_wrong_shapes_and_dtypes_are_errors_not_copies(backend: str) -> None:
    s = stage("arkit52", backend)
    with pytest.raises(ValueError):
        s.run(np.zeros((2, 51), np.float32), np.zeros((2, s.n_outputs), np.float32))
    with pytest.raises(ValueError):
        s.run(np.zeros((2, 52), np.float32), np.zeros((3, s.n_outputs), np.float32))
    with pytest.raises((TypeError, ValueError)):
        s.run(np.zeros((2, 52), np.float64), np.zeros((2, s.n_outputs), np.float32))
    with pytest.raises((TypeError, ValueError)):
        s.run(np.zeros((2, 52), np.float32), np.zeros((2, s.n_outputs), np.float64))


@pytest.mark.parametrize("backend", available_backends())
def test_empty_batch_is_fine(backend: str) -> None:
    s = stage("arkit52", backend)
    assert s.map(np.zeros((0, 52), np.float32)).shape == (0, s.n_outputs)


def test_forcing_a_backend_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_ENGINE_BACKEND", "numpy")
    assert Retargeter(load_rig("arkit52")).backend == "numpy"
    monkeypatch.setenv("AVATAR_ENGINE_BACKEND", "fortran")
    with pytest.raises(ValueError, match="unknown backend"):
        Retargeter(load_rig("arkit52"))
