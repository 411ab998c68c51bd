"""Per-10-ms audio features for clients that only want "is speaking / how loud", and the
loudness fast path of lip-sync.

:func:`hop_windows` cuts a 16 kHz signal into the kernel's analysis rows, :class:`FeatureStage`
runs the batched kernel (numpy / numba / native) over them, and :class:`LevelTracker` turns RMS
into a speaking flag and a 0..1 mouth-opening amplitude relative to the voice's own level, so
loud, quiet and clipped recordings all open the mouth the same way.

The tracker is exact under any chunking: its running reference is
``ref[h] = max_k (db[k] - decay * (h - k))`` (a peak hold that sags ``decay`` dB per hop), which
is a running maximum of ``db[k] + decay * k`` and so vectorises with
:func:`numpy.maximum.accumulate` and a carried scalar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from avatar_engine.kernels.audio_features import (
    COLUMNS,
    HOP,
    N_FEATURES,
    RATE,
    RMS,
    VAD,
    WINDOW,
    FeatureParams,
    make_feature_kernel,
)
from avatar_engine.kernels.backends import BackendName
from avatar_engine.types import B1, F32

HOP_S: Final = HOP / RATE
"""Seconds per feature row (10 ms)."""


def hop_windows(history: F32, samples: F32) -> F32:
    """Rows of :data:`WINDOW` samples ending at each complete hop of ``samples``.

    ``history`` is the ``WINDOW - HOP`` samples before ``samples`` (zeros at the start of a
    stream); ``samples`` must be a whole number of hops.
    """
    if samples.shape[0] % HOP:
        raise ValueError(f"samples: expected a multiple of {HOP}")
    if samples.shape[0] == 0:
        return np.zeros((0, WINDOW), dtype=np.float32)
    joined = np.concatenate([history, samples])
    view = np.lib.stride_tricks.sliding_window_view(joined, WINDOW)[::HOP]
    return np.ascontiguousarray(view, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class LevelParams:
    """How RMS becomes "speaking" and mouth opening."""

    floor_dbfs: float = -75.0
    """Absolute gate: quieter hops are never speech (the kernel's voice-activity threshold)."""
    range_db: float = 30.0
    """Hops this far below the running voice level are silence; the mouth opens over it."""
    decay_db_per_s: float = 3.0
    """How fast the running voice level forgets a loud passage."""
    initial_dbfs: float = -26.0
    """Voice level assumed before any audio (typical speech at -26 dBFS RMS)."""


class FeatureStage:
    """The feature kernel for one backend; construct once, call on any number of rows."""

    __slots__ = ("backend", "kernel", "params")

    def __init__(self, params: FeatureParams | None = None, backend: str | None = None) -> None:
        self.params = params or FeatureParams()
        self.kernel, self.backend = make_feature_kernel(self.params, backend)

    def run(self, windows: F32, vad_rms: F32, out: F32) -> None:
        """Analyse ``windows`` (B, WINDOW) into the caller's ``out`` (B, 6)."""
        self.kernel(windows, vad_rms, out)

    def __call__(self, samples: F32, vad_rms: float = 1e-3) -> F32:
        """Whole signal (16 kHz) -> (hops, 6) features; a trailing partial hop is dropped."""
        n = samples.shape[0] - samples.shape[0] % HOP
        windows = hop_windows(np.zeros(WINDOW - HOP, np.float32), samples[:n].astype(np.float32))
        out = np.empty((windows.shape[0], N_FEATURES), dtype=np.float32)
        self.run(windows, np.full(windows.shape[0], vad_rms, np.float32), out)
        return out


class LevelTracker:
    """Running voice level -> speaking flag and 0..1 opening, chunk-invariant (see module)."""

    __slots__ = ("_best", "_h", "params")

    def __init__(self, params: LevelParams | None = None) -> None:
        self.params = params or LevelParams()
        self._best = float(self.params.initial_dbfs)  # max of db[k] + decay*k so far
        self._h = 0

    @property
    def decay_per_hop(self) -> float:
        """How far (dB) the tracked peak may fall per feature hop (the decay rate per hop)."""
        return self.params.decay_db_per_s * HOP_S

    def update(self, features: F32) -> tuple[B1, F32]:
        """Consume feature rows in time order; returns (speaking, amplitude 0..1) per row."""
        p = self.params
        n = features.shape[0]
        db = 20.0 * np.log10(np.maximum(features[:, RMS].astype(np.float64), 1e-9))
        k = np.arange(self._h, self._h + n, dtype=np.float64)
        decay = self.decay_per_hop
        run = np.maximum.accumulate(np.concatenate([[self._best], db + decay * k]))[1:]
        ref = run - decay * k
        if n:
            self._best = float(run[-1])
        self._h += n
        rel = db - (ref - p.range_db)
        speaking = (features[:, VAD] > 0.5) & (rel > 0.0)
        amp = np.clip(rel / p.range_db, 0.0, 1.0).astype(np.float32)
        amp[~speaking] = 0.0
        return speaking, amp


def analyse(
    samples: F32, backend: str | None = None, level: LevelParams | None = None
) -> tuple[F32, B1, F32, BackendName]:
    """Offline helper: features, speaking flags and opening amplitudes for a 16 kHz signal."""
    lp = level or LevelParams()
    stage = FeatureStage(backend=backend)
    feats = stage(samples, vad_rms=float(10.0 ** (lp.floor_dbfs / 20.0)))
    speaking, amp = LevelTracker(lp).update(feats)
    return feats, speaking, amp, stage.backend


__all__ = [
    "COLUMNS",
    "HOP_S",
    "FeatureStage",
    "LevelParams",
    "LevelTracker",
    "analyse",
    "hop_windows",
]
