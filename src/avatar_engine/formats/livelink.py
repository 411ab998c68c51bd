"""Live Link Face UDP packets, version 6: parse and build (the pure-Python reference).

Layout (big-endian, Unreal's ``FNboSerialize``; strings are an int32 byte length + UTF-8):

    u8 version=6 | i32 len, device id | i32 len, subject | i32 frame | f32 subframe
    | i32 fps numerator | i32 fps denominator | u8 count=61 | 61 x f32 values

Values 0-51 are ARKit weights in canonical order; 52-60 are the head/eye rotations. The fast
path is :mod:`avatar_engine.formats._livelink_fast` (Cython), which must agree with this module
byte for byte; :func:`parse_packet` uses it when it is built.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.types import F32, U8

PACKET_VERSION: Final = 6
VALUE_COUNT: Final = 61
MAX_NAME_BYTES: Final = 256
"""Unreal's receiver buffer allows 256 characters per string; longer names are rejected."""
FIXED_BYTES: Final = 1 + 4 + 4 + 16 + 1 + 4 * VALUE_COUNT  # 270 + the two strings
MAX_PACKET_BYTES: Final = FIXED_BYTES + 2 * MAX_NAME_BYTES
DEFAULT_PORT: Final = 11111

_TIME = struct.Struct(">ifii")
_VALUES = struct.Struct(f">{VALUE_COUNT}f")


class DropReason(StrEnum):
    """Why a packet was dropped; ingest counts drops per reason."""

    TOO_LARGE = "too_large"
    TRUNCATED = "truncated"
    VERSION = "version"
    NAME_LENGTH = "name_length"
    NAME_ENCODING = "name_encoding"
    COUNT = "count"
    TRAILING = "trailing_bytes"
    NON_FINITE = "non_finite"


class LiveLinkPacketError(ValueError):
    """A datagram that is not a valid v6 packet; ``reason`` says which check failed."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LiveLinkFrame:
    """One decoded Live Link Face packet: who sent it, its timecode and the 61 float32 values in the
    packet's order (52 blendshapes, then head and eye rotations)."""

    device_id: str
    subject: str
    frame_number: int
    subframe: float
    fps_numerator: int
    fps_denominator: int
    values: F32
    """61 float32: 52 ARKit weights then 9 rotations."""

    @property
    def frame_time(self) -> float:
        """Seconds on the sender's timecode clock (0 when the rate is unusable)."""
        if self.fps_numerator <= 0 or self.fps_denominator <= 0:
            return 0.0
        return (self.frame_number + self.subframe) * self.fps_denominator / self.fps_numerator


def _read_name(data: bytes, offset: int, what: str) -> tuple[str, int]:
    if offset + 4 > len(data):
        raise LiveLinkPacketError(DropReason.TRUNCATED, f"packet ends inside the {what} length")
    (length,) = struct.unpack_from(">i", data, offset)
    if length < 0 or length > MAX_NAME_BYTES:
        raise LiveLinkPacketError(DropReason.NAME_LENGTH, f"{what} length {length}")
    start = offset + 4
    if start + length > len(data):
        raise LiveLinkPacketError(DropReason.TRUNCATED, f"packet ends inside the {what}")
    try:
        return data[start : start + length].decode("utf-8"), start + length
    except UnicodeDecodeError:
        raise LiveLinkPacketError(DropReason.NAME_ENCODING, f"{what} is not UTF-8") from None


def parse_packet_py(data: bytes) -> LiveLinkFrame:
    """Parse one datagram (pure Python); raises :class:`LiveLinkPacketError`."""
    if len(data) > MAX_PACKET_BYTES:
        raise LiveLinkPacketError(DropReason.TOO_LARGE, f"{len(data)} bytes")
    if len(data) < 1:
        raise LiveLinkPacketError(DropReason.TRUNCATED, "empty datagram")
    if data[0] != PACKET_VERSION:
        raise LiveLinkPacketError(DropReason.VERSION, f"version {data[0]}, expected 6")
    device_id, offset = _read_name(data, 1, "device id")
    subject, offset = _read_name(data, offset, "subject name")
    if offset + _TIME.size + 1 + _VALUES.size > len(data):
        raise LiveLinkPacketError(DropReason.TRUNCATED, "packet ends before the values")
    frame, subframe, num, den = _TIME.unpack_from(data, offset)
    offset += _TIME.size
    if data[offset] != VALUE_COUNT:
        raise LiveLinkPacketError(DropReason.COUNT, f"{data[offset]} values, expected 61")
    offset += 1
    if offset + _VALUES.size != len(data):
        raise LiveLinkPacketError(DropReason.TRAILING, f"{len(data) - offset - _VALUES.size} extra")
    values = np.frombuffer(data, dtype=">f4", count=VALUE_COUNT, offset=offset).astype(np.float32)
    if not np.isfinite(values).all():
        raise LiveLinkPacketError(DropReason.NON_FINITE, "NaN or infinity among the values")
    return LiveLinkFrame(device_id, subject, frame, subframe, num, den, values)


