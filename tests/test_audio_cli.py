"""The audio branch of ``avatar-engine lipsync`` (run_audio), on the test fixture."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pocketsphinx")

from avatar_engine.cli.lipsync_audio import add_audio_argument, run_audio

WAV = Path(__file__).parent / "data" / "audio" / "fox-espeak.wav"


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_audio_argument(p)
    p.add_argument("--text")
    p.add_argument("--rig", default="cc4-extended")
    p.add_argument("--fps", type=float, default=60.0)
    p.add_argument("--ja", type=float, default=0.5)
    p.add_argument("--li", type=float, default=0.5)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--plot")
    p.add_argument("--backend")
    return p.parse_args(list(argv))


def test_one_file_to_json(tmp_path: Path) -> None:
    out = tmp_path / "fox.json"
    text = "The quick brown fox jumps over the lazy dog."
    assert run_audio(_args(str(WAV), "--text", text, "-o", str(out), "--fps", "30")) == 0
    data = json.loads(out.read_text())
    assert data  # curves written by the shared writer


def test_folder_mode_skips_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(WAV, src / "a.wav")
    (src / "a.txt").write_text("The quick brown fox jumps over the lazy dog.")
    (src / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    out = tmp_path / "out"
    assert run_audio(_args(str(src), "-o", str(out), "--format", "csv")) == 0
    assert (out / "a.csv").is_file() and not (out / "broken.csv").exists()
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.wav" in err and "3/3" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.wav", "-o", "x.json"], "no such file"),
        ([str(WAV), "-o", "x.txt"], "must end in .csv or .json"),
        ([str(WAV), "-o", "x.json", "--fps", "0"], "--fps"),
    ],
)
def test_bad_input_exits_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_audio(_args(*argv)) == 2
    assert message in capsys.readouterr().err


def test_main_cli_routes_audio(tmp_path: Path) -> None:
    """``avatar-engine lipsync AUDIO.wav ...`` through the real entry point."""
    from avatar_engine.cli import main

    out = tmp_path / "fox.csv"
    text = "The quick brown fox jumps over the lazy dog."
    assert main(["lipsync", str(WAV), "--text", text, "--fps", "30", "-o", str(out)]) == 0
    assert out.read_text().count("\n") > 60  # 2.6 s at 30 fps, plus the header
    assert main(["lipsync", str(tmp_path / "missing.wav"), "-o", str(out)]) == 2
