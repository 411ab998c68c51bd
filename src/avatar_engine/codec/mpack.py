"""A strict msgpack reader for decoders (reference), with the protocol's error categories.

The ``msgpack`` package writes our messages; reading goes through this small reader so that
every decoder (Python, Cython, C++, JS) classifies bad input the same way:

- anything that is not one well-formed msgpack object filling the whole message, including a
  length or count that claims more bytes than remain, is ``malformed``;
- nesting deeper than :data:`MAX_DEPTH` is ``limit``.

A count is checked against the remaining bytes *before* anything is allocated, so a 5-byte
message claiming a 4-billion-element array costs nothing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

from avatar_engine.codec.wire import LIMIT, MALFORMED, ProtocolError

MAX_DEPTH: Final = 8


@dataclass(frozen=True, slots=True)
class Ext:
    """An ext value; v1 defines none, so a field holding one is a type error."""

    code: int
    data: bytes


Value: TypeAlias = (
    "bool | int | float | str | bytes | Ext | list[Value] | dict[Value, Value] | None"
)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError(MALFORMED, f"truncated: {n} bytes needed at offset {self.pos}")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def count(self, n: int, min_item_bytes: int) -> int:
        if n * min_item_bytes > len(self.data) - self.pos:
            raise ProtocolError(
                MALFORMED, f"a count of {n} at offset {self.pos} exceeds the remaining bytes"
            )
        return n

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def value(self, depth: int) -> Value:
        if depth > MAX_DEPTH:
            raise ProtocolError(LIMIT, f"nesting deeper than {MAX_DEPTH}")
        b = self.take(1)[0]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return self.map(b & 0x0F, depth)
        if 0x90 <= b <= 0x9F:
            return self.array(b & 0x0F, depth)
        if 0xA0 <= b <= 0xBF:
            return self.str(b & 0x1F)
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if b in (0xC4, 0xC5, 0xC6):
            n = self.uint(1 << (b - 0xC4))
            return self.take(self.count(n, 1))
        if b in (0xC7, 0xC8, 0xC9):
            n = self.uint(1 << (b - 0xC7))
            code = struct.unpack(">b", self.take(1))[0]
            return Ext(code, self.take(self.count(n, 1)))
        if b == 0xCA:
            return float(struct.unpack(">f", self.take(4))[0])
        if b == 0xCB:
            return float(struct.unpack(">d", self.take(8))[0])
        if 0xCC <= b <= 0xCF:
            return self.uint(1 << (b - 0xCC))
        if 0xD0 <= b <= 0xD3:
            size = 1 << (b - 0xD0)
            return int.from_bytes(self.take(size), "big", signed=True)
        if 0xD4 <= b <= 0xD8:
            code = struct.unpack(">b", self.take(1))[0]
            return Ext(code, self.take(1 << (b - 0xD4)))
        if b in (0xD9, 0xDA, 0xDB):
            return self.str(self.uint(1 << (b - 0xD9)))
        if b in (0xDC, 0xDD):
            return self.array(self.uint(2 if b == 0xDC else 4), depth)
        if b in (0xDE, 0xDF):
            return self.map(self.uint(2 if b == 0xDE else 4), depth)
        raise ProtocolError(MALFORMED, f"byte 0x{b:02x} at offset {self.pos - 1} is not msgpack")

    def str(self, n: int) -> str:
        raw = self.take(self.count(n, 1))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(MALFORMED, "a str is not valid UTF-8") from None

    def array(self, n: int, depth: int) -> list[Value]:
        return [self.value(depth + 1) for _ in range(self.count(n, 1))]

    def map(self, n: int, depth: int) -> dict[Value, Value]:
        out: dict[Value, Value] = {}
        for _ in range(self.count(n, 2)):
            key = self.value(depth + 1)
            if isinstance(key, list | dict):
                raise ProtocolError(MALFORMED, "a map key must not be an array or a map")
            out[key] = self.value(depth + 1)
        return out


def unpack(data: bytes) -> Value:
    """The single msgpack object that fills ``data`` exactly."""
    reader = _Reader(bytes(data))
    value = reader.value(0)
    if reader.pos != len(reader.data):
        raise ProtocolError(MALFORMED, f"{len(reader.data) - reader.pos} trailing bytes")
    return value
