"""Capture values held to their range, a batch of rows at a time (the Live Link receiver's
step after parsing): weights 0..1, rotations +-``MAX_ROTATION_UNITS``.

A value out of range is clamped and counted (``clamped`` in ``/stats``: not a drop, the frame
is used). :func:`clamp_rows_reference` states the contract in numpy; the native
``_core.clamp_rows`` (``native/src/register_ingest.cpp``) does the same in one pass, held to it
by a parity test. Measured in the server at 100 phones a burst: the five numpy calls of the
reference cost about 55 us of a cold burst (the process sleeps between bursts), the native
pass a few.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Final

import numpy as np

from avatar_engine.formats.rotation import MAX_ROTATION_UNITS
from avatar_engine.kernels.backends import require_native, resolve_backend
from avatar_engine.rigs.arkit import ARKIT_COUNT
from avatar_engine.types import F32, I64

CENTER: Final = np.concatenate([np.full(ARKIT_COUNT, 0.5), np.zeros(9)]).astype(np.float32)
"""The middle of each value's range: 52 weights, then 9 rotations."""
HALF: Final = np.concatenate([np.full(ARKIT_COUNT, 0.5), np.full(9, MAX_ROTATION_UNITS)]).astype(
    np.float32
)
"""Half of each value's range."""

ClampRows = Callable[[F32, F32, F32, I64], int]


def clamp_rows_reference(values: F32, center: F32, half: F32, counts: I64) -> int:
    """Hold the rows of ``values`` (n, width) to ``center +- half`` in place: ``counts[i]``
    becomes the number of values of row ``i`` out of range (``|v - center| > half`` in
    float32; NaN never is) and the total is returned; when it is not 0, every value is clipped
    to ``[center - half, center + half]`` (``np.clip``: NaN stays NaN). Rows a parser refused
    may hold anything; they are checked too (and dropped by the caller), without a warning."""
    with np.errstate(invalid="ignore"):
        out = np.abs(values - center) > half
        counts[: len(values)] = np.count_nonzero(out, axis=1)
        total = int(counts[: len(values)].sum())
        if total:
            np.clip(values, center - half, center + half, out=values)
    return total


@cache
def range_check_backend(name: str | None = None) -> ClampRows:
    """The clamp pass of a backend (``native`` when built; any other: the reference), by
    default the fastest available, as for the engine's kernels."""
    if resolve_backend(name) == "native" and hasattr(require_native(), "clamp_rows"):
        native: ClampRows = require_native().clamp_rows
        return native
    return clamp_rows_reference
