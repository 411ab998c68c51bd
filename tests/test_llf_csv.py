from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_engine.formats.llf_csv import TakeFormatError, parse_take, read_take
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES


def header_and_first_row(path: Path) -> tuple[list[str], list[str]]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), lines[1].split(",")


def test_reference_take_maps_columns_by_name(reference_take: Path) -> None:
    take = read_take(reference_take)
    header, row = header_and_first_row(reference_take)
    assert take.arkit.shape == (len(take), 52) and take.rotations.shape == (len(take), 9)
    assert len(take) == 328 and take.times[0] == 0.0
    # The CSV lists JawRight before JawLeft: values must land by name, not by position.
    for csv_name, canonical in (
        ("JawLeft", "jawLeft"),
        ("JawRight", "jawRight"),
        ("MouthLeft", "mouthLeft"),
        ("EyeBlinkLeft", "eyeBlinkLeft"),
    ):
        expected = float(row[header.index(csv_name)])
        assert take.arkit[0, ARKIT_NAMES.index(canonical)] == pytest.approx(expected)
    expected = float(row[header.index("LeftEyePitch")])
    assert take.rotations[0, ROTATION_NAMES.index("LeftEyePitch")] == pytest.approx(expected)
    assert np.all(np.diff(take.times) > 0)


def make_csv(rows: list[str], header: str | None = None) -> str:
    names = ["Timecode", "BlendShapeCount"] + [n[0].upper() + n[1:] for n in ARKIT_NAMES]
    return "\n".join([header or ",".join(names), *rows]) + "\n"


def good_row(tc: str = "00:00:01:02.000") -> str:
    return ",".join([tc, "61"] + ["0.5"] * 52)


def test_a_minimal_take_without_rotation_columns() -> None:
    take = parse_take(make_csv([good_row(), good_row("00:00:01:03.000")]))
    assert len(take) == 2 and take.times[1] == pytest.approx(1 / 60)
    assert (take.rotations == 0).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "row 1"),
        (make_csv([good_row().replace("0.5", "abc", 1)]), "row 2, column 'EyeBlinkLeft'"),
        (make_csv([good_row().replace("0.5", "nan", 1)]), "not finite"),
        (make_csv([good_row() + ",0.1"]), "row 2: 55 cells"),
        (make_csv([good_row("yesterday")]), "column 'Timecode'"),
        (make_csv([good_row(), good_row("00:00:00:00.000")]), "row 3, column 'Timecode'"),
        (make_csv([]), "no frames"),
        (make_csv([good_row()], header="Timecode,BlendShapeCount,EyeBlinkLeft"), "missing ARKit"),
        (make_csv([good_row()], header="Timecode,Wat," + ",".join(ARKIT_NAMES)), "unknown"),
    ],
)
def test_bad_takes_name_the_row_and_column(text: str, message: str) -> None:
    with pytest.raises(TakeFormatError, match=message):
        parse_take(text, source="t.csv")


def test_unreadable_file_is_a_take_error(tmp_path: Path) -> None:
    with pytest.raises(TakeFormatError, match="cannot read"):
        read_take(tmp_path / "missing.csv")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TakeFormatError):
        read_take(binary)
