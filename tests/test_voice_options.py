"""Voice options and the interface's errors: every bad value is refused with its name."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from avatar_engine.voice import (
    MAX_TEXT_CHARS,
    Voice,
    VoiceOptions,
    VoiceUnavailableError,
    check_text,
    load_voice,
)


def test_defaults() -> None:
    o = VoiceOptions()
    assert (o.lang, o.rate_wpm, o.pitch, o.fps) == ("en", 160.0, 50, 60.0)
    assert VoiceOptions(lang="pt-BR", rate_wpm=450, pitch=0, fps=1000.0).lang == "pt-BR"
    assert VoiceOptions(pitch=np.int64(7)).pitch == 7


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lang": ""}, "lang"),
        ({"lang": "en us"}, "lang"),
        ({"lang": "../../etc"}, "lang"),
        ({"lang": "x" * 40}, "lang"),
        ({"lang": 3}, "lang"),
        ({"rate_wpm": 79.9}, "rate_wpm"),
        ({"rate_wpm": 451}, "rate_wpm"),
        ({"rate_wpm": float("nan")}, "rate_wpm"),
        ({"rate_wpm": True}, "rate_wpm"),
        ({"pitch": -1}, "pitch"),
        ({"pitch": 101}, "pitch"),
        ({"pitch": 50.5}, "pitch"),
        ({"pitch": True}, "pitch"),
        ({"fps": 0.5}, "fps"),
        ({"fps": float("inf")}, "fps"),
        ({"fps": "60"}, "fps"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        VoiceOptions(**kwargs)  # type: ignore[arg-type]


def test_text_limits() -> None:
    assert check_text("Hi.") == "Hi."
    assert check_text("a" * MAX_TEXT_CHARS)
    with pytest.raises(ValueError, match=str(MAX_TEXT_CHARS)):
        check_text("a" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(ValueError, match="empty"):
        check_text(" \n\t")
    with pytest.raises(ValueError, match="string"):
        check_text(b"bytes")  # type: ignore[arg-type]


def test_load_voice() -> None:
    v = load_voice()
    assert v.name == "espeak" and isinstance(v, Voice)
    with pytest.raises(ValueError, match="unknown voice 'nope'"):
        load_voice("nope")
    with pytest.raises(ValueError, match="no options"):
        load_voice("espeak", model="x.onnx")


def test_piper_not_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)  # import fails as if not installed
    with pytest.raises(VoiceUnavailableError) as info:
        load_voice("piper", model="voice.onnx")
    message = str(info.value)
    assert message.startswith("voice 'piper' needs `pip install 'avatar-engine[piper]'`")
    assert info.value.voice == "piper"


def test_say_names_the_missing_voice_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from avatar_engine.cli import main

    monkeypatch.setitem(sys.modules, "piper", None)
    assert main(["say", "Hi.", "--voice", "piper", "--model", "v.onnx", "-o", "x.wav"]) == 2
    assert "pip install 'avatar-engine[piper]'" in capsys.readouterr().err