def build_packet(
    device_id: str,
    subject: str,
    values: npt.ArrayLike,
    *,
    frame_number: int = 0,
    subframe: float = 0.0,
    fps: tuple[int, int] = (60, 1),
) -> bytes:
    """Serialise a v6 packet exactly as the iPhone app does (used by egress and tests)."""
    vals = np.asarray(values, dtype=np.float32).reshape(-1)
    if vals.shape[0] != VALUE_COUNT:
        raise ValueError(f"expected {VALUE_COUNT} values, got {vals.shape[0]}")
    dev, sub = device_id.encode("utf-8"), subject.encode("utf-8")
    if len(dev) > MAX_NAME_BYTES or len(sub) > MAX_NAME_BYTES:
        raise ValueError(f"names are limited to {MAX_NAME_BYTES} UTF-8 bytes")
    return b"".join(
        (
            bytes((PACKET_VERSION,)),
            struct.pack(">i", len(dev)),
            dev,
            struct.pack(">i", len(sub)),
            sub,
            _TIME.pack(frame_number, subframe, fps[0], fps[1]),
            bytes((VALUE_COUNT,)),
            vals.astype(">f4").tobytes(),
        )
    )


def parse_packet(data: bytes) -> LiveLinkFrame:
    """Parse one datagram with the fastest parser built here."""
    return _parse(data)


LiveLinkHead = tuple[str, str, float]
"""What a batch parse gives per valid packet: device id, subject, :attr:`LiveLinkFrame.frame_time`
(the 61 values go into the caller's array)."""


def parse_batch_py(
    rows: U8, sizes: npt.NDArray[np.int64], n: int, values: F32
) -> list[LiveLinkHead | LiveLinkPacketError]:
    """Parse the datagrams ``rows[i, :sizes[i]]``, ``i < n`` (a receiver's batch read) in one
    call: per row its head, with its values written to ``values[i]`` (an ``(>= n, 61)``
    float32 array), or the error :func:`parse_packet_py` raises for it. The reference; the
    Cython twin does the rows in one loop without a frame object per packet."""
    heads: list[LiveLinkHead | LiveLinkPacketError] = []
    for i in range(n):
        try:
            frame = parse_packet_py(rows[i, : sizes[i]].tobytes())
        except LiveLinkPacketError as exc:
            heads.append(exc)
            continue
        values[i] = frame.values
        heads.append((frame.device_id, frame.subject, frame.frame_time))
    return heads


def parse_batch(
    rows: U8, sizes: npt.NDArray[np.int64], n: int, values: F32
) -> list[LiveLinkHead | LiveLinkPacketError]:
    """:func:`parse_batch_py` with the fastest parser built here."""
    return _parse_batch(rows, sizes, n, values)


def _error(text: str) -> LiveLinkPacketError:
    """The twin's ``"<reason>: <detail>"`` as the reference's error."""
    code, _, detail = text.partition(": ")
    return LiveLinkPacketError(DropReason(code), detail)


try:
    from avatar_engine.formats._livelink_fast import parse_batch as _fast_batch
    from avatar_engine.formats._livelink_fast import parse_packet as _fast_parse
except ImportError:  # source tree without the compiled module: the reference still works
    _parse = parse_packet_py
    _parse_batch = parse_batch_py
else:

    def _parse_batch(
        rows: U8, sizes: npt.NDArray[np.int64], n: int, values: F32
    ) -> list[LiveLinkHead | LiveLinkPacketError]:
        heads = _fast_batch(rows, sizes, n, values)
        return [_error(h) if isinstance(h, str) else h for h in heads]

    def _parse(data: bytes) -> LiveLinkFrame:
        try:
            dev, sub, frame, subframe, num, den, values = _fast_parse(data)
        except ValueError as exc:
            raise _error(str(exc)) from None
        return LiveLinkFrame(dev, sub, frame, subframe, num, den, values)
