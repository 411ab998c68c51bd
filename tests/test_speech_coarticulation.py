"""Co-articulation rules on a sentence corpus: closure, contact, tongue-only, velocity, rate."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_engine.rigs.profile import load_rig
from avatar_engine.speech.coarticulation import (
    CHANNELS,
    JAW,
    LIPS,
    N_VISEMES,
    CoarticulationParams,
)
from avatar_engine.speech.lipsync import Utterance, from_text, min_segment_s
from avatar_engine.speech.rig import SpeechRig
from avatar_engine.speech.visemes import VISEME_INDEX
from speech_corpus import SENTENCES

FPS = 60.0
PP, FF = VISEME_INDEX["PP"], VISEME_INDEX["FF"]
TONGUE_ONLY = [VISEME_INDEX[v] for v in ("DD", "nn", "kk", "TH")]


def frames(utt: Utterance, fps: float = FPS) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(utt.keys.times[-1] * fps) + 1) / fps
    return t, utt.keys.sample(t)


@pytest.fixture(scope="module", params=[(0.5, 0.5), (0.0, 0.0), (1.0, 1.0)], ids=str)
def corpus(request: pytest.FixtureRequest) -> list[Utterance]:
    ja, li = request.param
    return [from_text(s, ja=ja, li=li, fps=FPS) for s in SENTENCES]


def _contact_frames_ok(utt: Utterance, viseme: int, level: float) -> int:
    t, ch = frames(utt)
    seg = utt.segments
    found = 0
    for v, start, end in zip(seg.viseme, seg.start, seg.end, strict=True):
        if v != viseme:
            continue
        found += 1
        inside = (t >= start) & (t <= end)
        assert inside.any(), "every contact segment spans at least one frame"
        lips = ch[inside, LIPS * N_VISEMES : (LIPS + 1) * N_VISEMES]
        assert lips[:, viseme].min() >= level, (utt.segments.labels, start)
        others = np.delete(lips, [PP, FF], axis=1)
        assert others.max() <= 1.0 - level + 1e-6  # the lips are not also open for a vowel
    return found


def test_bilabial_closure_on_corpus(corpus: list[Utterance]) -> None:
    assert sum(_contact_frames_ok(utt, PP, 0.9) for utt in corpus) > 40


def test_labiodental_contact_on_corpus(corpus: list[Utterance]) -> None:
    assert sum(_contact_frames_ok(utt, FF, 0.9) for utt in corpus) > 15


def test_closure_on_rig_morphs() -> None:
    """On CC4 the bilabial morph V_Explosive reaches >= 0.9 in every PP segment."""
    rig = SpeechRig(load_rig("cc4-extended"), backend="numpy")
    explosive = rig.rig.morph_index("V_Explosive")
    dental = rig.rig.morph_index("V_Dental_Lip")
    for s in SENTENCES:
        utt = from_text(s, fps=FPS)
        out = rig.render(utt.keys, FPS)
        t = np.arange(out.shape[0]) / FPS
        for v, start, end in zip(
            utt.segments.viseme, utt.segments.start, utt.segments.end, strict=True
        ):
            inside = (t >= start) & (t <= end)
            if v == PP:
                assert out[inside, explosive].min() >= 0.9
            if v == FF:
                assert out[inside, dental].min() >= 0.9


def test_tongue_only_visemes_do_not_drive_lips(corpus: list[Utterance]) -> None:
    for utt in corpus:
        _, ch = frames(utt)
        assert np.all(ch[:, [LIPS * N_VISEMES + v for v in TONGUE_ONLY]] == 0.0)


def test_curves_are_continuous(corpus: list[Utterance]) -> None:
    vmax = CoarticulationParams().max_velocity
    for utt in corpus:
        keys = utt.keys
        slopes = np.abs(np.diff(keys.values, axis=0)) / np.diff(keys.times)[:, None]
        assert slopes.max() <= vmax * (1 + 1e-3) + 1e-3
        _, ch = frames(utt)
        assert np.abs(np.diff(ch, axis=0)).max() <= vmax / FPS + 1e-3
        assert np.all(keys.values[0] == 0.0) and np.all(keys.values[-1] == 0.0)  # neutral ends


def test_no_segment_shorter_than_a_frame(corpus: list[Utterance]) -> None:
    for utt in corpus:
        dur = utt.segments.end - utt.segments.start
        assert dur.min() >= min_segment_s(FPS) - 1e-9


def test_rate_scales_duration() -> None:
    text = SENTENCES[0] + " " + SENTENCES[4]
    slow = from_text(text, rate_wpm=100).segments
    fast = from_text(text, rate_wpm=200).segments
    span_slow = slow.end[-1] - slow.start[0]
    span_fast = fast.end[-1] - fast.start[0]
    assert span_slow / span_fast == pytest.approx(2.0, rel=0.05)
    words = len(text.split())
    assert words / span_fast * 60 == pytest.approx(200, rel=0.25)


def test_identical_input_gives_identical_output() -> None:
    a = from_text(" ".join(SENTENCES[:5]), ja=0.3, li=0.8)
    b = from_text(" ".join(SENTENCES[:5]), ja=0.3, li=0.8)
    assert a.segments.labels == b.segments.labels
    np.testing.assert_array_equal(a.keys.times, b.keys.times)
    np.testing.assert_array_equal(a.keys.values, b.keys.values)


def test_jali_controls_scale_jaw_and_lips() -> None:
    text = "A large cat sat on a hot, wide path."
    mumble = from_text(text, ja=0.1, li=0.1).keys.values
    loud = from_text(text, ja=0.9, li=0.9).keys.values
    jaw = slice(JAW * N_VISEMES, (JAW + 1) * N_VISEMES)
    lips = [LIPS * N_VISEMES + VISEME_INDEX[v] for v in ("aa", "E", "I", "O", "U")]
    assert loud[:, jaw].max() > 1.5 * mumble[:, jaw].max()
    assert loud[:, lips].max() > 1.5 * mumble[:, lips].max()
    assert loud.shape[1] == CHANNELS


def test_rig_layers_follow_region_codes() -> None:
    from avatar_engine.speech.coarticulation import TONGUE
    from avatar_engine.speech.rig import layered_map, morph_layers

    arkit = load_rig("arkit52")
    layers = morph_layers(arkit, arkit.sparse_map("visemes", list(VISEME_INDEX)))
    assert layers[arkit.morph_index("jawOpen")] == JAW
    assert layers[arkit.morph_index("mouthPucker")] == LIPS
    assert layers[arkit.morph_index("tongueOut")] == TONGUE
    oculus = load_rig("oculus15")
    layers = morph_layers(oculus, oculus.sparse_map("visemes", list(VISEME_INDEX)))
    assert layers[oculus.morph_index("viseme_DD")] == TONGUE  # a whole tongue viseme
    assert layers[oculus.morph_index("viseme_aa")] == LIPS
    m = layered_map(arkit)
    assert m.n_inputs == CHANNELS and m.n_outputs == arkit.morph_count


@pytest.mark.parametrize(
    "rig_name", ["cc4-extended", "cc4-standard", "arkit52", "oculus15", "vrm1"]
)
def test_every_builtin_rig_speaks(rig_name: str) -> None:
    rig = SpeechRig(load_rig(rig_name), backend="numpy")
    out = rig.render(from_text("Bob moves five big boxes.").keys, FPS)
    assert out.shape[1] == rig.rig.morph_count
    assert out.max() > 0.3 and np.isfinite(out).all()


def test_jaw_control_moves_jaw_morphs_only() -> None:
    rig = SpeechRig(load_rig("arkit52"), backend="numpy")
    text = "Are you hungry? Have a large hot pasta."
    lo = rig.render(from_text(text, ja=0.1).keys, FPS)
    hi = rig.render(from_text(text, ja=0.9).keys, FPS)
    jaw = rig.rig.morph_index("jawOpen")
    pucker = rig.rig.morph_index("mouthPucker")
    assert hi[:, jaw].max() > 1.5 * lo[:, jaw].max()
    np.testing.assert_allclose(hi[:, pucker], lo[:, pucker], atol=1e-6)
