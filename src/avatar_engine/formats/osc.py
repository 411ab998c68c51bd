"""A strict OSC 1.0 datagram parser and writer (messages and bundles, big-endian).

Why not python-osc for parsing, as issue 7 suggests by default: measured on one Perfect Sync
VMC frame (a bundle of 57 messages, 2.9 KB), python-osc's ``OscBundle`` takes about 200 us
(best of 15 runs on a shared core; up to 770 us under load) and this parser about 65 us, and
that is paid 60 times per second per VMC source; see ``benchmarks/benchmarks/bench_ingest.py``.
python-osc also accepts bundle element sizes that run past the datagram and logs a warning on
the root logger for every element it cannot identify, so a garbage flood becomes a log flood.
python-osc remains the independent implementation the tests check both directions against
(its client sends to our receiver, its server reads what we send, and a differential test
compares the two parsers).

Supported argument tags: ``i f s S b h d t c r m T F N I``. OSC arrays (``[``/``]``) are not
used by VMC and are refused (``malformed``). Every length is checked against the datagram,
bundle elements must fit exactly, nesting is limited, and the parser raises only
:class:`OscError`.
"""

from __future__ import annotations

import struct
from typing import Any, Final

OscArg = int | float | str | bytes | bool | None | tuple[int, ...]
OscMessage = tuple[str, list[OscArg]]

BUNDLE_TAG: Final = b"#bundle\x00"
_I32 = struct.Struct(">i")
_F32 = struct.Struct(">f")
_CONSTANT: Final[dict[str, OscArg]] = {"T": True, "F": False, "N": None, "I": None}


class OscError(ValueError):
    """Not well-formed OSC; ``too_many`` is set when only the message budget was exceeded."""

    def __init__(self, detail: str, *, too_many: bool = False) -> None:
        super().__init__(detail)
        self.too_many = too_many


def _string(data: bytes, pos: int, end: int) -> tuple[str, int]:
    """A NUL-terminated, 4-byte padded string starting at ``pos``; returns (text, next pos)."""
    nul = data.find(b"\x00", pos, end)
    if nul < 0:
        raise OscError("string without a NUL terminator")
    raw = data[pos:nul]
    text = _TEXT.get(raw)
    if text is None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise OscError("string is not UTF-8") from None
        if len(_TEXT) >= _CACHE_LIMIT:
            _TEXT.clear()
        _TEXT[raw] = text
    nxt = (nul + 4) & ~3
    if nxt > end:
        raise OscError("string padding runs past the message")
    return text, nxt


# A message's argument plan: runs of fixed-size tags become one struct; strings, blobs and
# constants are single steps. Plans and decoded strings are cached per raw header (VMC repeats
# the same few type-tag strings and the same 52 clip names every frame); both caches are
# cleared when full, so hostile input cannot grow them.
_FIXED_RUN, _STRING, _BLOB, _CONST, _WORD = range(5)
_Step = tuple[int, Any, int]
_CACHE_LIMIT: Final = 1024
_TEXT: dict[bytes, str] = {}
_PLANS: dict[bytes, tuple[str, tuple[_Step, ...]]] = {}
_FIXED_FMT: Final = {"i": "i", "f": "f", "h": "q", "d": "d", "t": "Q"}


def _plan(tags: str) -> tuple[_Step, ...]:
    steps: list[_Step] = []
    run = ""
    for tag in tags[1:]:
        if tag in _FIXED_FMT:
            run += _FIXED_FMT[tag]
            continue
        if run:
            fmt = struct.Struct(">" + run)
            steps.append((_FIXED_RUN, fmt, fmt.size))
            run = ""
        if tag in ("s", "S"):
            steps.append((_STRING, None, 0))
        elif tag == "b":
            steps.append((_BLOB, None, 0))
        elif tag in _CONSTANT:
            steps.append((_CONST, _CONSTANT[tag], 0))
        elif tag in ("c", "r", "m"):
            steps.append((_WORD, tag, 4))
        else:
            raise OscError(f"unsupported type tag {tag!r}")
    if run:
        fmt = struct.Struct(">" + run)
        steps.append((_FIXED_RUN, fmt, fmt.size))
    return tuple(steps)


