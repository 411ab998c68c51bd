"""asv: the wire codec. Batched encode per implementation and batch size, decode per message.

Run with ``asv run --config benchmarks/asv.conf.json`` (or ``-E existing``);
``python benchmarks/codec_report.py`` prints sizes, errors and the same timings as a table.
Content is the scripted speech sequence retargeted to cc4-extended (deterministic, no files).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from avatar_engine import Retargeter, load_rig
from avatar_engine.codec import BatchEncoder, Decoder, DeltaMode, StreamParams, StreamSchema
from avatar_engine.codec import encode_hello as _encode_hello
from avatar_engine.codec.encoder import _fast
from avatar_engine.codec.synthetic import scripted_speech

RIG = "cc4-extended"
FRAMES = 240
IMPLS = ["cython", "python"] if _fast is not None else ["python"]


def _content() -> tuple[StreamSchema, np.ndarray, np.ndarray]:
    rig = load_rig(RIG)
    arkit, rot = scripted_speech(FRAMES, 60.0, seed=2)
    return StreamSchema.from_rig(rig), Retargeter(rig).map(arkit), rot


class EncodeBatch:
    """One ``BatchEncoder.encode`` call per tick for S LOD0 streams; time per call."""

    params = ([1, 64, 1024], IMPLS, ["chained", "keyframe"])
    param_names: ClassVar[list[str]] = ["streams", "impl", "mode"]

    def setup(self, streams: int, impl: str, mode: str) -> None:
        if impl == "python" and streams > 64:
            raise NotImplementedError  # asv skips: minutes per sample in pure Python
        schema, morphs, rot = _content()
        self.enc = BatchEncoder(schema, streams, use_fast=impl == "cython")
        m = DeltaMode.CHAINED if mode == "chained" else DeltaMode.KEYFRAME
        for s in range(streams):
            self.enc.add_stream(s, s, 0, StreamParams(mode=m))
        rows = (np.arange(streams) * 7) % FRAMES
        self.frames = [
            (np.ascontiguousarray(morphs[(rows + i) % FRAMES]),
             np.ascontiguousarray(rot[(rows + i) % FRAMES]))
            for i in range(16)
        ]  # fmt: skip
        self.tick = 0
        self.enc.encode(0, *self.frames[0])

    def time_encode_tick(self, streams: int, impl: str, mode: str) -> None:
        self.tick += 1
        m, c = self.frames[self.tick % 16]
        self.enc.encode(self.tick * 1000 // 60, m, c)


class Decode:
    """Decode a whole recorded LOD0 stream (hello, keyframes, deltas); time per stream."""

    params = (IMPLS, [8, 16])
    param_names: ClassVar[list[str]] = ["impl", "bits"]

    def setup(self, impl: str, bits: int) -> None:
        schema, morphs, rot = _content()
        params = StreamParams(bits=bits)
        enc = BatchEncoder(schema, 1)
        enc.add_stream(0, 1, 0, params)
        self.hello = _encode_hello(1, schema, params)
        self.msgs = []
        for i in range(FRAMES):
            msg = bytes(enc.encode(i * 1000 // 60, morphs[i : i + 1], rot[i : i + 1]).message(0))
            if msg:
                self.msgs.append(msg)
        self.use_fast = impl == "cython"

    def time_decode_stream(self, impl: str, bits: int) -> None:
        dec = Decoder(use_fast=self.use_fast)
        dec.feed(self.hello)
        for msg in self.msgs:
            dec.feed(msg)
