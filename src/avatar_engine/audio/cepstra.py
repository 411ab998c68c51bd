"""PocketSphinx's MFCC front end in numpy: 16 kHz PCM16 -> 13 cepstra per 10 ms frame.

Why compute what PocketSphinx computes itself: speaker adaptation (:mod:`.adapt`) transforms
the cepstra before the search sees them, and PocketSphinx takes features in
(``Decoder.process_cep``) but never hands its own out. Feeding our cepstra to every decode
keeps estimation and decoding on the very same numbers.

The computation follows PocketSphinx's ``fe`` (fe_sigproc.c) with the acoustic model's
``feat.params`` (filter bank edges, filter count, lifter, DCT): pre-emphasis 0.97 over the
whole signal, 410-sample Hamming windows every 160 samples, a 512-point power spectrum,
triangular unit-area mel filters with edges rounded to FFT bins, ``log(energy + 1e-4)``, the
orthonormal DCT-II, sinusoidal liftering. It matches PocketSphinx's own output to float
rounding (tests/test_audio_cepstra.py compares them through PocketSphinx's feature log),
except that PocketSphinx's spectral noise subtraction (``remove_noise``) is left out: it
changes nothing measurable on the evaluation sets and needs running state per stream.

Frames are whole windows only: frame ``i`` covers samples ``[160 i, 160 i + 410)``, so a
stream cut anywhere gives the same frames as one call (:class:`CepstraStream`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np

from avatar_engine.kernels.audio_features import RATE
from avatar_engine.types import F32, F64, I16

FRAME: Final = 410
"""Window length in samples (PocketSphinx's ``wlen`` 0.025625 s at 16 kHz)."""
SHIFT: Final = 160
"""Frame shift in samples (100 frames per second)."""
NFFT: Final = 512
PREEMPHASIS: Final = 0.97
LOG_FLOOR: Final = 1e-4
N_CEP: Final = 13


class FrontEndError(ValueError):
    """The acoustic model asks for a front end this module does not compute."""


@dataclass(frozen=True, slots=True)
class FrontEnd:
    """The model's filter bank and cepstral transform as matrices (built once per model)."""

    filters: F64
    """(n_filters, NFFT / 2 + 1) mel filter weights."""
    dct: F64
    """(N_CEP, n_filters) DCT-II, lifter folded in."""
    window: F64

    def cepstra(self, pcm: I16, prior: float = 0.0) -> F32:
        """(T, 13) cepstra of every whole window in ``pcm``; ``prior`` is the sample before
        ``pcm[0]`` (for pre-emphasis across a stream's cuts)."""
        x = pcm.astype(np.float64)
        if x.shape[0] < FRAME:
            return np.zeros((0, N_CEP), np.float32)
        y = np.empty_like(x)
        y[0] = x[0] - PREEMPHASIS * prior
        y[1:] = x[1:] - PREEMPHASIS * x[:-1]
        n = 1 + (x.shape[0] - FRAME) // SHIFT
        idx = np.arange(n)[:, None] * SHIFT + np.arange(FRAME)[None, :]
        spectrum = np.fft.rfft(y[idx] * self.window, NFFT)
        power = spectrum.real**2 + spectrum.imag**2
        out: F32 = (np.log(power @ self.filters.T + LOG_FLOOR) @ self.dct.T).astype(np.float32)
        return out


def _feat_params(model: str) -> dict[str, str]:
    """``-name value`` lines of the model's ``feat.params``."""
    out: dict[str, str] = {}
    with open(os.path.join(model, "feat.params"), encoding="ascii") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith("-"):
                out[parts[0][1:]] = parts[1]
    return out


def _mel(f: F64) -> F64:
    out: F64 = 2595.0 * np.log10(1.0 + f / 700.0)
    return out


def _mel_inverse(m: F64) -> F64:
    out: F64 = 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return out


def _filter_bank(n_filters: int, lower: float, upper: float) -> F64:
    """Triangles evenly spaced in mel, edges rounded to FFT bins, each of unit area."""
    step = RATE / NFFT
    lo, hi = _mel(np.array([lower, upper], np.float64))
    width = (hi - lo) / (n_filters + 1)
    edges = _mel_inverse(lo + width * np.arange(n_filters + 2, dtype=np.float64))
    edges = np.floor(edges / step + 0.5) * step
    hz = np.arange(NFFT // 2 + 1, dtype=np.float64) * step
    bank = np.zeros((n_filters, hz.shape[0]))
    for i in range(n_filters):
        left, centre, right = edges[i], edges[i + 1], edges[i + 2]
        inside = (hz >= left) & (hz <= right)
        inside[NFFT // 2] = False  # PocketSphinx stops before the Nyquist bin
        rise = (hz - left) / (centre - left)
        fall = (right - hz) / (right - centre)
        bank[i] = np.where(inside, np.minimum(rise, fall) * 2.0 / (right - left), 0.0)
    return bank


@cache
def front_end(model: str) -> FrontEnd:
    """The front end ``model``'s ``feat.params`` describes (cached per model directory)."""
    p = _feat_params(model)
    if p.get("transform", "dct") != "dct" or p.get("feat", "1s_c_d_dd") != "1s_c_d_dd":
        raise FrontEndError(f"unsupported front end in {model}/feat.params: {p}")
    n_filters = int(p.get("nfilt", "25"))
    lifter = float(p.get("lifter", "22"))
    i = np.arange(N_CEP, dtype=np.float64)[:, None]
    j = np.arange(n_filters, dtype=np.float64)[None, :]
    dct = np.cos(np.pi / n_filters * i * (j + 0.5)) * np.sqrt(2.0 / n_filters)
    dct[0] = np.sqrt(1.0 / n_filters)
    if lifter > 0:
        dct *= (1.0 + lifter / 2.0 * np.sin(np.arange(N_CEP) * np.pi / lifter))[:, None]
    n = np.arange(FRAME, dtype=np.float64)
    window = 0.54 - 0.46 * np.cos(2.0 * np.pi * n / (FRAME - 1))
    bank = _filter_bank(n_filters, float(p.get("lowerf", "130")), float(p.get("upperf", "6800")))
    return FrontEnd(bank, dct, window)


class CepstraStream:
    """Cepstra of a stream cut anywhere: the same frames as :meth:`FrontEnd.cepstra` of the
    whole signal. Keeps the samples of the next, still incomplete window."""

    def __init__(self, front: FrontEnd) -> None:
        self._front = front
        self._tail = np.zeros(0, np.int16)
        self._prior = 0.0

    def push(self, pcm: I16) -> F32:
        """Cepstra of every whole frame the samples so far complete; the remainder waits for the
        next push, so chunk boundaries never change the result."""
        buf = np.concatenate([self._tail, pcm.astype(np.int16)])
        out = self._front.cepstra(buf, self._prior)
        used = out.shape[0] * SHIFT
        if used:
            self._prior = float(buf[used - 1])
            self._tail = buf[used:]
        else:
            self._tail = buf
        return out
