"""The built-in espeak-ng voice, for real: its phoneme events line up with its own audio."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import numpy.typing as npt
import pytest

from avatar_engine.audio.features import FeatureStage
from avatar_engine.audio.resample import resample
from avatar_engine.kernels.audio_features import PITCH
from avatar_engine.speech.g2p import UnknownLanguageError
from avatar_engine.speech.visemes import BILABIAL, SIL, VISEME_INDEX, VOWEL_VISEMES
from avatar_engine.voice import VoicedSpeech, VoiceOptions, VoiceUnavailableError, load_voice
from avatar_engine.voice import espeak as espeak_mod
from avatar_engine.voice.espeak import EspeakVoice, closure_starts

SENTENCE = "Peter picked a peck of pickled peppers, and my mother made marmalade."


@pytest.fixture(scope="module")
def voice() -> EspeakVoice:
    v = load_voice("espeak")
    assert isinstance(v, EspeakVoice)
    return v


@pytest.fixture(scope="module")
def speech(voice: EspeakVoice) -> VoicedSpeech:
    return voice.synthesize(SENTENCE, VoiceOptions())


def _db(x: npt.NDArray[np.int16], rate: int, start: float, end: float) -> float:
    """Mean power of ``x`` over [start, end) s, in dB full scale."""
    i0 = round(float(start) * rate)
    a = x[i0 : max(round(float(end) * rate), i0 + 1)]
    p = float(np.mean((a.astype(np.float64) / 32768.0) ** 2)) if a.size else 0.0
    return 10.0 * np.log10(max(p, 1e-12))


def test_result_shape(speech: VoicedSpeech) -> None:
    assert speech.samples.dtype == np.int16 and speech.samples.ndim == 1
    assert speech.rate == 22050
    assert 2.0 < speech.duration < 8.0
    assert speech.text == SENTENCE and speech.timing == "events"
    seg = speech.utterance.segments
    assert len(seg) > 30
    # The face covers the sound: first phone near the start, last ending near the end.
    assert 0.0 <= float(seg.start[0]) < 0.2
    assert abs(float(seg.end[-1]) - speech.duration) < 0.2
    assert len(speech.utterance.keys) > 0


def test_silences_fall_on_quiet_audio_and_vowels_on_loud(speech: VoicedSpeech) -> None:
    seg = speech.utterance.segments
    x, rate = speech.samples, speech.rate
    vowels = [i for i in range(len(seg)) if int(seg.viseme[i]) in VOWEL_VISEMES]
    long_enough = seg.end - seg.start > 0.05
    pauses = [i for i in range(len(seg)) if int(seg.viseme[i]) == SIL and long_enough[i]]
    assert len(pauses) >= 1, "the comma must leave a pause"
    loud = [_db(x, rate, seg.start[i], seg.end[i]) for i in vowels]
    quiet = [_db(x, rate, seg.start[i], seg.end[i]) for i in pauses]
    peak = max(loud)
    assert max(quiet) < peak - 40.0, (quiet, peak)
    # Every vowel is sounding (within 25 dB of the loudest: espeak-ng's unstressed schwas are
    # soft but never silent).
    assert min(loud) > peak - 25.0, (loud, peak)


def test_bilabial_closures_are_quiet(speech: VoicedSpeech) -> None:
    """A /p/ or /b/ starts with its closure: the lips are shut and the audio is near silent,
    then it is released into the next vowel, which is far louder."""
    seg = speech.utterance.segments
    x, rate = speech.samples, speech.rate
    checked = 0
    for i in range(1, len(seg) - 1):
        if int(seg.viseme[i]) != BILABIAL or seg.labels[i] not in ("p", "b"):
            continue
        start = float(seg.start[i])
        closure = _db(x, rate, start, start + 0.02)
        after = _db(x, rate, float(seg.start[i + 1]), float(seg.end[i + 1]))
        assert closure < after - 30.0, (seg.labels[i], start, closure, after)
        checked += 1
    assert checked >= 4


def test_closure_starts_moves_stops_back_over_digital_silence() -> None:
    audio = np.full(1000, 5000, dtype=np.int16)
    audio[400:500] = 0  # the closure before a stop released at 500
    events = [("a", 0), ("p", 500), ("a", 600)]
    assert closure_starts(events, audio, 22050) == [("a", 0), ("p", 400), ("a", 600)]
    # Never further back than the previous event, nor past the longest closure.
    audio[:500] = 0
    assert closure_starts(events, audio, 22050)[1] == ("p", 0)
    assert closure_starts(events, audio, 1000)[1] == ("p", 500 - 120)


def test_rate_and_pitch_are_per_call(voice: EspeakVoice) -> None:
    text = "The rain in Spain stays mainly in the plain."
    slow = voice.synthesize(text, VoiceOptions(rate_wpm=100))
    fast = voice.synthesize(text, VoiceOptions(rate_wpm=300))
    assert slow.duration > 2.0 * fast.duration
    # The face follows: its speech ends where the audio does, at both rates.
    for s in (slow, fast):
        assert abs(float(s.utterance.segments.end[-1]) - s.duration) < 0.2

    def median_f0(s: VoicedSpeech) -> float:
        feats = FeatureStage()(resample(s.samples.astype(np.float32) / 32768.0, s.rate))
        f0 = feats[:, PITCH]
        return float(np.median(f0[f0 > 0]))

    low = median_f0(voice.synthesize(text, VoiceOptions(pitch=10)))
    high = median_f0(voice.synthesize(text, VoiceOptions(pitch=90)))
    assert high > 1.3 * low, (low, high)


def test_languages(voice: EspeakVoice) -> None:
    fr = voice.synthesize("Bonjour tout le monde.", VoiceOptions(lang="fr"))
    assert fr.duration > 0.5 and len(fr.utterance.segments) > 5
    # Language tags select espeak-ng voices by language, so regional English works too.
    gb = voice.synthesize("Hello.", VoiceOptions(lang="en_GB")).utterance.segments.labels
    us = voice.synthesize("Hello.", VoiceOptions(lang="en")).utterance.segments.labels
    assert "əʊ" in gb and "oʊ" in us
    with pytest.raises(UnknownLanguageError, match="zz"):
        voice.synthesize("Hello.", VoiceOptions(lang="zz"))
    # A failed voice switch leaves the voice usable.
    again = voice.synthesize("Hello.", VoiceOptions())
    assert again.duration > 0.2


def test_bad_text(voice: EspeakVoice) -> None:
    with pytest.raises(ValueError, match="empty"):
        voice.synthesize("   ", VoiceOptions())
    with pytest.raises(ValueError, match="at most"):
        voice.synthesize("a" * 5001, VoiceOptions())
    # Control characters are not said, and do not break the library.
    odd = voice.synthesize("Hello\x00 there\x07.", VoiceOptions())
    assert odd.duration > 0.3


def test_threads_are_serialised(voice: EspeakVoice) -> None:
    """The server calls the voice from worker threads: concurrent calls give what one call at
    a time gives (libespeak-ng's global state is behind one lock)."""
    texts = ["One two three.", "Four five six seven.", "Eight nine ten."]
    expected = [
        voice.synthesize(t, VoiceOptions(rate_wpm=140 + 20 * i)) for i, t in enumerate(texts)
    ]
    got: dict[int, VoicedSpeech] = {}

    def run(i: int) -> None:
        for _ in range(3):
            got[i] = voice.synthesize(texts[i], VoiceOptions(rate_wpm=140 + 20 * i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, e in enumerate(expected):
        # espeak-ng varies a call's length by a few ms (its trailing pause), so compare what
        # interleaved calls would mix up: the phonemes said, and audio of the same length.
        assert got[i].utterance.segments.labels == e.utterance.segments.labels
        assert abs(got[i].duration - e.duration) < 0.05 * e.duration
        assert abs(float(got[i].utterance.segments.end[-1]) - got[i].duration) < 0.2


def test_missing_library_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(espeak_mod, "LIBRARY_SONAME", "libespeak-ng-absent.so.9")
    monkeypatch.setattr(espeak_mod.ctypes.util, "find_library", lambda _name: None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import fails
    with pytest.raises(VoiceUnavailableError, match="apt-get install espeak-ng") as info:
        espeak_mod.locate_library()
    assert info.value.voice == "espeak"


def test_pip_only_install_finds_espeakng_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("espeakng_loader")
    monkeypatch.setattr(espeak_mod, "LIBRARY_SONAME", "libespeak-ng-absent.so.9")
    monkeypatch.setattr(espeak_mod.ctypes.util, "find_library", lambda _name: None)
    where = espeak_mod.locate_library()
    assert where.data is not None and "espeakng_loader" in where.library


def test_espeakng_loader_library_speaks() -> None:
    """The library the PyPI package ships, in a process of its own (one libespeak-ng per
    process), synthesises with events as Debian's does."""
    pytest.importorskip("espeakng_loader")
    code = (
        "import espeakng_loader as e\n"
        "from avatar_engine.voice import espeak as E, VoiceOptions\n"
        "E._INSTANCE.append(E._Espeak(E.Located(str(e.get_library_path()),"
        " str(e.get_data_path()))))\n"
        "s = E.EspeakVoice().synthesize('Peter picked a pepper.', VoiceOptions())\n"
        "print(s.rate, len(s.utterance.segments), round(s.duration, 2))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    rate, n, duration = out.stdout.split()
    assert int(rate) == 22050 and int(n) > 8 and float(duration) > 0.8


def test_ipa_readings() -> None:
    """English readings apply with or without the stress mark libespeak-ng 1.52 adds; a
    symbol the IPA table lacks is read as a neutral vowel rather than dropped."""
    us, gb, fr = (espeak_mod.readings_for(v) for v in ("en-us", "en-gb", "fr"))
    assert espeak_mod.reading("ᵻ", us) == espeak_mod.reading("ᵻ", gb) == "\u026a"
    assert espeak_mod.reading("\u02c8ɜ\u02d0", us) == "\u02c8ɚ"  # r-coloured in America
    assert espeak_mod.reading("ɜ\u02d0", gb) == "ɜ\u02d0"
    assert espeak_mod.reading("ɜ\u02d0", fr) == "ɜ\u02d0"
    assert espeak_mod.reading("ʘ", us) == espeak_mod.UNKNOWN_READING
    assert espeak_mod.reading("\u02c8a", us) == "\u02c8a"


def test_french_y_is_rounded_not_the_english_glide(voice: EspeakVoice) -> None:
    """IPA ``y`` (French "tu") must not be read as ARPAbet ``Y`` (the glide of "yes")."""
    assert espeak_mod.reading("y", espeak_mod.readings_for("fr")) == "\u028f"
    seg = voice.synthesize("Tu as vu la lune.", VoiceOptions(lang="fr")).utterance.segments
    rounded = [int(v) for v, label in zip(seg.viseme, seg.labels, strict=True) if "\u028f" in label]
    assert rounded and set(rounded) == {VISEME_INDEX["U"]}


def test_face_lead_before_the_first_sample(speech: VoicedSpeech) -> None:
    keys = speech.utterance.keys
    assert 0.0 < speech.lead_s <= 0.15
    assert speech.lead_s == pytest.approx(-float(keys.times[0]))


def test_language_switch_markers_are_no_sound() -> None:
    events = [("n", 0), ("(en)", 100), ("i", 100), ("(cmn)", 300), ("", 400)]
    seg = espeak_mod.events_to_segments(events, 1000, espeak_mod.readings_for("cmn"))
    assert seg.labels == ("n", "i") and float(seg.end[-1]) == pytest.approx(0.4)
