"""External timings: our phone list, Azure viseme events, Polly speech marks, word stamps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avatar_engine.speech import external
from avatar_engine.speech.external import TimingFormatError
from avatar_engine.speech.lipsync import from_segments
from avatar_engine.speech.visemes import VISEME_INDEX, VISEMES


def names(seg: external.Segments) -> list[str]:
    return [VISEMES[v] for v in seg.viseme.tolist()]


def test_phoneme_list_with_stress_ipa_and_gaps() -> None:
    seg = external.phoneme_list(
        [
            {"p": "M", "start": 0.10, "end": 0.18},
            {"p": "AA1", "start": 0.18, "end": 0.30},
            {"p": "ʃ", "start": 0.40, "end": 0.50},
            {"p": "AY1", "start": 0.50, "end": 0.70},
        ]
    )
    assert names(seg) == ["PP", "aa", "sil", "CH", "aa", "I"]
    assert seg.start[0] == pytest.approx(0.10)
    assert seg.end[-1] == pytest.approx(0.70)
    assert seg.start[-1] == pytest.approx(0.62)  # diphthong split 60/40


def test_azure_events_ticks_and_order() -> None:
    events = [
        {"visemeId": 0, "audioOffset": 0},
        {"VisemeId": 21, "AudioOffset": 1_000_000},
        {"visemeId": 2, "audioOffset": 2_000_000},
        {"visemeId": 12, "audioOffset": 3_000_000},  # h: takes the next vowel's shape
        {"visemeId": 7, "audioOffset": 3_500_000},
    ]
    seg = external.azure_events({"events": list(reversed(events))})
    assert names(seg) == ["sil", "PP", "aa", "U", "U"]
    assert seg.start[1] == pytest.approx(0.1) and seg.end[1] == pytest.approx(0.2)
    assert seg.strength[3] < 0.5  # the /h/ is weak


def test_polly_marks_json_lines() -> None:
    text = "\n".join(
        json.dumps(m)
        for m in (
            {"time": 0, "type": "sentence", "start": 0, "end": 10, "value": "Mia"},
            {"time": 6, "type": "word", "start": 0, "end": 3, "value": "Mia"},
            {"time": 6, "type": "viseme", "value": "p"},
            {"time": 80, "type": "viseme", "value": "i"},
            {"time": 160, "type": "viseme", "value": "a"},
            {"time": 300, "type": "viseme", "value": "sil"},
        )
    )
    seg = external.polly_marks(text)
    assert names(seg) == ["PP", "I", "aa", "sil"]
    assert seg.start[1] == pytest.approx(0.08)


def test_word_timestamps_spread_phones_inside_each_word() -> None:
    seg = external.word_timestamps(
        [{"word": "map", "start": 0.2, "end": 0.5}, {"word": "five", "start": 0.8, "end": 1.1}]
    )
    assert names(seg)[:3] == ["PP", "aa", "PP"]
    assert seg.start[0] == pytest.approx(0.2) and seg.end[2] == pytest.approx(0.5)
    assert "sil" in names(seg)  # the gap between the words
    assert seg.end[-1] == pytest.approx(1.1)


def test_external_timing_drives_closure_at_the_given_time() -> None:
    seg = external.azure_events(
        [{"visemeId": 2, "audioOffset": 0}, {"visemeId": 21, "audioOffset": 2_000_000},
         {"visemeId": 2, "audioOffset": 2_600_000}, {"visemeId": 0, "audioOffset": 4_000_000}]
    )  # fmt: skip
    utt = from_segments(seg)
    ch = utt.keys.sample(np.array([0.23]))
    assert ch[0, VISEME_INDEX["PP"]] >= 0.9


def test_tiny_external_segments_are_lengthened_not_flickered() -> None:
    events = [{"visemeId": v, "audioOffset": i * 30_000} for i, v in enumerate([2, 21, 2, 19, 2])]
    events.append({"visemeId": 0, "audioOffset": 2_000_000})
    utt = from_segments(external.azure_events(events), fps=60)
    dur = utt.segments.end - utt.segments.start
    assert dur.min() >= 1 / 60 - 1e-9
    assert VISEME_INDEX["PP"] in utt.segments.viseme.tolist()  # the closure survived


@pytest.mark.parametrize(
    ("parser", "data", "message"),
    [
        (external.phoneme_list, {"x": 1}, "list"),
        (external.phoneme_list, [{"p": "QQ", "start": 0, "end": 1}], "not in the table"),
        (external.phoneme_list, [{"p": "AA", "start": 1, "end": 0.5}], "before start"),
        (external.phoneme_list, [{"p": "AA", "start": "0", "end": 1}], "finite number"),
        (external.azure_events, [{"visemeId": 22, "audioOffset": 0}], "0..21"),
        (external.azure_events, [{"visemeId": 1}], "finite number"),
        (external.word_timestamps, [{"word": 3, "start": 0, "end": 1}], "string"),
    ],
)
def test_bad_timing_data_names_the_entry(parser: object, data: object, message: str) -> None:
    with pytest.raises(TimingFormatError, match=message):
        parser(data)  # type: ignore[operator]


def test_bad_polly_lines() -> None:
    with pytest.raises(TimingFormatError, match="line 2"):
        external.polly_marks('{"time": 0, "type": "viseme", "value": "p"}\n{nope')
    with pytest.raises(TimingFormatError, match="unknown Polly viseme"):
        external.polly_marks('{"time": 0, "type": "viseme", "value": "Z"}')
