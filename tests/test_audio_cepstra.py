"""Our MFCC front end against PocketSphinx's own (its feature log), and streaming cuts."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pytest

from avatar_engine.audio.cepstra import CepstraStream, FrontEndError, front_end
from avatar_engine.audio.lipsync import to_internal
from avatar_engine.audio.phones import model_dir
from avatar_engine.audio.wav import read_wav

WAV = Path(__file__).parent / "data" / "audio" / "fox-espeak.wav"
MODEL = os.path.join(model_dir(), "en-us")


def _speech() -> np.ndarray:
    return np.round(to_internal(read_wav(WAV)) * 32767).astype(np.int16)


def test_matches_pocketsphinx_feature_log(tmp_path: Path) -> None:
    """PocketSphinx writes the cepstra it computed to ``mfclogdir``; with its noise subtraction
    off (which we leave out), ours are the same numbers for every whole window."""
    import pocketsphinx

    pcm = _speech()
    d = pocketsphinx.Decoder(
        hmm=MODEL,
        allphone=os.path.join(model_dir(), "en-us-phone.lm.bin"),
        samprate=16_000,
        loglevel="FATAL",
        mfclogdir=str(tmp_path),
    )
    d.config["remove_noise"] = False  # feat.params switches it on over constructor options
    d.reinit_feat()
    d.start_utt()
    d.process_raw(pcm.tobytes(), full_utt=True)
    d.end_utt()
    (logged,) = glob.glob(str(tmp_path / "*"))
    raw = Path(logged).read_bytes()
    theirs = np.frombuffer(raw[4:], ">f4").reshape(-1, 13)
    ours = front_end(MODEL).cepstra(pcm)
    assert ours.shape[0] == (pcm.size - 410) // 160 + 1
    np.testing.assert_allclose(ours, theirs[: ours.shape[0]], atol=2e-3)


def test_stream_cut_anywhere_gives_the_same_frames() -> None:
    pcm = _speech()
    whole = front_end(MODEL).cepstra(pcm)
    stream = CepstraStream(front_end(MODEL))
    cuts = np.sort(np.random.default_rng(5).integers(0, pcm.size, 60))
    parts = [stream.push(p) for p in np.split(pcm, cuts)]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-4)


def test_short_input_gives_no_frames() -> None:
    assert front_end(MODEL).cepstra(np.zeros(409, np.int16)).shape == (0, 13)


def test_unsupported_front_end_is_refused(tmp_path: Path) -> None:
    (tmp_path / "feat.params").write_text("-transform legacy\n-nfilt 40\n", "ascii")
    with pytest.raises(FrontEndError, match="legacy"):
        front_end(str(tmp_path))
