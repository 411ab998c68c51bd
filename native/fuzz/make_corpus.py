"""Seed corpus for fuzz_decoder: each vector file's messages re-framed with u16 LE lengths."""

from __future__ import annotations

import struct
import sys
from pathlib import Path


def main(vectors: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(vectors.glob("*.msgs")):
        data = path.read_bytes()
        pos = 0
        messages: list[bytes] = []
        while pos < len(data):
            tag, length = struct.unpack_from("<BI", data, pos)
            pos += 5
            if tag == 0 and length < 65536:
                messages.append(data[pos : pos + length])
            pos += length
        # one seed per vector (the whole sequence) and one per (hello, message) pair
        framed = b"".join(struct.pack("<H", len(m)) + m for m in messages)
        (out / f"{path.stem}.bin").write_bytes(framed)
        for i, m in enumerate(messages[1:12], 1):
            pair = struct.pack("<H", len(messages[0])) + messages[0] + struct.pack("<H", len(m)) + m
            (out / f"{path.stem}-{i}.bin").write_bytes(pair)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
