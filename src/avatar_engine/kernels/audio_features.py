"""Per-hop audio features, batched: B analysis windows in, B feature rows out, in one call.

The caller (``avatar_engine.audio.features``) cuts a 16 kHz signal into rows of
:data:`WINDOW` samples that each *end* at a 10 ms hop boundary, gathering the rows of every
stream that advanced this tick into one ``(B, WINDOW)`` float32 matrix. Each row is analysed on
its own (no state crosses rows), which is what makes the result independent of how the audio
was chunked and lets many streams share one kernel call.

Semantics (the numpy reference below; numba and native match it, see the parity tests). With
``w`` one row (float64 inside), ``F = FRAME`` and ``H = HOP``:

* ``rms``  = sqrt(mean(w[-F:]**2)); ``peak`` = max |w[-F:]|  (the last 25 ms);
* pitch by YIN (de Cheveigne & Kawahara 2002): ``d(tau) = sum_{j<YIN_W} (w[j] - w[j+tau])**2``
  for ``tau`` in ``1..TAU_MAX``, the cumulative-mean-normalised ``d'(tau) = d(tau) * tau /
  sum_{k<=tau} d(k)``; the best lag is the first ``tau >= TAU_MIN`` with ``d' < threshold``
  followed down to its local minimum, else the global minimum over ``TAU_MIN..TAU_MAX``;
  ``periodicity = clamp(1 - d'(best), 0, 1)``; ``pitch = RATE / (best + parabolic offset)``
  when ``d'(best) < threshold`` and ``rms >= silence``, else 0;
* ``onset`` = max(0, 10*log10((Ecur + 1e-10) / (Eprev + 1e-10))) in dB, the rise in energy of
  the pre-emphasised signal (``w[i] - 0.97 w[i-1]``, which favours the bursts and frication that
  mark consonant onsets) from the previous hop ``w[-2H:-H]`` to the current one ``w[-H:]``;
* ``vad`` = 1 when ``rms >= vad_rms[row]`` (a per-row threshold, so each stream brings its own
  adaptive noise floor into the shared call), else 0.

Output columns are :data:`COLUMNS`.
"""

from __future__ import annotations

from typing import Final, NamedTuple, Protocol

import numpy as np

from avatar_engine.kernels.backends import BackendName, require_native, resolve_backend
from avatar_engine.types import F32, F64

RATE: Final = 16_000
"""Internal sample rate of every audio path (PocketSphinx's en-us model is 16 kHz)."""
HOP: Final = 160
"""10 ms at 16 kHz: one feature row per hop."""
FRAME: Final = 400
"""25 ms: the span RMS and peak are measured over (the ASR frame length)."""
WINDOW: Final = 512
"""32 ms analysis window ending at the hop boundary: YIN needs ``YIN_W + TAU_MAX`` samples."""
YIN_W: Final = 256
TAU_MIN: Final = 32
"""500 Hz: the highest pitch reported."""
TAU_MAX: Final = 256
"""62.5 Hz: the lowest pitch reported."""
PRE_EMPHASIS: Final = 0.97

COLUMNS: Final[tuple[str, ...]] = ("rms", "peak", "pitch_hz", "periodicity", "onset_db", "vad")
N_FEATURES: Final = len(COLUMNS)
RMS, PEAK, PITCH, PERIODICITY, ONSET, VAD = range(N_FEATURES)


class FeatureParams(NamedTuple):
    """Tunable constants of the kernel (all backends take the same values, by field name:
    numba as one typed argument, ``AudioFeaturePlan`` copies them once)."""

    yin_threshold: float = 0.15
    """YIN's absolute threshold on d': below it a lag counts as a period."""
    silence_rms: float = 1e-4
    """Below this RMS (-80 dBFS) no pitch is reported, whatever the periodicity."""


class FeatureKernel(Protocol):
    """A backend's compiled stage: ``(windows (B, WINDOW), vad_rms (B,), out (B, 6))``."""

    def __call__(self, windows: F32, vad_rms: F32, out: F32, /) -> None: ...


def check_buffers(windows: F32, vad_rms: F32, out: F32) -> None:
    """Shape and dtype checks shared by the Python-side backends (native checks in C++)."""
    if windows.dtype != np.float32 or vad_rms.dtype != np.float32 or out.dtype != np.float32:
        raise TypeError("windows, vad_rms and out must be float32 arrays")
    if windows.ndim != 2 or windows.shape[1] != WINDOW:
        raise ValueError(f"windows: expected shape (B, {WINDOW})")
    rows = windows.shape[0]
    if vad_rms.shape != (rows,):
        raise ValueError(f"vad_rms: expected shape ({rows},)")
    if out.shape != (rows, N_FEATURES):
        raise ValueError(f"out: expected shape ({rows}, {N_FEATURES})")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out: must be a writeable C-contiguous array")


