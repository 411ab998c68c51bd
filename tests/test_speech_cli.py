"""``avatar-engine lipsync`` end to end: JSON, CSV, PNG into tmp_path; exit 2 on bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from avatar_engine.cli import main
from avatar_engine.rigs.profile import load_rig


def run(*args: str) -> int:
    return main(["lipsync", *args])


def test_text_to_json(tmp_path: Path) -> None:
    out = tmp_path / "hello.json"
    assert run("--text", "Hello, Bob!", "--rig", "cc4-extended", "--fps", "30", "-o", str(out)) == 0
    doc = json.loads(out.read_text())
    rig = load_rig("cc4-extended")
    assert doc["rig"] == "cc4-extended" and doc["fps"] == 30
    assert doc["morphs"] == list(rig.morph_names)
    assert doc["channels"] == {}
    frames = np.array(doc["frames"])
    assert frames.shape[1] == rig.morph_count and frames.shape[0] > 20
    assert frames[:, rig.morph_index("V_Explosive")].max() >= 0.9


def test_text_to_csv_and_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "x.csv", tmp_path / "x.png"
    code = run("--text", "Five fine fish.", "--rig", "arkit52", "--rate", "120", "--ja", "0.8",
               "-o", str(out), "--plot", str(png))  # fmt: skip
    assert code == 0
    rows = list(csv.reader(out.open()))
    assert rows[0][0] == "time" and rows[0][1:] == list(load_rig("arkit52").morph_names)
    assert float(rows[2][0]) == pytest.approx(1 / 60, abs=1e-6)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rate_option_scales_the_output(tmp_path: Path) -> None:
    lengths = []
    for rate in ("100", "200"):
        out = tmp_path / f"r{rate}.json"
        assert run("--text", "The quick brown fox jumps over the lazy dog.", "--rate", rate,
                   "--rig", "oculus15", "-o", str(out)) == 0  # fmt: skip
        lengths.append(len(json.loads(out.read_text())["frames"]))
    assert lengths[0] / lengths[1] == pytest.approx(2.0, rel=0.15)


PHONES = [{"p": "M", "start": 0.1, "end": 0.2}, {"p": "AA1", "start": 0.2, "end": 0.4}]
AZURE = [{"visemeId": 21, "audioOffset": 1000000}, {"visemeId": 0, "audioOffset": 3000000}]
POLLY = (
    '{"time": 100, "type": "viseme", "value": "p"}\n'
    '{"time": 300, "type": "viseme", "value": "sil"}\n'
)


@pytest.mark.parametrize(
    ("flag", "content"),
    [
        ("--phonemes", json.dumps(PHONES)),
        ("--azure", json.dumps(AZURE)),
        ("--polly", POLLY),
        ("--words", json.dumps([{"word": "map", "start": 0.1, "end": 0.5}])),
    ],
)
def test_timing_files(tmp_path: Path, flag: str, content: str) -> None:
    src = tmp_path / "timing.txt"
    src.write_text(content)
    out = tmp_path / "out.json"
    assert run(flag, str(src), "--rig", "vrm1", "-o", str(out)) == 0
    assert len(json.loads(out.read_text())["frames"]) > 10


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "x.json"],  # nothing to say
        ["--text", "hi", "-o", "x.txt"],
        ["--text", "hi", "--li", "2", "-o", "x.json"],
        ["--text", "hi", "--rate", "5", "-o", "x.json"],
        ["--text", "hi", "--rig", "no-such-rig", "-o", "x.json"],
        ["--azure", "missing.json", "-o", "x.json"],
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(tmp_path / a) if a.endswith((".json", ".txt")) else a for a in args]
    assert run(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("avatar-engine lipsync: error:") and err.count("\n") == 1


def test_bad_timing_content_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bad.json"
    src.write_text('[{"visemeId": 99, "audioOffset": 0}]')
    assert run("--azure", str(src), "-o", str(tmp_path / "o.json")) == 2
    assert "azure[0]" in capsys.readouterr().err


def test_registered_on_the_main_cli(tmp_path: Path) -> None:
    from avatar_engine.cli import main as top

    out = tmp_path / "t.json"
    assert top(["lipsync", "--text", "ok", "--rig", "arkit52", "-o", str(out)]) == 0
    assert out.exists()
