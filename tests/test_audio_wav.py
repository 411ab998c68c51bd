"""WAV and PCM16 input: good files decode, bad ones fail with one clear message."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import numpy as np
import pytest

from avatar_engine.audio.wav import (
    AudioFormatError,
    check_rate,
    decode_base64_pcm16,
    parse_wav,
    pcm16_to_float,
    read_wav,
    wav_bytes,
)

DATA = Path(__file__).parent / "data" / "audio"


def _wav(
    rate: int = 16000, channels: int = 1, bits: int = 16, tag: int = 1, frames: int = 160
) -> bytes:
    block = channels * bits // 8
    body = np.arange(frames * channels, dtype="<i2").tobytes()[: frames * block]
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body))
    return b"RIFF" + struct.pack("<I", 4 + len(chunks) + len(body)) + b"WAVE" + chunks + body


def test_roundtrip_mono() -> None:
    x = np.sin(np.linspace(0, 20, 1000)) * 0.5
    pcm = parse_wav(wav_bytes(x, 22050))
    assert pcm.rate == 22050
    assert np.max(np.abs(pcm.samples - x)) < 1e-4


def test_stereo_is_averaged() -> None:
    frames = np.array([[1000, 3000], [-2000, 0]], dtype="<i2")
    fmt = struct.pack("<HHIIHH", 1, 2, 48000, 48000 * 4, 4, 16)
    body = frames.tobytes()
    data = b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVE"
    data += b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(body)) + body
    pcm = parse_wav(data)
    assert pcm.rate == 48000
    np.testing.assert_allclose(pcm.samples, [2000 / 32768, -1000 / 32768], rtol=1e-6)


def test_fixture_reads() -> None:
    pcm = read_wav(DATA / "fox-espeak.wav")
    assert pcm.rate == 22050
    assert 2.0 < pcm.duration < 4.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a RIFF/WAVE"),
        (b"RIFF\x00\x00\x00\x00WAVX", "not a RIFF/WAVE"),
        (_wav()[:20], "'fmt ' chunk is 0 bytes"),
        (_wav()[:12], "no 'fmt '"),
        (_wav()[:36], "no 'data'"),
        (_wav(tag=3), "not PCM"),
        (_wav(bits=8), "8-bit"),
        (_wav(rate=1), "absurd sample rate 1 Hz"),
        (_wav(rate=10_000_000), "absurd sample rate 10000000 Hz"),
        (_wav(channels=0), "0 channels"),
    ],
)
def test_corrupt_headers_fail_clearly(data: bytes, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        parse_wav(data, "x.wav")


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(AudioFormatError, match="cannot read"):
        read_wav(tmp_path / "nope.wav")


def test_stream_rates() -> None:
    for r in (16000, 22050, 24000, 44100, 48000):
        assert check_rate(r, stream=True) == r
    with pytest.raises(AudioFormatError, match="unsupported stream sample rate"):
        check_rate(8000, stream=True)
    with pytest.raises(AudioFormatError, match="absurd"):
        check_rate(0)


def test_pcm16_and_base64() -> None:
    raw = np.array([0, 16384, -32768], dtype="<i2").tobytes()
    np.testing.assert_allclose(pcm16_to_float(raw), [0.0, 0.5, -1.0])
    assert decode_base64_pcm16(base64.b64encode(raw).decode()) == raw
    with pytest.raises(AudioFormatError, match="base64"):
        decode_base64_pcm16("not base64!!")
    with pytest.raises(AudioFormatError, match="whole number"):
        pcm16_to_float(b"\x00\x01\x02")
