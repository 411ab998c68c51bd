"""Speaker adaptation for the phone recogniser: feature-space MLLR (fMLLR) against PocketSphinx's
acoustic model, estimated without a transcript from the recogniser's own phones.

PocketSphinx's en-us model was trained on human speech; a voice far from it (a formant
synthesiser, a child, a bad microphone) is heard through the wrong spectral shape, and the
phone loop confuses vowels it would otherwise tell apart. fMLLR learns one affine map of the
13 static cepstra, ``c' = A c + b``, under which the decoded frames are most likely for the
model; deltas are linear in the cepstra, so they follow with the same ``A``. The recipe is
Gales (1998), "Maximum likelihood linear transformations for HMM-based speech recognition":
per-row closed-form updates of ``[A b]`` from sufficient statistics ``G_i``, ``k_i`` and the
frame count ``beta``, with the root of the row's quadratic that keeps ``det A > 0``.

* **Alignment**: every non-silent frame belongs to the codebook of the phone the phone loop
  put there. The model is phonetically tied (PTM: one 128-Gaussian codebook per base phone
  and stream), so that codebook's Gaussians, weighted by their posteriors, are the frame's
  targets; silence and fillers are left out (the map is for the voice, not the room).
* **Prior**: with a second of speech, 182 free parameters overfit (0.3 s of speech alone made
  recognition worse than none). The statistics get ``prior_frames`` frames' worth of
  pseudo-data the model itself would emit for the same posteriors: its maximum is exactly
  the identity, so little data moves the map a little and much data overrides the prior.
  Measured on the espeak-ng set (docs/lipsync-quality.md): 0.3 s of speech already helps.

Pure computation: numpy only, no decoder; :class:`~avatar_engine.audio.phones.PhoneRecognizer`
drives it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np

from avatar_engine.audio.cepstra import N_CEP
from avatar_engine.types import F32, F64, I32

STREAMS: Final = 3
"""The model scores static cepstra, deltas and delta-deltas as three 13-dimensional streams."""
VARIANCE_FLOOR: Final = 1e-2
"""Some of the model's Gaussians are unused and stored with zero variance."""
PRIOR_FRAMES: Final = 100.0
"""Weight of the identity prior in frames of speech (30-300 all score within 1 point)."""
SWEEPS: Final = 10
"""Row-by-row passes of the solver (it has converged to 1e-4 by then)."""
EM_STEPS: Final = 2
"""EM steps of :func:`fit` over one alignment (a second decode and re-alignment would add
0.5 points recognised on espeak-ng for another full decode)."""


class ModelFormatError(ValueError):
    """An acoustic model file is not in the Sphinx format this module reads."""


@dataclass(frozen=True, slots=True)
class AcousticModel:
    """The Gaussians of a PTM acoustic model: one codebook per base phone and stream."""

    phones: tuple[str, ...]
    """Base phones in codebook order."""
    means: F64
    """(codebooks, STREAMS, densities, 13)."""
    inv_var: F64
    mean_iv: F64
    """``means * inv_var``, used by every likelihood."""
    log_norm: F64
    """(codebooks, STREAMS, densities): the Gaussians' log normalisers incl. ``-mu^2/2var``."""

    def codebook(self, phone: str) -> int:
        """Codebook of an ARPAbet phone, -1 for silence, fillers and unknown names."""
        try:
            i = self.phones.index(phone)
        except ValueError:
            return -1
        return -1 if phone == "SIL" or phone.startswith("+") else i


