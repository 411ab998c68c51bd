"""16-bit PCM input: WAV files (the only file I/O in ``audio/``) and raw or base64 PCM16 chunks.

The WAV reader parses RIFF chunks itself instead of using :mod:`wave`, so every malformed file
gets one clear message naming what is wrong (``wave`` raises ``EOFError`` or ``struct.error``
for a truncated header) and WAVE_FORMAT_EXTENSIBLE files, which many tools write for plain
16-bit PCM, are accepted.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.types import F32

MIN_RATE: Final = 8_000
MAX_RATE: Final = 192_000
"""Sample rates outside this range are refused as absurd (a corrupt header, usually)."""
STREAM_RATES: Final[tuple[int, ...]] = (16_000, 22_050, 24_000, 44_100, 48_000)
"""Rates a streaming sender may declare."""
MAX_CHANNELS: Final = 8
_PCM: Final = 1
_EXTENSIBLE: Final = 0xFFFE
_PCM_GUID_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


class AudioFormatError(ValueError):
    """Audio that cannot be read: bad header, unsupported encoding, or an absurd sample rate."""


@dataclass(frozen=True, slots=True)
class Pcm:
    """Mono audio as float32 in [-1, 1) at ``rate`` Hz (stereo is averaged on load)."""

    samples: F32
    rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return float(self.samples.shape[0]) / float(self.rate)


def check_rate(rate: int, *, stream: bool = False) -> int:
    """Validate a declared sample rate; streaming senders must use one of :data:`STREAM_RATES`."""
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
        raise AudioFormatError(f"sample rate must be an integer, got {rate!r}")
    r = int(rate)
    if stream and r not in STREAM_RATES:
        shown = ", ".join(str(x) for x in STREAM_RATES)
        raise AudioFormatError(f"unsupported stream sample rate {r} Hz; use one of {shown}")
    if not MIN_RATE <= r <= MAX_RATE:
        raise AudioFormatError(f"absurd sample rate {r} Hz (expected {MIN_RATE}..{MAX_RATE} Hz)")
    return r


def pcm16_to_float(data: bytes | bytearray | memoryview, channels: int = 1) -> F32:
    """Little-endian PCM16 bytes -> mono float32 (channels averaged)."""
    raw = bytes(data)
    frame = 2 * channels
    if len(raw) % frame:
        raise AudioFormatError(
            f"PCM16 data of {len(raw)} bytes is not a whole number of {channels}-channel frames"
        )
    ints = np.frombuffer(raw, dtype="<i2")
    x = ints.astype(np.float32) * np.float32(1.0 / 32768.0)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def decode_base64_pcm16(delta: str | bytes) -> bytes:
    """A realtime speech API's ``audio`` delta (base64 PCM16) -> raw bytes, with a clear error."""
    try:
        return base64.b64decode(delta, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AudioFormatError(f"audio delta is not valid base64: {exc}") from None


def parse_wav(data: bytes, name: str = "<bytes>") -> Pcm:
    """Decode a whole WAV file held in memory (16-bit PCM, 1..8 channels)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioFormatError(f"{name}: not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    payload: bytes | None = None
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = _parse_fmt(body, name)
        elif cid == b"data":
            # Streaming writers leave 0 or 0xFFFFFFFF here: take what is there, whole frames.
            payload = body if len(body) == size else data[pos + 8 :]
            break
        pos += 8 + size + (size & 1)
    if fmt is None:
        raise AudioFormatError(f"{name}: no 'fmt ' chunk before the audio data")
    if payload is None:
        raise AudioFormatError(f"{name}: no 'data' chunk")
    channels, rate, _, _ = fmt
    usable = len(payload) - len(payload) % (2 * channels)
    return Pcm(pcm16_to_float(payload[:usable], channels), rate)


def _parse_fmt(body: bytes, name: str) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise AudioFormatError(f"{name}: 'fmt ' chunk is {len(body)} bytes, expected >= 16")
    tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE and len(body) >= 40:
        if body[26:40] != _PCM_GUID_TAIL or struct.unpack_from("<H", body, 24)[0] != _PCM:
            raise AudioFormatError(f"{name}: WAVE_FORMAT_EXTENSIBLE but not PCM")
        tag = _PCM
    if tag != _PCM:
        raise AudioFormatError(f"{name}: format tag {tag:#x} is not PCM (only 16-bit PCM)")
    if bits != 16:
        raise AudioFormatError(f"{name}: {bits}-bit samples; only 16-bit PCM is supported")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioFormatError(f"{name}: {channels} channels (expected 1..{MAX_CHANNELS})")
    if align != 2 * channels:
        raise AudioFormatError(f"{name}: block align {align} does not match {channels}ch 16-bit")
    try:
        check_rate(rate)
    except AudioFormatError as exc:
        raise AudioFormatError(f"{name}: {exc}") from None
    return channels, rate, align, bits


def read_wav(path: str | Path) -> Pcm:
    """Read a 16-bit PCM WAV file (mono or multichannel, any rate in 8..192 kHz)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise AudioFormatError(f"{p}: cannot read ({exc.strerror})") from None
    return parse_wav(data, str(p))


def wav_bytes(samples: npt.ArrayLike, rate: int) -> bytes:
    """Encode mono float audio in [-1, 1] as a 16-bit PCM WAV file (fixtures, evaluation)."""
    x = np.asarray(samples, dtype=np.float64)
    ints = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    body = ints.tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + len(body), b"WAVE", b"fmt ", 16, _PCM, 1, rate, rate * 2, 2, 16,
        b"data", len(body),
    )  # fmt: skip
    return header + body