class NumpyFeatures:
    """The reference implementation: vectorised over rows, one loop over the YIN lags."""

    def __init__(self, params: FeatureParams) -> None:
        self.params = params

    def __call__(self, windows: F32, vad_rms: F32, out: F32, /) -> None:
        check_buffers(windows, vad_rms, out)
        p = self.params
        w = windows.astype(np.float64)
        frame = w[:, WINDOW - FRAME :]
        rms = np.sqrt(np.mean(frame * frame, axis=1))
        peak = np.max(np.abs(frame), axis=1) if w.shape[0] else np.zeros(0)

        rows = w.shape[0]
        d = np.zeros((rows, TAU_MAX + 1))
        head = w[:, :YIN_W]
        for tau in range(1, TAU_MAX + 1):
            diff = head - w[:, tau : tau + YIN_W]
            d[:, tau] = np.einsum("ij,ij->i", diff, diff)
        cum = np.cumsum(d[:, 1:], axis=1)
        taus = np.arange(1, TAU_MAX + 1, dtype=np.float64)
        dn = np.ones((rows, TAU_MAX + 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            norm = np.where(cum > 0.0, d[:, 1:] * taus / np.where(cum > 0.0, cum, 1.0), 1.0)
        dn[:, 1:] = norm

        pitch = np.zeros(rows)
        periodicity = np.zeros(rows)
        for r in range(rows):  # per-row branchy search over <= 225 lags; the loop is the spec
            best = _pick_lag(dn[r], p.yin_threshold)
            dbest = dn[r, best]
            periodicity[r] = min(max(1.0 - dbest, 0.0), 1.0)
            if dbest < p.yin_threshold and rms[r] >= p.silence_rms:
                pitch[r] = RATE / (best + _parabola(dn[r], best))

        pre = w[:, 1:] - PRE_EMPHASIS * w[:, :-1]  # pre[i-1] belongs to sample i
        cur = pre[:, -HOP:]
        prev = pre[:, -2 * HOP : -HOP]
        e_cur = np.mean(cur * cur, axis=1)
        e_prev = np.mean(prev * prev, axis=1)
        onset = np.maximum(0.0, 10.0 * np.log10((e_cur + 1e-10) / (e_prev + 1e-10)))

        out[:, RMS] = rms
        out[:, PEAK] = peak
        out[:, PITCH] = pitch
        out[:, PERIODICITY] = periodicity
        out[:, ONSET] = onset
        out[:, VAD] = rms >= vad_rms.astype(np.float64)


def _pick_lag(dn: F64, threshold: float) -> int:
    """YIN step 4 for one row of d' (index = lag): see the module docstring."""
    tau = TAU_MIN
    while tau <= TAU_MAX:
        if dn[tau] < threshold:
            while tau + 1 <= TAU_MAX and dn[tau + 1] < dn[tau]:
                tau += 1
            return tau
        tau += 1
    best = TAU_MIN
    for t in range(TAU_MIN + 1, TAU_MAX + 1):
        if dn[t] < dn[best]:
            best = t
    return best


def _parabola(dn: F64, tau: int) -> float:
    """Sub-sample offset of the minimum through (tau-1, tau, tau+1), within +-0.5."""
    if tau <= 1 or tau >= TAU_MAX:
        return 0.0
    a, b, c = float(dn[tau - 1]), float(dn[tau]), float(dn[tau + 1])
    den = a - 2.0 * b + c
    if den <= 0.0:
        return 0.0
    return min(max(0.5 * (a - c) / den, -0.5), 0.5)


class NumbaFeatures:
    """The numba backend: the same loops as the C++ kernel, JIT-compiled."""

    def __init__(self, params: FeatureParams) -> None:
        from avatar_engine.kernels import _numba_audio_features

        self.params = params
        self._kernel = _numba_audio_features.features

    def __call__(self, windows: F32, vad_rms: F32, out: F32, /) -> None:
        check_buffers(windows, vad_rms, out)
        self._kernel(self.params, windows, vad_rms, out)


def _native_kernel(params: FeatureParams) -> FeatureKernel:
    plan: FeatureKernel = require_native().AudioFeaturePlan(params)
    return plan


def make_feature_kernel(
    params: FeatureParams | None = None, backend: str | None = None
) -> tuple[FeatureKernel, BackendName]:
    """Compile the feature stage for a backend (default: the fastest available)."""
    name = resolve_backend(backend)
    p = params or FeatureParams()
    if name == "native":
        return _native_kernel(p), name
    if name == "numba":
        return NumbaFeatures(p), name
    return NumpyFeatures(p), name
