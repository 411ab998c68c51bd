"""The whole animate step: layer defaults, capture hand-over, emotions, sessions, parity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar_engine import load_rig
from avatar_engine.animation import Animator, coupling_pairs
from avatar_engine.kernels.backends import available_backends
from avatar_engine.rigs.arkit import ARKIT_NAMES

FPS = 60.0
DT = 1.0 / FPS
BACKENDS = available_backends()


@pytest.fixture(scope="module")
def rig():  # type: ignore[no-untyped-def]
    return load_rig("arkit52")


def _animator(rig, sessions: int = 1, backend: str = "numpy", no_vmax: bool = False) -> Animator:  # type: ignore[no-untyped-def]
    a = Animator(rig, capacity=sessions + 1, backend=backend)
    for i in range(sessions):
        a.add_session(seed=100 + i)
        if no_vmax:  # to show smoothness comes from the hand-over, not the velocity clamp
            for region in ("eye", "jaw", "mouth", "brow", "cheek", "nose", "tongue", "head"):
                a.set_max_velocity(i, region, math.inf)
    return a


def _run(a: Animator, t0: float, seconds: float, each=None) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    frames = round(seconds * FPS)
    m = np.zeros((frames, a.n_active, a.n_morphs), np.float32)
    c = np.zeros((frames, a.n_active, 9), np.float32)
    for i in range(frames):
        t = t0 + (i + 1) * DT
        if each is not None:
            each(a, t)
        a.step(t, DT)
        m[i] = a.out_m[: a.n_active]
        c[i] = a.out_c[: a.n_active]
    return m, c


def test_capture_drives_then_procedural_takes_over_without_a_jump(rig) -> None:  # type: ignore[no-untyped-def]
    pose = np.full(rig.morph_count, 0.0, np.float32)
    pose[rig.morph_index("jawOpen")] = 0.6
    pose[rig.morph_index("mouthSmileLeft")] = 0.5
    pose[rig.morph_index("browInnerUp")] = 0.4
    rot = np.array([0.2, -0.1, 0.05, 0, 0, 0, 0, 0, 0], np.float32)

    def feed(a: Animator, t: float) -> None:
        a.capture_morphs[0] = pose
        a.capture_channels[0] = rot
        a.capture_new[0] = True

    a = _animator(rig, no_vmax=True)
    twin = _animator(rig, no_vmax=True)  # same seed, never sees capture
    m, c = _run(a, 0.0, 2.0, feed)
    _run(twin, 0.0, 2.0)
    jaw = rig.morph_index("jawOpen")
    # live capture is the face (the filter passes a constant input through exactly)
    np.testing.assert_allclose(m[-1, 0, jaw], 0.6, atol=1e-4)
    np.testing.assert_allclose(c[-1, 0, :3], rot[:3], atol=1e-4)
    # capture stops: hand-over to procedural life
    m2, c2 = _run(a, 2.0, 1.0)
    mt, ct = _run(twin, 2.0, 1.0)
    steps = np.abs(np.diff(np.concatenate([m[-1:], m2]), axis=0)).max()
    assert steps < 0.05, steps  # no pop: the largest per-frame change of any morph
    assert np.abs(np.diff(np.concatenate([c[-1:], c2]), axis=0)).max() < 0.02
    done = int(0.5 * FPS)  # within 500 ms the face is procedural life's alone
    np.testing.assert_allclose(m2[done:], mt[done:], atol=1e-5)
    np.testing.assert_allclose(c2[done:], ct[done:], atol=1e-5)


def test_speech_owns_mouth_while_speaking_and_emotion_modulates(rig) -> None:  # type: ignore[no-untyped-def]
    a = _animator(rig)
    jaw, smile, brow = (rig.morph_index(n) for n in ("jawOpen", "mouthSmileLeft", "browInnerUp"))
    a.set_emotion(0, {"happy": 1.0}, transition=0.2)
    m, _ = _run(a, 0.0, 1.0)
    full_smile = float(m[-1, 0, smile])
    assert full_smile > 0.3
    a.speech_morphs[0] = 0.0
    a.speech_morphs[0, jaw] = 0.7
    a.speech_morphs[0, brow] = 0.9  # outside speech's regions: must be ignored
    a.speaking[0] = 1.0
    m, _ = _run(a, 1.0, 1.0)
    assert m[-1, 0, jaw] == pytest.approx(0.7, abs=0.02)  # breath no longer moves the jaw
    assert m[-1, 0, smile] == pytest.approx(0.5 * full_smile, abs=0.02)  # smile narrows
    assert m[-1, 0, brow] < 0.3
    a.speaking[0] = 0.0
    m, _ = _run(a, 2.0, 1.0)
    assert m[-1, 0, jaw] < 0.05 and m[-1, 0, smile] == pytest.approx(full_smile, abs=0.02)


def test_emotion_cubic_transition_hold_and_decay(rig) -> None:  # type: ignore[no-untyped-def]
    a = _animator(rig)
    smile = rig.morph_index("mouthSmileLeft")
    _run(a, 0.0, 0.5)
    a.set_emotion(0, {"happy": 0.5}, intensity=2.0, transition=0.6, hold=0.5, decay=0.4)
    m, _ = _run(a, 0.5, 2.0)
    target = float(a.emotion_map[1, smile])  # happy at weight 1.0 (0.5 x intensity 2)
    assert m[17, 0, smile] == pytest.approx(0.5 * target, abs=0.02)  # half-way at 0.3 s
    assert m[35, 0, smile] == pytest.approx(target, abs=1e-3)  # arrived at 0.6 s
    assert m[60, 0, smile] == pytest.approx(target, abs=1e-3)  # holding
    assert m[-1, 0, smile] == pytest.approx(0.0, abs=1e-3)  # decayed to neutral by 1.5 s


def test_emotion_spring_and_retarget_mid_transition(rig) -> None:  # type: ignore[no-untyped-def]
    a = _animator(rig)
    smile = rig.morph_index("mouthSmileLeft")
    a.set_emotion(0, {"happy": 1.0}, transition=0.5, easing="spring")
    m1, _ = _run(a, 0.0, 0.25)
    a.set_emotion(0, {"sad": 1.0}, transition=0.5)  # change of mind half-way
    m2, _ = _run(a, 0.25, 1.0)
    trace = np.concatenate([m1[:, 0, smile], m2[:, 0, smile]])
    assert np.abs(np.diff(trace)).max() < 0.08  # no jump at the change
    assert trace[-1] == pytest.approx(0.0, abs=1e-3)


def test_thinking_mutes_lips_and_shows_preset(rig) -> None:  # type: ignore[no-untyped-def]
    a = _animator(rig)
    jaw = rig.morph_index("jawOpen")
    a.speech_morphs[0, jaw] = 0.6
    a.speaking[0] = 1.0
    a.set_thinking(0, True)
    m, _c = _run(a, 0.0, 1.5)
    assert m[-1, 0, jaw] < 0.05  # no lip motion while thinking
    brow_down = rig.morph_index("browDownLeft")
    assert m[-1, 0, brow_down] > 0.05  # the rig's thinking preset (brow furrow)
    a.set_thinking(0, False)
    m, _ = _run(a, 1.5, 1.0)
    assert m[-1, 0, jaw] == pytest.approx(0.6, abs=0.02)


def test_manual_override_wins_per_morph(rig) -> None:  # type: ignore[no-untyped-def]
    a = _animator(rig)
    k = rig.morph_index("cheekPuff")
    a.manual_morphs[0, k] = 0.8
    a.manual_mask_m[0, k] = 1.0
    m, _ = _run(a, 0.0, 0.5)
    assert m[-1, 0, k] == pytest.approx(0.8, abs=1e-6)
    a.set_layer(0, "manual", weight=0.5)
    m, _ = _run(a, 0.5, 0.5)
    assert m[-1, 0, k] == pytest.approx(0.4, abs=1e-6)


def test_layer_modes_per_session(rig) -> None:  # type: ignore[no-untyped-def]
    a = _animator(rig, sessions=2)
    k = rig.morph_index("cheekPuff")
    for row in range(2):
        a.manual_morphs[row, k] = 0.3
        a.manual_mask_m[row, k] = 1.0
        a.set_emotion(row, {"happy": 1.0}, transition=0.01)
    a.set_layer(1, "manual", mode="additive")
    sq = rig.morph_index("cheekSquintLeft")
    a.manual_morphs[:2, sq] = 0.3
    a.manual_mask_m[:2, sq] = 1.0
    m, _ = _run(a, 0.0, 0.5)
    emo = float(a.emotion_map[1, sq])
    assert m[-1, 0, sq] == pytest.approx(0.3, abs=1e-5)  # override replaces the smile squint
    assert m[-1, 1, sq] == pytest.approx(min(emo + 0.3, 1.0), abs=1e-5)  # additive adds to it


def test_remove_session_moves_the_last_row_intact(rig) -> None:  # type: ignore[no-untyped-def]
    a = _animator(rig, sessions=3)
    solo = _animator(rig, sessions=3)
    a.set_emotion(2, {"surprised": 1.0})
    solo.set_emotion(2, {"surprised": 1.0})
    _run(a, 0.0, 0.5)
    _run(solo, 0.0, 0.5)
    assert a.remove_session(0) == 2
    m, c = _run(a, 0.5, 1.0)
    ms, cs = _run(solo, 0.5, 1.0)
    np.testing.assert_array_equal(m[:, 0], ms[:, 2])
    np.testing.assert_array_equal(c[:, 0], cs[:, 2])


def test_capture_filter_smooths_noise(rig) -> None:  # type: ignore[no-untyped-def]
    a = _animator(rig)
    g = np.random.default_rng(0)
    jaw = rig.morph_index("jawOpen")

    def feed(a: Animator, t: float) -> None:
        a.capture_morphs[0] = 0.4 + g.normal(0, 0.03, rig.morph_count).astype(np.float32)
        a.capture_new[0] = True

    m, _ = _run(a, 0.0, 3.0, feed)
    assert np.abs(np.diff(m[60:, 0, jaw], 2)).mean() < 0.2 * 0.03 * 2.0  # far below raw


def test_coupling_pairs_by_name() -> None:
    names = list(ARKIT_NAMES)
    pairs = {(names[a], names[b]) for a, b in coupling_pairs(names)}
    assert ("eyeBlinkLeft", "eyeBlinkRight") in pairs
    assert ("mouthSmileLeft", "mouthSmileRight") in pairs
    assert not any("Look" in a for a, _ in pairs)  # in/out looks mirror: never averaged
    assert ("mouthLeft", "mouthRight") not in pairs and ("jawLeft", "jawRight") not in pairs
    cc4 = ["Eye_Blink_L", "Eye_Blink_R", "Jaw_L", "Jaw_R", "Eye_L_Look_L", "Eye_R_Look_L",
           "Head_Turn_L", "Head_Turn_R", "Mouth_Upper_L", "Mouth_Upper_R", "Mouth_Smile_L",
           "Mouth_Smile_R"]  # fmt: skip
    assert [tuple(p) for p in coupling_pairs(cc4).tolist()] == [(0, 1), (10, 11)]


@pytest.mark.skipif(
    len(BACKENDS) < 2,
    reason="backend parity needs numba or the native module, and neither loads on this machine",
)
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_whole_step_backend_parity(rig, backend: str) -> None:  # type: ignore[no-untyped-def]
    runs = []
    for be in ("numpy", backend):
        a = _animator(rig, sessions=3, backend=be)
        a.set_emotion(0, {"happy": 0.7, "surprised": 0.3}, transition=0.3, easing="spring")
        a.set_emotion(1, {"angry": 1.0}, transition=0.4, hold=0.3, decay=0.5)
        a.set_thinking(2, True)
        a.set_coupling(1, 0.5)
        a.set_layer(0, "emotion", mode="max", weight=0.8)
        a.set_layer(2, "procedural", mode="multiply", mask={"mouth": 0.0})
        a.set_filter(0, ["eye"], min_cutoff=2.0, beta=1.0)
        a.look_at(1, 0.2, -0.1)
        a.manual_morphs[1, :5] = 0.7
        a.manual_mask_m[1, :5] = 0.5
        g = np.random.default_rng(1)

        def feed(a: Animator, t: float, g=g) -> None:  # type: ignore[no-untyped-def]
            a.speech_morphs[:3] = g.uniform(0, 0.5, (3, a.n_morphs)).astype(np.float32)
            a.speaking[1] = 1.0 if t < 1.0 else 0.0
            a.stress[1] = 1.0 if int(t * FPS) % 20 == 0 else 0.0
            if t < 0.8:
                a.capture_morphs[0] = g.uniform(0, 1, a.n_morphs).astype(np.float32)
                a.capture_new[0] = True

        runs.append(_run(a, 0.0, 2.0, feed))
    (m0, c0), (m1, c1) = runs
    np.testing.assert_allclose(m1, m0, atol=2e-5)
    np.testing.assert_allclose(c1, c0, atol=2e-5)


def test_growing_keeps_live_sessions_intact(rig) -> None:  # type: ignore[no-untyped-def]
    small = Animator(rig, capacity=2, backend="numpy")
    big = Animator(rig, capacity=8, backend="numpy")
    for a in (small, big):
        for i in range(2):
            a.add_session(seed=50 + i)
        a.set_emotion(1, {"happy": 1.0}, transition=0.5)
    _run(small, 0.0, 0.3)
    _run(big, 0.0, 0.3)
    for a in (small, big):
        a.add_session(seed=52)  # the small one doubles its capacity here
    assert small.capacity == 4
    small.speech_morphs[2, rig.morph_index("jawOpen")] = 0.5  # views are rebound after growth
    big.speech_morphs[2, rig.morph_index("jawOpen")] = 0.5
    small.speaking[2] = big.speaking[2] = 1.0
    ms, cs = _run(small, 0.3, 0.5)
    mb, cb = _run(big, 0.3, 0.5)
    np.testing.assert_array_equal(ms, mb)
    np.testing.assert_array_equal(cs, cb)


def test_per_morph_velocity_cap(rig) -> None:  # type: ignore[no-untyped-def]
    a = Animator(rig, capacity=1, backend="numpy", morph_max_velocity={"cheekPuff": 1.2})
    a.add_session(seed=1)
    k = rig.morph_index("cheekPuff")
    a.manual_morphs[0, k] = 1.0
    m, _ = _run(a, 0.0, 0.5)
    a.manual_mask_m[0, k] = 1.0
    m, _ = _run(a, 0.5, 0.5)
    assert np.diff(m[:, 0, k]).max() <= 1.2 / FPS + 1e-6  # 0.02 per frame, not 10/s
    assert m[-1, 0, k] == pytest.approx(0.6, abs=1e-4)  # 30 frames x 0.02


def test_baseline_change_after_decay_moves_smoothly(rig) -> None:  # type: ignore[no-untyped-def]
    a = _animator(rig)
    smile = rig.morph_index("mouthSmileLeft")
    a.set_emotion(0, {"sad": 1.0}, transition=0.2, hold=0.2, decay=0.3)
    m1, _ = _run(a, 0.0, 1.0)  # arrives, holds, decays to neutral
    a.set_baseline(0, {"happy": 1.0})  # new resting face: glide there over the decay time
    m2, _ = _run(a, 1.0, 1.0)
    trace = np.concatenate([m1[:, 0, smile], m2[:, 0, smile]])
    # a cubic 0 -> 0.6 over 0.3 s (18 frames) peaks at slope 3: 0.1 per frame; a jump is 0.6
    assert np.abs(np.diff(trace)).max() < 0.11
    assert m2[-1, 0, smile] == pytest.approx(float(a.emotion_map[1, smile]), abs=1e-3)


def test_intensity_changes_alone(rig) -> None:  # type: ignore[no-untyped-def]
    a = _animator(rig)
    smile = rig.morph_index("mouthSmileLeft")
    a.set_emotion(0, {"happy": 1.0}, intensity=0.5, transition=0.1)
    m, _ = _run(a, 0.0, 0.3)
    full = float(a.emotion_map[1, smile])
    assert m[-1, 0, smile] == pytest.approx(0.5 * full, abs=1e-4)
    a.set_intensity(0, 1.0, transition=0.1)
    m, _ = _run(a, 0.3, 0.3)
    assert m[-1, 0, smile] == pytest.approx(full, abs=1e-4)
