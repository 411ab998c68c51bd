"""Morph-curve files: what ``convert`` and ``lipsync`` write for DCC tools and game engines.

Two formats, chosen by the output's extension:

- CSV: header ``time,<morph names>``, one row per frame (morph curves only);
- JSON: ``{"rig", "fps", "morphs": [...], "frames": [[...], ...], "channels": {name: [...]}}``
  where ``frames[i][j]`` is morph ``j`` at time ``i / fps`` and channels are the head/eye
  rotations, one list per channel, sampled on the same frames.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatar_engine.types import F32, F64

DECIMALS = 6
"""Written precision: 1e-6 is far below what a 16-bit morph target can show."""


@dataclass(frozen=True, slots=True)
class MorphCurves:
    """Uniformly sampled morph curves for one rig."""

    rig: str
    fps: float
    morph_names: Sequence[str]
    frames: F32
    """(N, M) morph values at times ``i / fps``."""
    channels: Mapping[str, F32] = field(default_factory=dict)
    """Channel name -> (N,) values."""

    def __post_init__(self) -> None:
        if self.frames.ndim != 2 or self.frames.shape[1] != len(self.morph_names):
            raise ValueError("frames must be (N, len(morph_names))")
        for name, values in self.channels.items():
            if values.shape != (self.frames.shape[0],):
                raise ValueError(f"channel {name!r} must have one value per frame")


def resample_uniform(times: F64, values: F32, fps: float) -> F32:
    """Linearly resample rows taken at ``times`` onto a uniform ``fps`` grid from time 0."""
    if times.shape[0] != values.shape[0]:
        raise ValueError("one time per row is required")
    count = int(np.floor(float(times[-1]) * fps + 1e-9)) + 1
    grid = np.arange(count, dtype=np.float64) / fps
    out = np.empty((count, values.shape[1]), dtype=np.float32)
    for col in range(values.shape[1]):  # offline conversion, not a per-tick path
        out[:, col] = np.interp(grid, times, values[:, col])
    return out


def write_curves(curves: MorphCurves, path: str | Path) -> None:
    """Write CSV or JSON according to the extension of ``path``."""
    path = Path(path)
    suffix = path.suffix.lower()
    frames = np.round(curves.frames.astype(np.float64), DECIMALS)
    if suffix == ".csv":
        times = np.round(np.arange(frames.shape[0]) / curves.fps, DECIMALS)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["time", *curves.morph_names])
            for t, row in zip(times.tolist(), frames.tolist(), strict=True):
                writer.writerow([t, *row])
    elif suffix == ".json":
        document = {
            "rig": curves.rig,
            "fps": curves.fps,
            "morphs": list(curves.morph_names),
            "frames": frames.tolist(),
            "channels": {
                name: np.round(values.astype(np.float64), DECIMALS).tolist()
                for name, values in curves.channels.items()
            },
        }
        path.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
    else:
        raise ValueError(f"{path}: output must end in .csv or .json")
