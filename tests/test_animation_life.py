"""Procedural life: blink rhythm statistics, speech-aware blinking, gaze, nods, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatar_engine.animation import LifeParams, ProceduralLife
from avatar_engine.animation.procedural import PROC_ARKIT
from avatar_engine.kernels.backends import available_backends
from avatar_engine.kernels.life import LifeBuffers, LifeConsts, make_life

FPS = 60.0


def _simulate(
    sessions: int,
    seconds: float,
    *,
    in_word: object = None,
    stress_every: float = 0.0,
    seed0: int = 0,
) -> dict[str, np.ndarray]:
    """Run procedural life alone (no rig) and record blink onsets and outputs."""
    life = ProceduralLife(sessions, LifeParams())
    for row in range(sessions):
        life.start_row(row, seed0 + row, 0.0)
    zeros = np.zeros(sessions, np.float32)
    channels = np.zeros((sessions, 9), np.float32)
    stress = np.zeros(sessions, np.float32)
    words = np.zeros(sessions, np.bool_)
    frames = int(seconds * FPS)
    onsets: list[list[float]] = [[] for _ in range(sessions)]
    in_word_at_onset = 0
    blink = np.zeros((frames, sessions), np.float32)
    head_pitch = np.zeros((frames, sessions), np.float32)
    brow = np.zeros((frames, sessions), np.float32)
    count = life.blink_count.copy()
    for i in range(frames):
        t = (i + 1) / FPS
        if callable(in_word):
            words[:] = in_word(t)
        if stress_every and (i % int(stress_every * FPS) == 0):
            stress[:] = 1.0
        else:
            stress[:] = 0.0
        life.update(t, 1 / FPS, sessions, zeros, zeros, words, stress, channels)
        new = np.flatnonzero(life.blink_count != count)
        for r in new:
            onsets[r].append(t)
            in_word_at_onset += int(words[r])
        count = life.blink_count.copy()
        arkit = life.arkit(sessions)
        blink[i] = arkit[:, PROC_ARKIT.index("eyeBlinkLeft")]
        head_pitch[i] = channels[:, 1]
        brow[i] = arkit[:, PROC_ARKIT.index("browInnerUp")]
    intervals = np.concatenate([np.diff(o) for o in onsets])
    return {
        "intervals": intervals,
        "count": np.array([len(o) for o in onsets]),
        "in_word_onsets": np.array(in_word_at_onset),
        "blink": blink,
        "head_pitch": head_pitch,
        "brow": brow,
    }


@pytest.fixture(scope="module")
def ten_minutes() -> dict[str, np.ndarray]:
    return _simulate(sessions=6, seconds=600.0)


def test_blink_interval_statistics(ten_minutes: dict[str, np.ndarray]) -> None:
    """The documented rhythm (docs/expression.md): mean 3-4 s, CV 0.4-0.9, a few doubles."""
    iv = ten_minutes["intervals"]
    assert iv.size > 6 * 140  # ~170 blinks per session in 10 minutes
    mean = float(iv.mean())
    cv = float(iv.std() / mean)
    doubles = float(np.mean(iv < 0.5))
    assert 3.0 <= mean <= 4.0, mean
    assert 0.4 <= cv <= 0.9, cv
    assert 0.03 <= doubles <= 0.12, doubles
    assert iv.min() >= 0.15  # a double blink still reopens the eye between blinks


def test_blink_shape(ten_minutes: dict[str, np.ndarray]) -> None:
    b = ten_minutes["blink"][:, 0]
    assert b.max() > 0.95  # lids close fully
    closed = b > 0.5
    runs = np.diff(np.flatnonzero(np.diff(closed.astype(int)) != 0))[::2]
    # half-closed time of a 100-200 ms blink is ~50-110 ms, i.e. 2-7 frames at 60 fps
    assert runs.size > 100 and runs.min() >= 1 and runs.max() <= 8


def test_fewer_blinks_mid_word() -> None:
    """Words of 0.35 s with 0.15 s pauses: blinks move into the pauses."""
    speaking = _simulate(4, 240.0, in_word=lambda t: (t % 0.5) < 0.35)
    onsets = int(speaking["count"].sum())
    assert onsets > 200
    assert int(speaking["in_word_onsets"]) / onsets < 0.05  # ~70 % if blinks ignored words


def test_stress_events_nod_and_raise_brows() -> None:
    quiet = _simulate(4, 20.0)
    beats = _simulate(4, 20.0, stress_every=0.8)
    assert beats["brow"].max() > 0.2 and quiet["brow"].max() == 0.0
    # nods: head pitch dips below the idle motion's range
    assert beats["head_pitch"].min() < quiet["head_pitch"].min() - 0.01


def test_deterministic_and_independent_of_row() -> None:
    a = _simulate(3, 30.0, seed0=10)
    b = _simulate(3, 30.0, seed0=10)
    np.testing.assert_array_equal(a["blink"], b["blink"])
    # the session seeded 11 sits in row 1 of the first run and row 0 of this one
    c = _simulate(1, 30.0, seed0=11)
    np.testing.assert_array_equal(a["blink"][:, 1], c["blink"][:, 0])


def test_gaze_follows_look_target_and_thinking_averts() -> None:
    life = ProceduralLife(2, LifeParams())
    for row in range(2):
        life.start_row(row, row, 0.0)
    life.look[1] = (0.3, -0.1)
    life.draw_aversion(0)
    zeros = np.zeros(2, np.float32)
    thinking = np.array([1.0, 0.0], np.float32)
    channels = np.zeros((2, 9), np.float32)
    gaze = []
    for i in range(600):
        life.update(
            (i + 1) / FPS, 1 / FPS, 2, zeros, thinking, np.zeros(2, np.bool_), zeros, channels
        )
        gaze.append(life.gaze.copy())
    g = np.array(gaze[120:])  # after settling
    np.testing.assert_allclose(g[:, 1].mean(axis=0), [0.3, -0.1], atol=0.05)
    assert abs(g[:, 0, 0].mean()) > 0.1 and g[:, 0, 1].mean() > 0.05  # up and to one side
    # eyes in head + head = gaze direction (head takes part of the shift)
    np.testing.assert_allclose(channels[:, 3] + channels[:, 0], life.gaze[:, 0], atol=1e-6)


ACCEL = [b for b in available_backends() if b != "numpy"]
CONSTS = LifeConsts(1.0, 0.4, 0.5, 0.006, 0.025, 0.018, 0.01, 0.8, 0.3, 0.3, 0.75)


def _life_buffers(n: int, seed: int) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    f32 = np.float32
    t = 10.0
    blink_t0 = np.where(g.uniform(size=n) < 0.5, t - g.uniform(0, 0.3, n), -np.inf)
    shapes = {
        "blink_t0": blink_t0,
        "blink_close": g.uniform(0.03, 0.07, n),
        "blink_open": g.uniform(0.06, 0.13, n),
        "blink_value": np.zeros(n, f32),
        "breath_phase": g.uniform(0, 0.999, n),
        "breath_cycle": g.uniform(3, 5, n),
        "breath": np.zeros(n, f32),
        "wrapped": np.zeros(n, np.uint8),
        "speaking": g.uniform(0, 1, n).astype(f32),
        "thinking": g.uniform(0, 1, n).astype(f32),
    }
    for name in ("look", "fixation", "micro", "avert"):
        shapes[name] = g.normal(0, 0.1, (n, 2)).astype(f32)
    shapes["gaze_goal"] = np.zeros((n, 2), f32)
    shapes["gaze"] = g.normal(0, 0.1, (n, 2)).astype(f32)
    shapes["gaze_vel"] = g.normal(0, 1, (n, 2)).astype(f32)
    shapes["gaze_omega"] = g.uniform(50, 150, n).astype(f32)
    shapes["head_freq"] = g.uniform(0.04, 0.22, (n, 6))
    shapes["head_phase"] = g.uniform(0, 6.28, (n, 6))
    shapes["head_goal"] = np.zeros((n, 3), f32)
    shapes["head"] = g.normal(0, 0.05, (n, 3)).astype(f32)
    shapes["head_vel"] = g.normal(0, 0.5, (n, 3)).astype(f32)
    shapes["head_omega"] = g.uniform(5, 20, n).astype(f32)
    shapes["brow"] = g.uniform(0, 1, n).astype(f32)
    shapes["channels"] = np.zeros((n, 9), f32)
    shapes["features"] = np.zeros((n, 7), f32)
    return [np.ascontiguousarray(shapes[name]) for name in LifeBuffers._fields]


@pytest.mark.skipif(
    not ACCEL, reason="parity needs numba or the native module, and neither loads on this machine"
)
@pytest.mark.parametrize("backend", ACCEL)
@settings(max_examples=20)
@given(n=st.integers(1, 9), seed=st.integers(0, 2**31), dt=st.floats(1 / 240, 0.1))
def test_life_kernel_parity(backend: str, n: int, seed: int, dt: float) -> None:
    ref = _life_buffers(n, seed)
    got = [a.copy() for a in ref]
    make_life(CONSTS, "numpy")(LifeBuffers(*ref), 10.0, dt)
    make_life(CONSTS, backend)(LifeBuffers(*got), 10.0, dt)  # type: ignore[arg-type]
    for name, a, b in zip(LifeBuffers._fields, ref, got, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)
