"""The command line as a user runs it: a real subprocess of the installed entry point."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar_engine.formats.llf_csv import read_take
from avatar_engine.rigs.arkit import ARKIT_NAMES


def run(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("avatar-engine", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "avatar_engine.cli"]
    return subprocess.run(
        [*command, *args], check=False, capture_output=True, text=True, timeout=120
    )


def test_info_json_lists_every_backend_and_rig() -> None:
    result = run("info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert set(info) == {"version", "backends", "default_backend", "rigs"}
    assert info["backends"] == ["native", "numba", "numpy"]
    assert info["default_backend"] == "native"
    assert {"cc4-extended", "cc4-standard", "arkit52", "oculus15", "vrm1"} <= set(info["rigs"])


def test_convert_reference_take_to_cc4_json(reference_take: Path, tmp_path: Path) -> None:
    out = tmp_path / "take.json"
    result = run("convert", str(reference_take), "--rig", "cc4-extended", "-o", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert doc["rig"] == "cc4-extended" and doc["fps"] == 60
    frames = np.asarray(doc["frames"])
    take = read_take(reference_take)
    assert frames.shape[0] == len(take) and frames.shape[1] == len(doc["morphs"])
    for cc4, arkit in (("Jaw_Open", "jawOpen"), ("Eye_Blink_L", "eyeBlinkLeft")):
        curve = frames[:, doc["morphs"].index(cc4)]
        source = take.arkit[:, ARKIT_NAMES.index(arkit)]
        assert source.std() > 0.01  # the take really moves this shape
        assert np.corrcoef(curve, source)[0, 1] > 0.99
        # The take's timecodes step 1.001 frames (59.94 fps): output is resampled at 60 fps.
        grid = np.arange(frames.shape[0]) / 60.0
        expected = np.clip(np.interp(grid, take.times, source), 0, 1)
        np.testing.assert_allclose(curve, expected, atol=2e-6)
    assert set(doc["channels"]) >= {"HeadYaw", "LeftEyePitch"}
    assert len(doc["channels"]["LeftEyePitch"]) == frames.shape[0]


def test_convert_to_csv_at_another_rate(reference_take: Path, tmp_path: Path) -> None:
    out = tmp_path / "take.csv"
    result = run("convert", str(reference_take), "--rig", "cc4-extended", "--fps", "30",
                 "-o", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0][0] == "time" and "Jaw_Open" in rows[0]
    assert float(rows[3][0]) == pytest.approx(2 / 30, abs=1e-6)
    assert abs(len(rows) - 1 - len(read_take(reference_take)) / 2) <= 1


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (lambda row: row.replace("0.5", "oops", 1), "row 3, column 'EyeBlinkLeft'"),
        (lambda row: row + ",1", "row 3: 55 cells"),
    ],
)
def test_convert_bad_take_exits_2_naming_row_and_column(tmp_path: Path, cells, message) -> None:  # type: ignore[no-untyped-def]
    names = ["Timecode", "BlendShapeCount"] + [n[0].upper() + n[1:] for n in ARKIT_NAMES]
    good = ",".join(["00:00:00:01.000", "61"] + ["0.5"] * 52)
    bad = cells(good.replace("01.000", "02.000"))
    take = tmp_path / "bad.csv"
    take.write_text("\n".join([",".join(names), good, bad]) + "\n")
    result = run("convert", str(take), "-o", str(tmp_path / "o.json"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o.json").exists()


def test_convert_unknown_rig_and_bad_output_exit_2(reference_take: Path, tmp_path: Path) -> None:
    result = run("convert", str(reference_take), "--rig", "nope", "-o", str(tmp_path / "o.json"))
    assert result.returncode == 2 and "unknown rig 'nope'" in result.stderr
    result = run("convert", str(reference_take), "-o", str(tmp_path / "o.txt"))
    assert result.returncode == 2 and ".csv or .json" in result.stderr
