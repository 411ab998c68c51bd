"""``avatar-engine say``: the WAV and the curves together, batches, and exit 2 on bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar_engine.audio.wav import read_wav
from avatar_engine.cli import main
from avatar_engine.rigs.profile import load_rig


def test_say_writes_audio_and_curves_in_sync(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav, curves = tmp_path / "hi.wav", tmp_path / "hi.json"
    text = "Hello, my mother made marmalade."
    assert main(["say", text, "-o", str(wav), "--curves", str(curves), "--fps", "30"]) == 0
    assert "hi.wav" in capsys.readouterr().out
    pcm = read_wav(wav)
    assert pcm.rate == 22050 and 1.0 < pcm.duration < 5.0
    doc = json.loads(curves.read_text())
    rig = load_rig("cc4-extended")
    assert doc["rig"] == rig.name and doc["fps"] == 30.0 and doc["morphs"] == list(rig.morph_names)
    frames = np.asarray(doc["frames"])
    assert frames.shape[1] == rig.morph_count
    assert abs(frames.shape[0] / 30.0 - pcm.duration) < 0.5  # covers the audio, settles after
    # The face moves while the voice sounds and closes in the comma's silence: the curves
    # and the WAV share one time axis.
    activity = frames.sum(axis=1)
    hop = pcm.rate // 30
    n = min(frames.shape[0], pcm.samples.shape[0] // hop)
    loud = np.sqrt(np.mean(pcm.samples[: n * hop].reshape(n, hop) ** 2, axis=1))
    sounding = np.flatnonzero(loud > 0.05 * loud.max())
    inside = np.arange(sounding[0], sounding[-1])
    pause = inside[loud[inside] < 0.01 * loud.max()]
    assert pause.size >= 2, "the comma leaves a silence in the audio"
    assert activity[pause].mean() < 0.5 * np.median(activity[sounding])


def test_say_csv_curves_default_names_and_rig(tmp_path: Path) -> None:
    wav = tmp_path / "b.wav"
    assert main(["say", "Bonjour.", "--lang", "fr", "--rig", "oculus15", "-o", str(wav),
                 "--curves", str(tmp_path / "b.csv")]) == 0  # fmt: skip
    with (tmp_path / "b.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "time" and len(rows[0]) == 1 + load_rig("oculus15").morph_count
    assert main(["say", "Hi.", "-o", str(tmp_path / "c.wav")]) == 0
    assert (tmp_path / "c.json").is_file()  # --curves defaults to the WAV's name


def test_say_reads_stdin(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "avatar_engine.cli", "say", "-", "-o", str(tmp_path / "s.wav")],
        input="Read from standard input.", capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert read_wav(tmp_path / "s.wav").duration > 1.0


def test_say_batch_with_progress_and_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "lines"
    src.mkdir()
    (src / "a.txt").write_text("First line.", encoding="utf-8")
    (src / "b.txt").write_text("Second line, a little longer.", encoding="utf-8")
    (src / "c.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    (src / "d.txt").write_text("   ", encoding="utf-8")
    (src / "notes.md").write_text("ignored", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["say", "--batch", str(src), "-o", str(out), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "a.wav", "b.csv", "b.wav"]
    assert "2 texts said (2 skipped)" in captured.out
    assert "[" in captured.err and "4/4" in captured.err  # the progress bar
    assert "c.txt: " in captured.err and "not UTF-8" in captured.err
    assert "d.txt: text is empty" in captured.err
    assert read_wav(out / "b.wav").duration > read_wav(out / "a.wav").duration


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["say", "x", "-o", "x.mp3"], "output must end in .wav"),
        (["say", "x", "-o", "x.wav", "--curves", "x.txt"], "curves must end in .json or .csv"),
        (["say", "-o", "x.wav"], "give the TEXT"),
        (["say", "   ", "-o", "x.wav"], "text is empty"),
        (["say", "a" * 5001, "-o", "x.wav"], "at most 5000"),
        (["say", "x", "--lang", "zz", "-o", "x.wav"], "no voice for language 'zz'"),
        (["say", "x", "--lang", "en;rm", "-o", "x.wav"], "not a language tag"),
        (["say", "x", "--rate", "20", "-o", "x.wav"], "rate_wpm must lie in 80..450"),
        (["say", "x", "--pitch", "101", "-o", "x.wav"], "pitch must lie in 0..100"),
        (["say", "x", "--fps", "0", "-o", "x.wav"], "fps must lie in"),
        (["say", "x", "--rig", "no-such-rig", "-o", "x.wav"], "no-such-rig"),
        (["say", "x", "--voice", "piper", "-o", "x.wav"], "needs --model"),
        (["say", "x", "--model", "m.onnx", "-o", "x.wav"], "for --voice piper"),
        (["say", "--batch", "/nonexistent-folder", "-o", "out"], "not a folder"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("avatar-engine say: error: ")
    assert message in err
    assert not (tmp_path / "x.wav").exists()


def test_empty_batch_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["say", "--batch", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "no .txt files" in capsys.readouterr().err


def test_unwritable_output_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["say", "Hi.", "-o", str(tmp_path / "missing" / "x.wav")]) == 2
    assert "cannot write" in capsys.readouterr().err
