"""The admission kernels: a batch of datagrams (and then of frames) against the senders' columns.

These loops are the reference; ``_core`` has the same three in C++
(``native/src/register_ingest.cpp``), held together by a parity test, and the receivers use
the native ones when the module is built (:func:`admission_backend`). Both run in datagram
order, one entry at a time, so a batch counts exactly as its datagrams would one by one: a
bucket entry is :meth:`TokenBucket.take <avatar_engine.ingest.limits.TokenBucket.take>` and a
frame count is :meth:`SourceStats.frames_at <avatar_engine.ingest.stats.SourceStats.frames_at>`
with one frame. Measured (docs/performance.md, 2026-12-03 session 8): the same steps as numpy
array operations cost about 140 us a batch whatever its size (a single phone's datagram ten
times its old cost), so the batch kernels are loops, and native.

``table`` is a :class:`~avatar_engine.ingest.peers.PeerTable`; the kernels read its columns
and limits by name, as every kernel family reads its state.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

import numpy as np

from avatar_engine.kernels.backends import require_native, resolve_backend
from avatar_engine.types import F64, I64, U8

ADMITTED, TOO_LARGE, NOT_HEARD, RATE_LIMITED = 0, 1, 2, 3
"""The status :func:`admit_datagrams_reference` gives each datagram."""


class AdmitDatagrams(Protocol):
    """The signature of :func:`admit_datagrams_reference` and its native twin."""

    def __call__(self, table: Any, rows: I64, sizes: I64, heard: U8, max_size: int,
                 now: float, status: U8) -> int: ...  # fmt: skip


class TakeFrames(Protocol):
    """The signature of :func:`take_frames_reference` and its native twin."""

    def __call__(self, table: Any, rows: I64, now: float, ok: U8) -> int: ...


class CountFrames(Protocol):
    """The signature of :func:`count_frames_reference` and its native twin."""

    def __call__(self, table: Any, rows: I64, now: float, window: float) -> None: ...


def _take(tokens: F64, last: F64, row: int, rate: float, burst: float, now: float) -> bool:
    """TokenBucket.take(now) on one entry of the columns ``tokens`` and ``last``."""
    elapsed = now - float(last[row])
    if elapsed > 0:
        tokens[row] = min(burst, float(tokens[row]) + elapsed * rate)
        last[row] = now
    if tokens[row] >= 1.0:
        tokens[row] -= 1.0
        return True
    return False


def admit_datagrams_reference(table: Any, rows: I64, sizes: I64, heard: U8, max_size: int,
                              now: float, status: U8) -> int:  # fmt: skip
    """Steps 1-3 of the receive path for datagram ``i`` from the sender of ``rows[i]``, in
    order: count it (``sizes[i]`` bytes, seen at ``now``, heard latest), then ``status[i]``:
    :data:`TOO_LARGE` over ``max_size`` bytes, :data:`NOT_HEARD` when ``heard[i]`` is 0,
    :data:`RATE_LIMITED` when the packet bucket is dry, else :data:`ADMITTED`. Returns how many
    were admitted."""
    admitted = 0
    for i, row in enumerate(rows.tolist()):
        table.packets[row] += 1
        table.bytes[row] += sizes[i]
        table.last_seen[row] = now
        table.used[row] = table.seq
        table.seq += 1
        if sizes[i] > max_size:
            status[i] = TOO_LARGE
        elif not heard[i]:
            status[i] = NOT_HEARD
        else:
            took = _take(table.packet_tokens, table.packet_last, row, table.packet_rate,
                         table.packet_burst, now)  # fmt: skip
            status[i] = ADMITTED if took else RATE_LIMITED
        admitted += int(status[i] == ADMITTED)
    return admitted


def take_frames_reference(table: Any, rows: I64, now: float, ok: U8) -> int:
    """One frame token per entry of ``rows``, in order: ``ok[i]`` 1 if it got one. Returns how
    many did."""
    for i, row in enumerate(rows.tolist()):
        ok[i] = _take(table.frame_tokens, table.frame_last, row, table.frame_rate,
                      table.frame_burst, now)  # fmt: skip
    return int(np.count_nonzero(ok[: len(rows)]))


def count_frames_reference(table: Any, rows: I64, now: float, window: float) -> None:
    """One delivered frame per entry of ``rows``: counted, and the sender's rate window moved
    on as ``SourceStats.frames_at(now, 1)`` does."""
    for row in rows.tolist():
        table.frames[row] += 1
        if math.isnan(table.window_start[row]):
            table.window_start[row] = now
        elapsed = now - float(table.window_start[row])
        if elapsed >= window:
            table.window_rate[row] = float(table.window_count[row]) / elapsed
            table.window_start[row] = now
            table.window_count[row] = 0
        table.window_count[row] += 1


class Admission(NamedTuple):
    """One backend's three kernels."""

    admit_datagrams: AdmitDatagrams
    take_frames: TakeFrames
    count_frames: CountFrames


REFERENCE = Admission(admit_datagrams_reference, take_frames_reference, count_frames_reference)


def admission_backend(name: str | None = None) -> Admission:
    """The kernels of a backend (``native`` when built; any other: the reference), by default
    the fastest available, as for the engine's kernels."""
    if resolve_backend(name) == "native" and hasattr(require_native(), "admit_datagrams"):
        core = require_native()
        return Admission(core.admit_datagrams, core.take_frames, core.count_frames)
    return REFERENCE
