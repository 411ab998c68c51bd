"""Any other TTS: audio with timings, with text only (aligned) or with neither (recognised)."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_engine.audio.lipsync import AudioLipSync, frame_visemes
from avatar_engine.speech import external
from avatar_engine.voice import VoicedSpeech, VoiceOptions, load_voice, voiced_from_audio

pytest.importorskip("pocketsphinx")

TEXT = "Please call Stella and ask her to bring these things with her."


@pytest.fixture(scope="module")
def tts() -> VoicedSpeech:
    """A stand-in for another TTS: espeak-ng's audio, whose true phonemes we know."""
    return load_voice("espeak").synthesize(TEXT, VoiceOptions())


@pytest.fixture(scope="module")
def lipsync() -> AudioLipSync:
    return AudioLipSync()


def _agreement(a: VoicedSpeech, b: VoicedSpeech) -> float:
    """Share of 10 ms frames over the speech whose viseme classes agree."""
    n = int(a.duration * 100)
    fa = frame_visemes(a.utterance.segments, n)
    fb = frame_visemes(b.utterance.segments, n)
    speech = np.flatnonzero(fa != 0)
    lo, hi = int(speech[0]), int(speech[-1]) + 1
    return float(np.mean(fa[lo:hi] == fb[lo:hi]))


def test_timings_drive_the_face_as_given(tts: VoicedSpeech) -> None:
    timings = external.phoneme_list(
        [
            {"p": "HH", "start": 0.10, "end": 0.18},
            {"p": "AH0", "start": 0.18, "end": 0.30},
            {"p": "L", "start": 0.30, "end": 0.38},
            {"p": "OW1", "start": 0.38, "end": 0.60},
        ]
    )
    out = voiced_from_audio(tts.samples, tts.rate, timings=timings, text="hello", fps=30)
    assert out.timing == "timings" and out.text == "hello"
    assert out.samples is not tts.samples and np.array_equal(out.samples, tts.samples)
    seg = out.utterance.segments
    assert seg.start[0] == pytest.approx(0.10) and seg.end[-1] == pytest.approx(0.60)


def test_text_only_is_aligned(tts: VoicedSpeech, lipsync: AudioLipSync) -> None:
    out = voiced_from_audio(tts.samples, tts.rate, text=TEXT, lipsync=lipsync)
    assert out.timing.startswith("aligned:")
    # The aligner finds espeak-ng's own phonemes most of the time (docs/lipsync-quality.md
    # reports about 87 % frame agreement on this voice).
    assert _agreement(tts, out) > 0.6


def test_neither_is_recognised(tts: VoicedSpeech, lipsync: AudioLipSync) -> None:
    out = voiced_from_audio(tts.samples, tts.rate, lipsync=lipsync)
    assert out.timing.startswith("recognised:") and out.text == ""
    assert _agreement(tts, out) > 0.4


def test_silence_is_a_resting_face(lipsync: AudioLipSync) -> None:
    out = voiced_from_audio(np.zeros(16000, np.int16), 16000, lipsync=lipsync)
    assert out.timing == "recognised:silence"
    assert set(out.utterance.segments.viseme.tolist()) <= {0}


def test_bad_audio() -> None:
    with pytest.raises(ValueError, match="int16"):
        voiced_from_audio(np.zeros(100, np.float32), 16000)
    with pytest.raises(ValueError, match="sample rate"):
        voiced_from_audio(np.zeros(100, np.int16), 100)
    with pytest.raises(ValueError, match="fps"):
        voiced_from_audio(np.zeros(100, np.int16), 16000, fps=0.0)
    with pytest.raises(ValueError, match="at most"):
        voiced_from_audio(np.zeros(100, np.int16), 16000, text="a" * 6000)
