"""Live Link Face CSV takes: the file the iPhone app records next to its video.

Columns are mapped by header name, never by position: the CSV lists ``JawRight`` before
``JawLeft`` and ``MouthRight`` before ``MouthLeft``, unlike the UDP order. Column 0 is a
timecode ``hh:mm:ss:ff.fff`` (frame and sub-frame at the take's rate), column 1 the shape count.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from avatar_engine.rigs.arkit import ARKIT_COUNT, ROTATION_COUNT, NameBinding, UnknownNameError
from avatar_engine.types import F32, F64

DEFAULT_FPS: Final = 60.0
"""Live Link Face records at 60 fps unless set to 30; the CSV does not say which."""
MAX_TAKE_BYTES: Final = 256 * 1024 * 1024

_TIMECODE = re.compile(r"^(\d+):(\d{2}):(\d{2})[:;](\d+(?:\.\d+)?)$")
_META_COLUMNS: Final = ("timecode", "blendshapecount")


class TakeFormatError(ValueError):
    """A take that cannot be read; the message names the file, row and column."""


@dataclass(frozen=True, slots=True)
class Take:
    """A capture take as arrays: one row per frame."""

    times: F64
    """Seconds from the first frame."""
    arkit: F32
    """(N, 52) ARKit weights in canonical order."""
    rotations: F32
    """(N, 9) Live Link rotations (HeadYaw ... RightEyeRoll), in the app's units."""
    fps: float

    def __len__(self) -> int:
        return int(self.times.shape[0])


def parse_timecode(text: str, fps: float) -> float:
    """Seconds for ``hh:mm:ss:ff.fff`` (``;`` for drop-frame accepted)."""
    match = _TIMECODE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a timecode hh:mm:ss:ff.fff")
    hours, minutes, seconds, frames = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + float(frames) / fps


def read_take(path: str | Path, *, fps: float = DEFAULT_FPS) -> Take:
    """Read a Live Link Face CSV take; raises :class:`TakeFormatError` on any bad cell."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TAKE_BYTES:
            raise TakeFormatError(f"{path}: {size} bytes is larger than {MAX_TAKE_BYTES}")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise TakeFormatError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TakeFormatError(f"{path}: not UTF-8 text (is this a CSV take?)") from None
    return parse_take(text, fps=fps, source=str(path))


def parse_take(text: str, *, fps: float = DEFAULT_FPS, source: str = "<take>") -> Take:
    """Parse the text of a take (see :func:`read_take`)."""
    if not fps > 0:
        raise TakeFormatError(f"{source}: fps must be positive, got {fps}")
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        raise TakeFormatError(f"{source}: row 1: empty file, expected a header")
    header = [h.strip() for h in header]
    if header[0].lower() != "timecode":
        raise TakeFormatError(f"{source}: row 1, column 1: expected 'Timecode', got {header[0]!r}")
    value_names = [h for h in header[1:] if h.lower() not in _META_COLUMNS]
    first_value = len(header) - len(value_names)
    try:
        binding = NameBinding(value_names, on_unknown="error")
    except UnknownNameError as exc:
        raise TakeFormatError(f"{source}: row 1: {exc}") from None
    except ValueError as exc:
        raise TakeFormatError(f"{source}: row 1: {exc}") from None
    if binding.missing_arkit:
        missing = ", ".join(binding.missing_arkit)
        raise TakeFormatError(f"{source}: row 1: missing ARKit columns: {missing}")

    times: list[float] = []
    values: list[list[float]] = []
    for line_no, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise TakeFormatError(
                f"{source}: row {line_no}: {len(row)} cells, the header has {len(header)}"
            )
        try:
            times.append(parse_timecode(row[0], fps))
        except ValueError as exc:
            raise TakeFormatError(f"{source}: row {line_no}, column 'Timecode': {exc}") from None
        parsed: list[float] = []
        for col in range(first_value, len(header)):
            cell = row[col].strip()
            try:
                number = float(cell)
            except ValueError:
                raise TakeFormatError(
                    f"{source}: row {line_no}, column {header[col]!r}: {cell!r} is not a number"
                ) from None
            if not np.isfinite(number):
                raise TakeFormatError(
                    f"{source}: row {line_no}, column {header[col]!r}: {cell!r} is not finite"
                )
            parsed.append(number)
        values.append(parsed)
    if not values:
        raise TakeFormatError(f"{source}: no frames after the header")

    table = np.asarray(values, dtype=np.float32)
    arkit = np.zeros((len(values), ARKIT_COUNT), dtype=np.float32)
    arkit[:, binding.arkit_targets] = table[:, binding.arkit_columns]
    rotations = np.zeros((len(values), ROTATION_COUNT), dtype=np.float32)
    rotations[:, binding.rotation_targets] = table[:, binding.rotation_columns]
    stamps = np.asarray(times, dtype=np.float64)
    stamps -= stamps[0]
    if np.any(np.diff(stamps) < 0):
        bad = int(np.flatnonzero(np.diff(stamps) < 0)[0]) + 3
        raise TakeFormatError(f"{source}: row {bad}, column 'Timecode': time goes backwards")
    return Take(times=stamps, arkit=arkit, rotations=rotations, fps=fps)
