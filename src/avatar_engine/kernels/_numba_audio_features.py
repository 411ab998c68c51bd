"""numba JIT of the audio feature loops; imported only when the numba backend is chosen.

Mirrors ``native/include/avatar_engine/audio_features.hpp`` loop for loop; the semantics are
those of ``NumpyFeatures`` in ``audio_features.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

WINDOW = 512
FRAME = 400
HOP = 160
YIN_W = 256
TAU_MIN = 32
TAU_MAX = 256
RATE = 16000.0
PRE = 0.97


@numba.njit(cache=True, nogil=True)
def _row(w: np.ndarray, vad: float, out: np.ndarray, thr: float, silence: float) -> None:
    acc = 0.0
    peak = 0.0
    for i in range(WINDOW - FRAME, WINDOW):
        v = np.float64(w[i])
        acc += v * v
        a = abs(v)
        peak = max(peak, a)
    rms = math.sqrt(acc / FRAME)

    # Lag loop innermost (vectorises); each d[tau] still sums over j in order.
    wd = w.astype(np.float64)
    d = np.zeros(TAU_MAX + 1)
    for j in range(YIN_W):
        a = wd[j]
        for tau in range(1, TAU_MAX + 1):
            diff = a - wd[j + tau]
            d[tau] += diff * diff
    dn = np.empty(TAU_MAX + 1)
    dn[0] = 1.0
    cum = 0.0
    for tau in range(1, TAU_MAX + 1):
        s = d[tau]
        cum += s
        dn[tau] = s * tau / cum if cum > 0.0 else 1.0

    best = -1
    tau = TAU_MIN
    while tau <= TAU_MAX:
        if dn[tau] < thr:
            while tau + 1 <= TAU_MAX and dn[tau + 1] < dn[tau]:
                tau += 1
            best = tau
            break
        tau += 1
    if best < 0:
        best = TAU_MIN
        for t in range(TAU_MIN + 1, TAU_MAX + 1):
            if dn[t] < dn[best]:
                best = t
    dbest = dn[best]
    period = min(max(1.0 - dbest, 0.0), 1.0)
    pitch = 0.0
    if dbest < thr and rms >= silence:
        off = 0.0
        if 1 < best < TAU_MAX:
            a = dn[best - 1]
            b = dn[best]
            c = dn[best + 1]
            den = a - 2.0 * b + c
            if den > 0.0:
                off = min(max(0.5 * (a - c) / den, -0.5), 0.5)
        pitch = RATE / (best + off)

    e_cur = 0.0
    e_prev = 0.0
    for i in range(WINDOW - HOP, WINDOW):
        y = np.float64(w[i]) - PRE * np.float64(w[i - 1])
        e_cur += y * y
    for i in range(WINDOW - 2 * HOP, WINDOW - HOP):
        y = np.float64(w[i]) - PRE * np.float64(w[i - 1])
        e_prev += y * y
    e_cur /= HOP
    e_prev /= HOP
    onset = max(0.0, 10.0 * math.log10((e_cur + 1e-10) / (e_prev + 1e-10)))

    out[0] = rms
    out[1] = peak
    out[2] = pitch
    out[3] = period
    out[4] = onset
    out[5] = 1.0 if rms >= vad else 0.0


@numba.njit(cache=True, nogil=True)
def features(params: Any, windows: np.ndarray, vad_rms: np.ndarray, out: np.ndarray) -> None:
    """``params``: a FeatureParams (NamedTuple, read by field name)."""
    thr, silence = params.yin_threshold, params.silence_rms
    for r in range(windows.shape[0]):
        _row(windows[r], np.float64(vad_rms[r]), out[r], thr, silence)
