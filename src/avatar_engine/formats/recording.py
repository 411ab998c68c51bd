"""``.avrec`` recordings: a length-prefixed msgpack stream of timestamped frames.

Layout (all integers little-endian)::

    file    = MAGIC record*
    MAGIC   = b"AVREC1\\r\\n"                 8 bytes; the CR LF catches text-mode mangling
    record  = u32 length | u32 crc32(payload) | payload (msgpack, ``length`` bytes)

The first record is the header, a msgpack map::

    {"format": "avatar-engine/avrec", "version": 1,
     "kind": "capture" | "stream",          # ARKit capture, or a rig's output stream
     "rig": str,                            # "arkit52" for capture
     "names": [str, ...],                   # one per value column (ARKit camelCase for capture)
     "channels": [str, ...],                # rotation channel names (HeadYaw ...)
     "created_unix": float, "source": str, "meta": {...}}

Every later record is one frame, a msgpack array ``[t, values, channels]``: ``t`` a float64
of seconds since the recording started, ``values`` and ``channels`` msgpack ``bin`` holding
float32 little-endian arrays of ``len(names)`` and ``len(channels)`` elements.

Why this shape: each record is written with one ``write`` and flushed, so a reader can follow
the file while it grows, and a crash leaves at most one torn record at the end. Readers stop at
the first incomplete or corrupt record and report how many tail bytes they skipped, so a
crashed recording loses at most its last frame. The CRC tells a torn tail (which some file
systems fill with zeros) from a complete record.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

import msgpack
import numpy as np

from avatar_engine.types import F32, F64

MAGIC: Final = b"AVREC1\r\n"
FORMAT: Final = "avatar-engine/avrec"
VERSION: Final = 1
MAX_RECORD_BYTES: Final = 1 << 20
"""A frame of 1024 float32 values is about 4 KB; a header with names well under 64 KB."""
MAX_NAMES: Final = 4096
_PREFIX = struct.Struct("<II")


class RecordingKind(StrEnum):
    """What an ``.avrec``'s frames are; the value is the header's ``kind`` string."""

    CAPTURE = "capture"
    """ARKit capture: the 52 weights and nine rotations a phone sent."""
    STREAM = "stream"
    """A session's output stream: its rig's morphs and channels."""


class AvrecFormatError(ValueError):
    """Not an ``.avrec`` file, or a header/frame that breaks the format (not a torn tail)."""


@dataclass(frozen=True, slots=True)
class AvrecHeader:
    """The first record of an ``.avrec``: what the frames hold (captured ARKit values or a rig's
    stream), their names in order, and where they came from."""

    kind: RecordingKind
    rig: str
    names: tuple[str, ...]
    channels: tuple[str, ...]
    created_unix: float = 0.0
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_msgpack(self) -> dict[str, Any]:
        """The header as the msgpack map written to disk (format and version first, so a reader can
        refuse a file it does not know)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind.value,
            "rig": self.rig,
            "names": list(self.names),
            "channels": list(self.channels),
            "created_unix": self.created_unix,
            "source": self.source,
            "meta": self.meta,
        }

    @classmethod
    def from_msgpack(cls, obj: object) -> AvrecHeader:
        """Validate a decoded header record: format, version, kind and name lists (bounded) or
        AvrecFormatError."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise AvrecFormatError("the first record is not an avrec header")
        if obj.get("version") != VERSION:
            raise AvrecFormatError(f"avrec version {obj.get('version')!r}, expected {VERSION}")
        raw_kind = obj.get("kind")
        if raw_kind not in tuple(RecordingKind):
            raise AvrecFormatError(f"unknown recording kind {raw_kind!r}")
        kind = RecordingKind(raw_kind)
        names, channels = obj.get("names"), obj.get("channels")
        for label, seq in (("names", names), ("channels", channels)):
            if not isinstance(seq, list) or not all(isinstance(n, str) for n in seq):
                raise AvrecFormatError(f"header {label} must be a list of strings")
            if len(seq) > MAX_NAMES:
                raise AvrecFormatError(f"header has {len(seq)} {label}, limit {MAX_NAMES}")
        assert isinstance(names, list) and isinstance(channels, list)
        created = obj.get("created_unix", 0.0)
        meta = obj.get("meta", {})
        return cls(
            kind=kind,
            rig=str(obj.get("rig", "")),
            names=tuple(names),
            channels=tuple(channels),
            created_unix=float(created) if isinstance(created, int | float) else 0.0,
            source=str(obj.get("source", "")),
            meta=meta if isinstance(meta, dict) else {},
        )


@dataclass(frozen=True, slots=True)
class AvrecFrame:
    """One frame of a recording: its time in seconds and its values and channels in the header's
    order."""

    t: float
    values: F32
    channels: F32


def encode_record(obj: object) -> bytes:
    """One length- and CRC-prefixed record, so a reader can tell a torn tail from a corrupt file."""
    payload: bytes = msgpack.packb(obj, use_bin_type=True)
    if len(payload) > MAX_RECORD_BYTES:
        raise ValueError(f"record of {len(payload)} bytes exceeds {MAX_RECORD_BYTES}")
    return _PREFIX.pack(len(payload), zlib.crc32(payload)) + payload


def encode_frame(t: float, values: F32, channels: F32) -> bytes:
    """A frame record: time, then values and channels as little-endian float32 bytes."""
    return encode_record(
        [
            float(t),
            np.ascontiguousarray(values, dtype="<f4").tobytes(),
            np.ascontiguousarray(channels, dtype="<f4").tobytes(),
        ]
    )


class AvrecDecoder:
    """Sans-I/O reader: :meth:`feed` bytes as they come, then take :meth:`frames`.

    The internal buffer holds at most one record plus the prefix, so feeding a huge file
    in chunks runs in bounded memory. Once a record fails its CRC or the frame layout, the
    decoder stops (``error`` says why); everything decoded before stays valid.
    """

    __slots__ = ("_buf", "_magic_ok", "_n_channels", "_n_values", "error", "header")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._magic_ok = False
        self.header: AvrecHeader | None = None
        self.error: str | None = None
        self._n_values = 0
        self._n_channels = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete (possibly torn) record held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[AvrecFrame]:
        """Frames completed by ``data``; raises :class:`AvrecFormatError` for a bad file
        start (magic or header), which is a wrong file rather than a torn tail."""
        if self.error is not None:
            return []
        self._buf += data
        out: list[AvrecFrame] = []
        if not self._magic_ok:
            if len(self._buf) < len(MAGIC):
                if not MAGIC.startswith(bytes(self._buf)):
                    raise AvrecFormatError("not an .avrec file (bad magic)")
                return out
            if bytes(self._buf[: len(MAGIC)]) != MAGIC:
                raise AvrecFormatError("not an .avrec file (bad magic)")
            del self._buf[: len(MAGIC)]
            self._magic_ok = True
        while len(self._buf) >= _PREFIX.size:
            length, crc = _PREFIX.unpack_from(self._buf)
            if length > MAX_RECORD_BYTES:
                self._fail(f"record length {length} exceeds {MAX_RECORD_BYTES}")
                break
            end = _PREFIX.size + length
            if len(self._buf) < end:
                break
            payload = bytes(self._buf[_PREFIX.size : end])
            if zlib.crc32(payload) != crc:
                self._fail("record CRC mismatch")
                break
            del self._buf[:end]
            try:
                obj = msgpack.unpackb(payload, raw=False, strict_map_key=True)
            except Exception:  # msgpack raises several types on bad payloads
                self._fail("record is not valid msgpack")
                break
            if self.header is None:
                self.header = AvrecHeader.from_msgpack(obj)
                self._n_values = len(self.header.names)
                self._n_channels = len(self.header.channels)
                continue
            frame = self._frame(obj)
            if frame is None:
                break
            out.append(frame)
        return out

    def _fail(self, why: str) -> None:
        self.error = why

    def _frame(self, obj: object) -> AvrecFrame | None:
        if (
            not isinstance(obj, list)
            or len(obj) != 3
            or not isinstance(obj[0], int | float)
            or not isinstance(obj[1], bytes)
            or not isinstance(obj[2], bytes)
            or len(obj[1]) != 4 * self._n_values
            or len(obj[2]) != 4 * self._n_channels
        ):
            self._fail("frame record does not match the header's layout")
            return None
        values = np.frombuffer(obj[1], dtype="<f4").astype(np.float32)
        channels = np.frombuffer(obj[2], dtype="<f4").astype(np.float32)
        return AvrecFrame(float(obj[0]), values, channels)


class AvrecWriter:
    """Appends frames to a new ``.avrec`` file; every record is flushed as it is written.

    ``fsync_interval`` (seconds, None = never) also forces the data to disk now and then, for
    power-loss safety; a process crash loses nothing that was flushed either way.
    """

    __slots__ = ("_clock", "_fh", "_fsync_interval", "_last_sync", "frames", "header")

    def __init__(
        self,
        path: str | Path,
        header: AvrecHeader,
        *,
        overwrite: bool = False,
        fsync_interval: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.header = header
        self._fh: IO[bytes] = open(path, "wb" if overwrite else "xb")  # noqa: SIM115
        self._fsync_interval = fsync_interval
        self._clock = clock
        self._last_sync = self._clock()
        self.frames = 0
        self._fh.write(MAGIC + encode_record(header.to_msgpack()))
        self._fh.flush()

    def write(self, t: float, values: F32, channels: F32) -> None:
        """Append one frame; the shapes must match the header (a mismatch is a caller error, not a
        file to repair later)."""
        if values.shape != (len(self.header.names),):
            raise ValueError(f"expected {len(self.header.names)} values")
        if channels.shape != (len(self.header.channels),):
            raise ValueError(f"expected {len(self.header.channels)} channels")
        self._fh.write(encode_frame(t, values, channels))
        self._fh.flush()
        self.frames += 1
        if self._fsync_interval is not None:
            now = self._clock()
            if now - self._last_sync >= self._fsync_interval:
                os.fsync(self._fh.fileno())
                self._last_sync = now

    def close(self) -> None:
        """Flush and fsync before closing, so a recording that was closed survives a crash right
        after."""
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> AvrecWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class AvrecRecording:
    """A whole recording read back: the header, one row per frame, and how many bytes of a torn last
    record were skipped."""

    header: AvrecHeader
    times: F64
    values: F32
    """(N, len(names))."""
    channels: F32
    """(N, len(channels))."""
    skipped_tail_bytes: int
    """Bytes after the last good record (a torn write, or corruption named by ``error``)."""
    error: str | None


def iter_frames(path: str | Path, *, chunk: int = 65536) -> Iterator[AvrecFrame]:
    """Stream the frames of a file (complete records only; safe while it is being written)."""
    decoder = AvrecDecoder()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            yield from decoder.feed(block)
    if decoder.header is None:
        raise AvrecFormatError(f"{path}: no complete header")


def read_recording(path: str | Path) -> AvrecRecording:
    """Read every complete frame of a recording (finished, crashed or still being written)."""
    decoder = AvrecDecoder()
    frames: list[AvrecFrame] = []
    with open(path, "rb") as fh:
        while block := fh.read(65536):
            frames.extend(decoder.feed(block))
            if decoder.error is not None:
                break
        rest = len(fh.read()) if decoder.error is not None else 0
    if decoder.header is None:
        raise AvrecFormatError(f"{path}: no complete header")
    h = decoder.header
    n = len(frames)
    values = np.empty((n, len(h.names)), dtype=np.float32)
    channels = np.empty((n, len(h.channels)), dtype=np.float32)
    times = np.empty(n, dtype=np.float64)
    for i, f in enumerate(frames):
        times[i], values[i], channels[i] = f.t, f.values, f.channels
    return AvrecRecording(
        header=h,
        times=times,
        values=values,
        channels=channels,
        skipped_tail_bytes=decoder.pending_bytes + rest,
        error=decoder.error,
    )


def capture_header(
    source: str = "", meta: dict[str, Any] | None = None, *, created_unix: float = 0.0
) -> AvrecHeader:
    """Header for an ARKit capture recording (52 weights + the nine rotations)."""
    from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES

    return AvrecHeader(
        kind=RecordingKind.CAPTURE,
        rig="arkit52",
        names=ARKIT_NAMES,
        channels=ROTATION_NAMES,
        created_unix=created_unix,
        source=source,
        meta=meta or {},
    )


def stream_header(
    rig: str,
    names: Sequence[str],
    channels: Sequence[str],
    source: str = "",
    meta: dict[str, Any] | None = None,
    *,
    created_unix: float = 0.0,
) -> AvrecHeader:
    """Header for a recording of a session's output stream (a rig's morphs and channels)."""
    return AvrecHeader(
        kind=RecordingKind.STREAM,
        rig=rig,
        names=tuple(names),
        channels=tuple(channels),
        created_unix=created_unix,
        source=source,
        meta=meta or {},
    )
