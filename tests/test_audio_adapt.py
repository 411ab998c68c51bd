"""fMLLR speaker adaptation (audio/adapt.py) on PocketSphinx's own acoustic model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from avatar_engine.audio.adapt import (
    Adapter,
    ModelFormatError,
    Transform,
    acoustic_model,
    deltas,
    fit,
)
from avatar_engine.audio.lipsync import to_internal
from avatar_engine.audio.phones import DecoderConfig, PhoneRecognizer, model_dir
from avatar_engine.audio.wav import read_wav

MODEL = os.path.join(model_dir(), "en-us")
WAV = Path(__file__).parent / "data" / "audio" / "fox-espeak.wav"


def _log_likelihood(x: np.ndarray, codebooks: np.ndarray, t: Transform) -> float:
    """Mean per-frame log-likelihood of the static stream under each frame's codebook."""
    m = acoustic_model(MODEL)
    y = t.apply(x).astype(np.float64)
    mu, iv = m.means[codebooks, 0], m.inv_var[codebooks, 0]
    ll = m.log_norm[codebooks, 0] + np.einsum("td,tmd->tm", y, mu * iv)
    ll -= 0.5 * np.einsum("td,tmd->tm", y * y, iv)
    top = ll.max(axis=1)
    return float(np.mean(top + np.log(np.exp(ll - top[:, None]).sum(axis=1))))


def _model_frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Static cepstra drawn from the model's own Gaussians (vowel codebooks), held for a few
    frames each like phones, so the delta streams look like speech too."""
    m = acoustic_model(MODEL)
    rng = np.random.default_rng(seed)
    books = np.array([m.codebook(p) for p in ("AA", "IY", "UW", "EH", "S", "M")])
    cb = np.repeat(rng.choice(books, n // 8 + 1), 8)[:n]
    dens = rng.integers(0, m.means.shape[2], n)
    mu = m.means[cb, 0, dens]
    sd = 1.0 / np.sqrt(m.inv_var[cb, 0, dens])
    return mu + sd * rng.standard_normal(mu.shape), cb.astype(np.int32)


def test_model_is_read_with_its_phone_set() -> None:
    m = acoustic_model(MODEL)
    assert m.means.shape == (len(m.phones), 3, 128, 13)
    assert m.codebook("AA") >= 0 and m.codebook("ZH") >= 0
    assert m.codebook("SIL") == -1 and m.codebook("+NSN+") == -1 and m.codebook("XX") == -1
    assert np.all(np.isfinite(m.log_norm))


def test_unreadable_model_file_is_refused(tmp_path: Path) -> None:
    for name in ("means", "variances", "mdef"):
        (tmp_path / name).write_bytes(b"not a model")
    with pytest.raises(ModelFormatError):
        acoustic_model(str(tmp_path))


def test_no_frames_means_no_change() -> None:
    a = Adapter(acoustic_model(MODEL))
    t = a.solve()
    np.testing.assert_array_equal(t.matrix, np.eye(13))
    a.add(np.zeros((10, 13)), np.full(10, -1, np.int32), t)  # silence only: left out
    assert a.frames == 0


def test_frames_the_model_expects_leave_the_identity() -> None:
    """On data drawn from the model itself, the prior and the data agree: no transform."""
    x, cb = _model_frames(4000)
    a = Adapter(acoustic_model(MODEL))
    a.add(x, cb, Transform.identity())
    t = a.solve()
    # (Not exactly: these frames' deltas are not quite the model's.)
    assert np.abs(t.matrix - np.eye(13)).max() < 0.25
    assert np.abs(t.bias).max() < 1.0


def test_a_channel_offset_is_undone_and_likelihood_rises() -> None:
    """A constant cepstral offset (a channel's colour) moves the static stream only; the
    transform learns to take it back and the frames become more likely under the model."""
    x, cb = _model_frames(4000, seed=1)
    offset = np.zeros(13)
    offset[1], offset[2] = 6.0, -4.0
    shifted = x + offset
    t = fit(acoustic_model(MODEL), shifted, cb, steps=3)  # EM from the identity
    recovered = t.apply(shifted) - x
    assert np.abs(recovered.mean(axis=0)[1:3]).max() < 1.5
    before = _log_likelihood(shifted, cb, Transform.identity())
    assert _log_likelihood(shifted, cb, t) > before + 1.0


def test_little_speech_moves_the_transform_little() -> None:
    """The prior: 30 frames cannot pull the map far (without it they overfit wildly)."""
    x, cb = _model_frames(4000, seed=2)
    skewed = x * 1.3 + 2.0
    short, full = Adapter(acoustic_model(MODEL)), Adapter(acoustic_model(MODEL))
    short.add(skewed[:30], cb[:30], Transform.identity())
    full.add(skewed, cb, Transform.identity())
    move = np.abs(short.solve().matrix - np.eye(13)).max()
    assert move < np.abs(full.solve().matrix - np.eye(13)).max()
    assert move < 0.3


def test_forget_and_copy() -> None:
    x, cb = _model_frames(400, seed=3)
    a = Adapter(acoustic_model(MODEL))
    a.add(x, cb, Transform.identity())
    b = a.copy()
    a.forget(100)
    assert a.frames == 100 and b.frames == 400
    np.testing.assert_allclose(a.solve().matrix, a.solve().matrix)


def test_deltas_follow_pocketsphinx_definition() -> None:
    c = np.arange(10, dtype=np.float64)[:, None] * np.ones((1, 13))
    d, dd = deltas(c)
    assert d[5, 0] == 4.0  # c[t+2] - c[t-2] on a ramp
    assert dd[5, 0] == 0.0
    assert d[0, 0] == 2.0  # edges repeat the first frame


def test_adaptation_recovers_a_muffled_recording() -> None:
    """A recording through a strong low-pass (a muffled channel) loses phones; adapting to it
    gets back a good part of what the clean recording gives."""
    clean_audio = to_internal(read_wav(WAV))
    x = clean_audio.astype(np.float64)
    muffled = np.empty_like(x)
    acc = 0.0
    for i, v in enumerate(x):  # one-pole low-pass, ~800 Hz corner
        acc += 0.27 * (v - acc)
        muffled[i] = acc
    muffled = (muffled * 2.5).astype(np.float32)
    plain = PhoneRecognizer(DecoderConfig(adapt=False))
    adapted = PhoneRecognizer()

    def speech_phones(r: PhoneRecognizer, s: np.ndarray) -> list[str]:
        return [p.phone for p in r.recognize(s) if not p.silent]

    clean = speech_phones(adapted, clean_audio)

    def overlap(a: list[str]) -> float:
        import difflib

        return difflib.SequenceMatcher(a=clean, b=a, autojunk=False).ratio()

    assert overlap(speech_phones(adapted, muffled)) > overlap(speech_phones(plain, muffled))
