"""Rational-ratio polyphase resampling to the internal 16 kHz, chunk for chunk.

One class serves offline and streaming input: a file is one big chunk followed by
:meth:`Resampler.flush`. Output sample ``n`` sits at input position ``p = n * in / out``;
it is ``sum_k x[k] * g(p - k)`` over the ``2R`` nearest input samples, with ``g`` a
Kaiser-windowed sinc low-pass below the lower Nyquist. Because ``p``'s fractional part takes
only ``L = out / gcd`` values, the filter is tabulated once per phase, and because every
output depends only on input samples (never on how they were chunked), chunk boundaries
anywhere give the same samples as one call. The latency is ``R`` input samples (under 1 ms
for the supported rates): output ``n`` is released once input ``floor(p) + R`` has arrived.

Written here rather than taken from scipy (whose ``resample_poly`` is not incremental) to keep
the core's dependencies to numpy.
"""

from __future__ import annotations

from math import gcd
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.kernels.audio_features import RATE
from avatar_engine.types import F32, F64

ZERO_CROSSINGS: Final = 12
"""Half-width of the sinc in zero crossings of the cut-off: sets steepness and cost."""
ROLLOFF: Final = 0.92
"""Cut-off as a fraction of the lower Nyquist frequency (leaves room for the transition band)."""
KAISER_BETA: Final = 8.0
BLOCK: Final = 8192
"""Outputs computed per vectorised block (bounds the temporary gather matrix)."""


class Resampler:
    """Incremental resampler from ``in_rate`` to ``out_rate`` (default: the internal 16 kHz)."""

    __slots__ = (
        "_buf",
        "_buf_start",
        "_l",
        "_m",
        "_n_next",
        "_offs",
        "_r",
        "_table",
        "_total_in",
        "in_rate",
        "out_rate",
    )  # fmt: skip

    def __init__(self, in_rate: int, out_rate: int = RATE) -> None:
        g = gcd(in_rate, out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._l = out_rate // g
        self._m = in_rate // g
        ratio = min(1.0, out_rate / in_rate) * ROLLOFF
        self._r = int(np.ceil(ZERO_CROSSINGS / ratio)) if self._l != self._m else 0
        self._offs = np.arange(-self._r + 1, self._r + 1, dtype=np.int64)
        phases = np.arange(self._l, dtype=np.float64) / self._l
        u = phases[:, None] - self._offs[None, :]  # p - k for k = floor(p) + off
        if self._r:
            win = np.kaiser(2 * self._r + 1, KAISER_BETA)
            # Evaluate the continuous window at u by linear interpolation of its samples.
            wu = np.interp(u, np.arange(-self._r, self._r + 1, dtype=np.float64), win)
            self._table: F64 = ratio * np.sinc(ratio * u) * wu
        else:
            self._table = np.ones((1, 1))
        self._buf: F64 = np.zeros(self._r, dtype=np.float64)  # the zeros before time 0
        self._buf_start = -self._r
        self._n_next = 0
        self._total_in = 0

    @property
    def latency_samples(self) -> int:
        """Input samples that must arrive after position ``p`` before output at ``p`` exists."""
        return self._r

    def push(self, x: npt.ArrayLike) -> F32:
        """Feed input samples; returns every output sample that is now fully determined."""
        arr = np.asarray(x, dtype=np.float64).reshape(-1)
        self._total_in += arr.shape[0]
        if self._l == self._m:
            return arr.astype(np.float32)
        self._buf = np.concatenate([self._buf, arr])
        return self._drain(self._buf_start + self._buf.shape[0] - 1)

    def flush(self) -> F32:
        """End of input: pad with zeros and return the remaining outputs (``ceil(N*out/in)``)."""
        if self._l == self._m:
            return np.zeros(0, dtype=np.float32)
        self._buf = np.concatenate([self._buf, np.zeros(self._r + 1)])
        n_total = -(-self._total_in * self._l // self._m)
        out = self._drain(self._buf_start + self._buf.shape[0] - 1, limit=n_total)
        return out

    def _drain(self, last: int, limit: int | None = None) -> F32:
        # Largest n with floor(n*M/L) + R <= last.
        hi = ((last - self._r + 1) * self._l - 1) // self._m + 1
        if limit is not None:
            hi = min(hi, limit)
        n0 = self._n_next
        if hi <= n0:
            return np.zeros(0, dtype=np.float32)
        pieces: list[F32] = []
        for b0 in range(n0, hi, BLOCK):
            n = np.arange(b0, min(b0 + BLOCK, hi), dtype=np.int64)
            pos = n * self._m
            base = pos // self._l
            phase = pos - base * self._l
            idx = base[:, None] + self._offs[None, :] - self._buf_start
            y = np.einsum("ij,ij->i", self._buf[idx], self._table[phase])
            pieces.append(y.astype(np.float32))
        self._n_next = hi
        keep_from = (hi * self._m) // self._l - self._r + 1  # first input the next output needs
        drop = min(keep_from - self._buf_start, self._buf.shape[0])
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return np.concatenate(pieces)


def resample(x: npt.ArrayLike, in_rate: int, out_rate: int = RATE) -> F32:
    """Resample a whole signal (offline): same samples as streaming it in any chunks."""
    r = Resampler(in_rate, out_rate)
    head = r.push(x)
    return np.concatenate([head, r.flush()])