def parse_message(data: bytes, pos: int = 0, end: int | None = None) -> OscMessage:
    """One message occupying ``data[pos:end]`` exactly."""
    end = len(data) if end is None else end
    a_end = data.find(b"\x00", pos, end)
    if a_end < 0:
        raise OscError("address without a NUL terminator")
    t_pos = (a_end + 4) & ~3
    if t_pos >= end:  # OSC 1.0 allows a message without a type tag string
        if t_pos > end:
            raise OscError("address padding runs past the message")
        address, _ = _string(data, pos, end)
        if not address.startswith("/"):
            raise OscError("address does not start with '/'")
        return address, []
    t_end = data.find(b"\x00", t_pos, end)
    if t_end < 0:
        raise OscError("type tags without a NUL terminator")
    key = data[pos:t_end]
    cached = _PLANS.get(key)
    if cached is None:
        address, _ = _string(data, pos, end)
        if not address.startswith("/"):
            raise OscError("address does not start with '/'")
        tags, _ = _string(data, t_pos, end)
        if not tags.startswith(","):
            raise OscError("type tag string does not start with ','")
        cached = (address, _plan(tags))
        if len(_PLANS) >= _CACHE_LIMIT:
            _PLANS.clear()
        _PLANS[key] = cached
    address, steps = cached
    pos = (t_end + 4) & ~3
    if pos > end:
        raise OscError("type tag padding runs past the message")
    args: list[OscArg] = []
    for kind, what, size in steps:
        if kind == _FIXED_RUN:
            if pos + size > end:
                raise OscError("message ends inside its arguments")
            args.extend(what.unpack_from(data, pos))
            pos += size
        elif kind == _STRING:
            text, pos = _string(data, pos, end)
            args.append(text)
        elif kind == _CONST:
            args.append(what)
        elif kind == _BLOB:
            if pos + 4 > end:
                raise OscError("message ends inside a blob size")
            (blob_size,) = _I32.unpack_from(data, pos)
            start = pos + 4
            if blob_size < 0 or start + blob_size > end:
                raise OscError(f"bad blob size {blob_size}")
            args.append(data[start : start + blob_size])
            pos = (start + blob_size + 3) & ~3
        else:  # _WORD: c (char), r (rgba), m (midi)
            if pos + 4 > end:
                raise OscError(f"message ends inside a '{what}' argument")
            word = data[pos : pos + 4]
            args.append(chr(_I32.unpack(word)[0] & 0x10FFFF) if what == "c" else tuple(word))
            pos += 4
    if pos != end:
        raise OscError(f"{end - pos} bytes after the last argument")
    return address, args


def parse_datagram(
    data: bytes, *, max_messages: int = 1024, max_depth: int = 8
) -> list[OscMessage]:
    """Every message of a datagram (a message, or a bundle with nested bundles), in order.

    Bundle time tags are ignored (the caller applies messages on arrival).
    """
    out: list[OscMessage] = []
    if data[:8] == BUNDLE_TAG:
        _bundle(data, 0, len(data), 1, max_depth, max_messages, out)
    elif data[:1] == b"/":
        if len(data) % 4:
            raise OscError("a message's size is not a multiple of 4")
        out.append(parse_message(data))
    else:
        raise OscError("neither a message nor a bundle")
    return out


def _bundle(
    data: bytes,
    start: int,
    end: int,
    depth: int,
    max_depth: int,
    max_messages: int,
    out: list[OscMessage],
) -> None:
    if depth > max_depth:
        raise OscError("bundles nested too deeply")
    if end - start < 16:
        raise OscError("bundle shorter than its header")
    pos = start + 16  # "#bundle\0" + 8-byte time tag
    while pos < end:
        if pos + 4 > end:
            raise OscError("bundle ends inside an element size")
        (size,) = _I32.unpack_from(data, pos)
        pos += 4
        if size <= 0 or size % 4 or pos + size > end:
            raise OscError(f"bad bundle element size {size}")
        if data[pos : pos + 8] == BUNDLE_TAG:
            _bundle(data, pos, pos + size, depth + 1, max_depth, max_messages, out)
        elif data[pos : pos + 1] == b"/":
            if len(out) >= max_messages:
                raise OscError("too many messages", too_many=True)
            out.append(parse_message(data, pos, pos + size))
        else:
            raise OscError("bundle element of unknown type")
        pos += size


def _osc_string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\x00"
    return raw + b"\x00" * (-len(raw) % 4)


def message_bytes(address: str, *args: float | int | str) -> bytes:
    """One message: ``f`` for float, ``i`` for int, ``s`` for str."""
    tags = [","]
    payload = []
    for arg in args:
        if isinstance(arg, str):
            tags.append("s")
            payload.append(_osc_string(arg))
        elif isinstance(arg, bool):
            raise TypeError("booleans are not used by VMC")
        elif isinstance(arg, int):
            tags.append("i")
            payload.append(_I32.pack(arg))
        else:
            tags.append("f")
            payload.append(_F32.pack(arg))
    return _osc_string(address) + _osc_string("".join(tags)) + b"".join(payload)


IMMEDIATELY: Final = b"\x00\x00\x00\x00\x00\x00\x00\x01"


def bundle_bytes(messages: list[bytes]) -> bytes:
    """A bundle with the "immediately" time tag around already-encoded elements."""
    parts = [BUNDLE_TAG, IMMEDIATELY]
    for msg in messages:
        parts.append(_I32.pack(len(msg)))
        parts.append(msg)
    return b"".join(parts)