def _read_gaussians(path: str) -> F64:
    """A Sphinx-3 binary Gaussian parameter file (``means``, ``variances``)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    start = raw.find(b"endhdr\n")
    if not raw.startswith(b"s3\n") or start < 0:
        raise ModelFormatError(f"{path}: not a Sphinx-3 parameter file")
    body = raw[start + 7 :]
    if int(np.frombuffer(body[:4], "<u4")[0]) != 0x11223344:
        raise ModelFormatError(f"{path}: big-endian parameter files are not supported")
    n_cb, n_feat, n_den = (int(v) for v in np.frombuffer(body[4:16], "<i4"))
    veclen = np.frombuffer(body[16 : 16 + 4 * n_feat], "<i4")
    if n_feat != STREAMS or not np.all(veclen == N_CEP):
        raise ModelFormatError(f"{path}: expected {STREAMS} streams of {N_CEP}, got {veclen}")
    at = 16 + 4 * n_feat
    total = int(np.frombuffer(body[at : at + 4], "<i4")[0])
    data = np.frombuffer(body[at + 4 : at + 4 + 4 * total], "<f4")
    if data.shape[0] != n_cb * n_feat * n_den * N_CEP:
        raise ModelFormatError(f"{path}: truncated")
    out: F64 = data.astype(np.float64).reshape(n_cb, n_feat, n_den, N_CEP)
    return out


def _read_base_phones(path: str) -> tuple[str, ...]:
    """Base phone names from a binary ``mdef`` (format described in the file's own header)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:4] != b"BMDF":
        raise ModelFormatError(f"{path}: not a binary model definition")
    header_len = int(np.frombuffer(raw[8:12], "<i4")[0])
    at = 12 + header_len
    n_ci = int(np.frombuffer(raw[at : at + 4], "<i4")[0])
    names = raw[at + 40 :].split(b"\0", n_ci)[:n_ci]
    return tuple(n.decode("ascii") for n in names)


@cache
def acoustic_model(model: str) -> AcousticModel:
    """The Gaussians of the PocketSphinx model in directory ``model`` (read once)."""
    means = _read_gaussians(os.path.join(model, "means"))
    var = np.maximum(_read_gaussians(os.path.join(model, "variances")), VARIANCE_FLOOR)
    phones = _read_base_phones(os.path.join(model, "mdef"))
    if len(phones) != means.shape[0]:
        raise ModelFormatError(f"{model}: {len(phones)} base phones, {means.shape[0]} codebooks")
    inv = 1.0 / var
    log_norm = -0.5 * (np.log(2.0 * np.pi * var) + means**2 * inv).sum(-1)
    return AcousticModel(phones, means, inv, means * inv, log_norm)


@dataclass(frozen=True, slots=True)
class Transform:
    """``c' = matrix @ c + bias`` on mean-normalised static cepstra."""

    matrix: F64
    bias: F64

    @staticmethod
    def identity() -> Transform:
        """The transform of a speaker not yet adapted to: cepstra pass through unchanged."""
        return Transform(np.eye(N_CEP), np.zeros(N_CEP))

    def apply(self, cepstra: F64) -> F32:
        """Map one utterance's cepstra into the acoustic model's space (float32, as the decoder
        reads them)."""
        out: F32 = (cepstra @ self.matrix.T + self.bias).astype(np.float32)
        return out


def deltas(c: F64) -> tuple[F64, F64]:
    """PocketSphinx's ``1s_c_d_dd`` streams: ``c[t+2] - c[t-2]`` and its own difference over
    ``t+1, t-1``, edge frames repeated (as for a whole utterance)."""
    t = c.shape[0]
    p = np.concatenate([np.repeat(c[:1], 3, 0), c, np.repeat(c[-1:], 3, 0)])
    d: F64 = p[5 : t + 5] - p[1 : t + 1]
    dd: F64 = (p[6 : t + 6] - p[2 : t + 2]) - (p[4 : t + 4] - p[0:t])
    return d, dd


class Adapter:
    """Sufficient statistics of decoded speech frames -> an fMLLR :class:`Transform`.

    :meth:`add` as many stretches as come (an utterance, a stream's utterances one by one),
    each with the transform it was decoded under; :meth:`solve` at any time.
    """

    def __init__(self, model: AcousticModel, prior_frames: float = PRIOR_FRAMES) -> None:
        self._m = model
        self._prior = prior_frames
        n = N_CEP + 1
        self._g = np.zeros((N_CEP, n, n))
        self._k = np.zeros((N_CEP, n))
        self._occupancy = np.zeros(model.log_norm.shape)
        """Posterior mass per Gaussian: all the prior's statistics need."""
        self.frames = 0.0
        """Speech frames accumulated so far."""

    def copy(self) -> Adapter:
        """An independent copy (the model is shared, the statistics are not)."""
        out = Adapter(self._m, self._prior)
        out._g, out._k = self._g.copy(), self._k.copy()
        out._occupancy = self._occupancy.copy()
        out.frames = self.frames
        return out

    def forget(self, keep: float) -> None:
        """Scale the statistics down to ``keep`` frames' worth if there are more (a window
        that fades old speech)."""
        if self.frames > keep:
            f = keep / self.frames
            self._g *= f
            self._k *= f
            self._occupancy *= f
            self.frames = keep

    def add(self, cepstra: F64, codebooks: I32, transform: Transform) -> None:
        """Frames of mean-normalised ``cepstra`` (T, 13) aligned to ``codebooks`` (T,), -1 for
        frames to leave out; posteriors are taken under ``transform``."""
        keep = codebooks >= 0
        if not keep.any():
            return
        m = self._m
        d, dd = deltas(cepstra)
        cb = codebooks[keep]
        a = transform.matrix
        for s, x in enumerate((cepstra[keep], d[keep], dd[keep])):
            y = x @ a.T + (transform.bias if s == 0 else 0.0)
            one = np.full((x.shape[0], 1), 1.0 if s == 0 else 0.0)
            xi = np.concatenate([x, one], axis=1)  # extended observation
            occ = np.empty_like(x)  # per frame and dimension: sum of posterior / variance
            target = np.empty_like(x)  # ... and of posterior * mean / variance
            # Frames grouped by codebook: matrix products instead of (T, 128, 13) gathers.
            for c in np.unique(cb):
                rows = cb == c
                yc = y[rows]
                ll = m.log_norm[c, s] + yc @ m.mean_iv[c, s].T
                ll -= 0.5 * (yc * yc) @ m.inv_var[c, s].T
                post = np.exp(ll - ll.max(axis=1, keepdims=True))
                post /= post.sum(axis=1, keepdims=True)
                occ[rows] = post @ m.inv_var[c, s]
                target[rows] = post @ m.mean_iv[c, s]
                self._occupancy[c, s] += post.sum(axis=0)
            self._g += np.einsum("ti,tj,td->dij", xi, xi, occ, optimize=True)
            self._k += target.T @ xi
        self.frames += float(keep.sum())

    def solve(self, start: Transform | None = None) -> Transform:
        """The transform maximising the likelihood of the frames added so far plus the prior."""
        if self.frames == 0:
            return start or Transform.identity()
        g0, k0 = self._prior_statistics()
        w = self._prior / self.frames
        g = self._g + w * g0
        k = self._k + w * k0
        beta = STREAMS * (self.frames + self._prior)
        g_inv = np.linalg.inv(g)
        s = start or Transform.identity()
        rows = np.concatenate([s.matrix, s.bias[:, None]], axis=1)
        for _ in range(SWEEPS):
            for i in range(N_CEP):
                a = rows[:, :N_CEP]
                cof = np.append(np.linalg.det(a) * np.linalg.inv(a)[:, i], 0.0)
                gi = g_inv[i]
                p_g_p = float(cof @ gi @ cof)
                p_g_k = float(cof @ gi @ k[i])
                alpha = (-p_g_k + np.sqrt(p_g_k * p_g_k + 4.0 * p_g_p * beta)) / (2.0 * p_g_p)
                rows[i] = (alpha * cof + k[i]) @ gi
        return Transform(rows[:, :N_CEP].copy(), rows[:, N_CEP].copy())

    def _prior_statistics(self) -> tuple[F64, F64]:
        """``G`` and ``k`` of the data the model itself would emit for the posteriors seen:
        each Gaussian's expected ``x x^T`` is ``mu mu^T + diag(var)``. Their maximum is the
        identity, whatever the posteriors."""
        m = self._m
        n = N_CEP + 1
        g0, k0 = np.zeros((N_CEP, n, n)), np.zeros((N_CEP, n))
        diag = np.arange(N_CEP)
        for s in range(STREAMS):
            occ = self._occupancy[:, s].reshape(-1)
            used = occ > 0
            mu = m.means[:, s].reshape(-1, N_CEP)[used]
            iv = m.inv_var[:, s].reshape(-1, N_CEP)[used]
            weight = occ[used, None] * iv  # (Gaussians, 13)
            ext = np.concatenate([mu, np.full((mu.shape[0], 1), 1.0 if s == 0 else 0.0)], 1)
            outer = (weight[:, :, None] * ext[:, None, :]).reshape(mu.shape[0], -1)
            g0 += (outer.T @ ext).reshape(N_CEP, n, n)
            g0[:, diag, diag] += weight.T @ (1.0 / iv)
            k0 += (weight * mu).T @ ext
        return g0, k0


def fit(model: AcousticModel, cepstra: F64, codebooks: I32, steps: int = EM_STEPS) -> Transform:
    """The transform for one utterance and its alignment, by EM from the identity: each step
    takes the posteriors under the previous step's transform."""
    transform = Transform.identity()
    for _ in range(steps):
        adapter = Adapter(model)
        adapter.add(cepstra, codebooks, transform)
        transform = adapter.solve(transform)
    return transform
