"""Frame bodies: which elements a keyframe or delta carries, and their codes (reference code).

Layout of the ``bin`` body of a frame for a level with ``n`` elements (docs/protocol.md)::

    group mask    ceil(G / 8) bytes, G = ceil(n / 8); bit g (LSB first) = group g has data
    element masks one byte per set group bit, in group order; bit j = element 8g + j is sent
    values        for every sent element in ascending order: a morph as u8 / u16 LE,
                  a rotation channel as i8 / i16 LE (elements >= n_morphs are channels)

Faces move region by region and a level lists morphs region by region, so changed elements
cluster into few groups: this costs about 1 bit per 64 elements plus 1 byte per busy group,
where a plain bitmask costs n/8 bytes and an index list 1-2 bytes per change.
Bytes are read one at a time; nothing in the body is aligned (msgpack bin has no alignment).
"""

from __future__ import annotations

import numpy as np

from avatar_engine.codec.wire import BODY, ProtocolError
from avatar_engine.types import I32


def body_capacity(n: int, bits: int) -> int:
    """The largest body a level of ``n`` elements can produce (all elements sent)."""
    groups = (n + 7) // 8
    return (groups + 7) // 8 + groups + n * (bits // 8)


def pack_body(index: I32, codes: I32, n: int, n_morphs: int, bits: int) -> bytes:
    """Body for the elements ``index`` (ascending) with their ``codes``."""
    groups = (n + 7) // 8
    group_mask = bytearray((groups + 7) // 8)
    elem = bytearray(groups)
    for i in index.tolist():
        elem[i >> 3] |= 1 << (i & 7)
    for g in range(groups):
        if elem[g]:
            group_mask[g >> 3] |= 1 << (g & 7)
    out = bytearray(group_mask)
    out += bytes(b for b in elem if b)
    idx = np.asarray(index, dtype=np.int64)
    c = np.asarray(codes, dtype=np.int64)
    is_morph = idx < n_morphs
    if bits == 8:
        vals = np.where(is_morph, c, c & 0xFF).astype(np.uint8)
    else:
        vals = np.where(is_morph, c, c & 0xFFFF).astype("<u2")
    out += vals.tobytes()
    return bytes(out)


def unpack_body(body: bytes, n: int, n_morphs: int, bits: int) -> tuple[I32, I32]:
    """(index, code) of every element in ``body``; :class:`ProtocolError` ``body`` if the
    masks disagree with the level's size or the values are short or long."""
    groups = (n + 7) // 8
    gm_len = (groups + 7) // 8
    if len(body) < gm_len:
        raise ProtocolError(BODY, f"body of {len(body)} bytes is shorter than its group mask")
    pos = gm_len
    index: list[int] = []
    for g in range(gm_len * 8):
        if not body[g >> 3] >> (g & 7) & 1:
            continue
        if g >= groups:
            raise ProtocolError(BODY, f"group {g} is set but the level has {groups} groups")
        if pos >= len(body):
            raise ProtocolError(BODY, "body ends inside the element masks")
        mask = body[pos]
        pos += 1
        if mask == 0:
            raise ProtocolError(BODY, f"group {g} is flagged but its element mask is empty")
        for j in range(8):
            if mask >> j & 1:
                i = g * 8 + j
                if i >= n:
                    raise ProtocolError(BODY, f"element {i} is set but the level has {n}")
                index.append(i)
    width = bits // 8
    if len(body) - pos != width * len(index):
        raise ProtocolError(
            BODY,
            f"{len(index)} elements need {width * len(index)} value bytes, "
            f"the body has {len(body) - pos}",
        )
    raw = np.frombuffer(body, dtype=np.uint8 if bits == 8 else "<u2", offset=pos)
    idx = np.asarray(index, dtype=np.int32)
    codes = raw.astype(np.int32)
    signed = idx >= n_morphs
    if bits == 8:
        codes = np.where(signed & (codes > 127), codes - 256, codes)
    else:
        codes = np.where(signed & (codes > 32767), codes - 65536, codes)
    return idx, codes.astype(np.int32)
