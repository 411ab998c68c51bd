"""What a hello announces: names, LOD tables and quantization ranges, compiled to arrays.

A :class:`StreamSchema` is built once per rig (``StreamSchema.from_rig``) and shared by every
encoder of that rig; a decoder rebuilds the same object from a hello. Quantization is defined
here, once, as formulas both sides evaluate in IEEE double in the same order, so the Python,
Cython, C++ and JS implementations agree bit for bit (docs/protocol.md, "Quantization").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from avatar_engine.codec.wire import (
    DEFAULT_LOD_FPS,
    LOD_LEVELS,
    MAX_CHANNELS,
    MAX_MORPHS,
)
from avatar_engine.rigs.profile import RigProfile
from avatar_engine.types import F32, F64, I32

F32_MAX = float(np.finfo(np.float32).max)
"""Ranges must be float32 values so every decoder's float32 output is finite (and C++'s
double -> float conversion is defined)."""


def code_limits(bits: int) -> tuple[int, int]:
    """(Q, R): the top morph code (unsigned) and top rotation code (signed) for ``bits``."""
    if bits == 8:
        return 255, 127
    if bits == 16:
        return 65535, 32767
    raise ValueError(f"bits must be 8 or 16, not {bits}")


@dataclass(frozen=True, slots=True)
class LodTable:
    """One level: the rig morphs and channels a subscriber at this level receives.

    ``morphs`` and ``channels`` are ascending indices into the rig's morph and channel lists.
    On the wire the level's elements are the morphs, then the channels, in this order.
    """

    level: int
    fps: int
    morphs: tuple[int, ...]
    channels: tuple[int, ...]

    @property
    def size(self) -> int:
        """Elements sent at this level: its morphs plus its channels."""
        return len(self.morphs) + len(self.channels)


@dataclass(frozen=True, slots=True)
class QuantTable:
    """Per-element arrays for one (LOD, bit depth): what the encoder kernels read.

    ``index`` points into the concatenated ``[morphs | channels]`` vector of a session;
    a code is ``clamp(floor((v - lo) * scale + 0.5), cmin, cmax)``, NaN -> 0.
    """

    index: I32
    lo: F64
    scale: F64
    cmin: I32
    cmax: I32
    n_morphs: int


@dataclass(frozen=True)
class StreamSchema:
    """The static description of a session's stream, as carried by hello."""

    rig: str
    morph_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    lo: F64
    """Per-morph range start (the value of code 0)."""
    hi: F64
    """Per-morph range end (the value of the top code)."""
    rot_scale: float
    """Rotation channels quantize over [-rot_scale, rot_scale]."""
    lods: tuple[LodTable, ...]
    _quant: dict[tuple[int, int], QuantTable] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        m, c = len(self.morph_names), len(self.channel_names)
        if not 0 < m <= MAX_MORPHS:
            raise ValueError(f"a stream has 1..{MAX_MORPHS} morphs, not {m}")
        if c > MAX_CHANNELS:
            raise ValueError(f"a stream has at most {MAX_CHANNELS} channels, not {c}")
        if self.lo.shape != (m,) or self.hi.shape != (m,):
            raise ValueError("lo and hi need one value per morph")
        if not (np.all(np.abs(self.lo) <= F32_MAX) and np.all(np.abs(self.hi) <= F32_MAX)):
            raise ValueError("morph ranges must be finite float32 values")
        if not np.all(self.hi > self.lo):
            raise ValueError("every morph range needs hi > lo")
        if not 0 < self.rot_scale <= F32_MAX:
            raise ValueError("rot_scale must be a positive finite float32 value")
        if len(self.lods) != LOD_LEVELS:
            raise ValueError(f"a stream has exactly {LOD_LEVELS} LOD levels")
        for i, lod in enumerate(self.lods):
            if lod.level != i:
                raise ValueError(f"LOD tables must be listed in level order (0..{LOD_LEVELS - 1})")
            if not 1 <= lod.fps <= 240:
                raise ValueError(f"LOD {i}: fps must be 1..240")
            for seq, n in ((lod.morphs, m), (lod.channels, c)):
                if list(seq) != sorted(set(seq)) or any(not 0 <= x < n for x in seq):
                    raise ValueError(f"LOD {i}: indices must be ascending, unique and in range")
            if lod.size == 0:
                raise ValueError(f"LOD {i}: a level needs at least one element")
        if self.lods[0].size != m + c:
            # Decoders size their state by level 0; a larger level would overrun it.
            raise ValueError("LOD 0 must list every morph and every channel")

    @property
    def n_morphs(self) -> int:
        """Morphs in the rig's order (every LOD sends a subset of these)."""
        return len(self.morph_names)

    @property
    def n_channels(self) -> int:
        """Channels (head and eye rotations) in the rig's order."""
        return len(self.channel_names)

    @classmethod
    def from_rig(
        cls,
        rig: RigProfile,
        *,
        rot_scale: float = 1.0,
        fps: Sequence[int] | None = None,
    ) -> StreamSchema:
        """The schema of a rig: ranges from its morph limits, LOD levels 1..3 from its file.

        A level the rig file leaves out repeats the level above it, so a rig without LOD
        tables still streams (at every level's rate) rather than failing.
        """
        rates = list(fps) if fps is not None else [0] * LOD_LEVELS
        by_level = {spec.level: spec for spec in rig.lod}
        channel_index = {name: i for i, name in enumerate(rig.channel_names)}
        lods = [
            LodTable(
                0,
                rates[0] or DEFAULT_LOD_FPS[0],
                tuple(range(rig.morph_count)),
                tuple(range(len(rig.channel_names))),
            )
        ]
        for level in range(1, LOD_LEVELS):
            spec = by_level.get(level)
            if spec is None:
                prev = lods[-1]
                lods.append(LodTable(level, rates[level] or prev.fps, prev.morphs, prev.channels))
                continue
            morphs = set(rig.morphs_in(*spec.regions))
            morphs.update(rig.morph_index(name) for name in spec.morphs)
            channels = {channel_index[name] for name in spec.channels}
            lods.append(
                LodTable(
                    level,
                    rates[level] or spec.fps,
                    tuple(sorted(morphs)),
                    tuple(sorted(channels)),
                )
            )
        return cls(
            rig=rig.name,
            morph_names=tuple(rig.morph_names),
            channel_names=tuple(rig.channel_names),
            lo=rig.lower.astype(np.float64),
            hi=rig.upper.astype(np.float64),
            rot_scale=float(rot_scale),
            lods=tuple(lods),
        )

    def quant_table(self, level: int, bits: int) -> QuantTable:
        """Per-element quantization arrays for one level and bit depth (cached)."""
        key = (level, bits)
        table = self._quant.get(key)
        if table is not None:
            return table
        q, r = code_limits(bits)
        lod = self.lods[level]
        morphs = np.asarray(lod.morphs, dtype=np.int64)
        channels = np.asarray(lod.channels, dtype=np.int64)
        lo = self.lo[morphs]
        hi = self.hi[morphs]
        table = QuantTable(
            index=np.concatenate([morphs, channels + self.n_morphs]).astype(np.int32),
            lo=np.concatenate([lo, np.zeros(len(channels))]),
            scale=np.concatenate([q / (hi - lo), np.full(len(channels), r / self.rot_scale)]),
            cmin=np.concatenate(
                [np.zeros(len(morphs), np.int32), np.full(len(channels), -r, np.int32)]
            ),
            cmax=np.concatenate(
                [np.full(len(morphs), q, np.int32), np.full(len(channels), r, np.int32)]
            ),
            n_morphs=len(morphs),
        )
        for arr in (table.index, table.lo, table.scale, table.cmin, table.cmax):
            arr.setflags(write=False)
        self._quant[key] = table
        return table

    def error_bound(self, bits: int, dead_band: float) -> tuple[F64, float]:
        """Max |decoded - sent| per morph, and for rotations, for in-range values.

        The decoder holds a code within ``max(0.5, dead_band)`` steps of the true value (the
        dead band is measured against the value, not against its rounded code).
        """
        q, r = code_limits(bits)
        steps = max(0.5, dead_band)
        return (self.hi - self.lo) / q * steps, self.rot_scale / r * steps


def quantize(values: npt.NDArray[np.floating], table: QuantTable) -> tuple[F64, I32]:
    """(x, code): the real-valued code position and the rounded, clamped code of each element."""
    x = (values.astype(np.float64) - table.lo) * table.scale
    code = np.floor(x + 0.5)
    code = np.where(np.isnan(code), 0.0, np.clip(code, table.cmin, table.cmax))
    return x, code.astype(np.int32)


def dequantize_morphs(codes: npt.ArrayLike, lo: F64, hi: F64, bits: int) -> F32:
    """``float32(lo + (hi - lo) * code / Q)``, evaluated left to right in double."""
    q, _ = code_limits(bits)
    c = np.asarray(codes, dtype=np.float64)
    return (lo + ((hi - lo) * c) / q).astype(np.float32)


def dequantize_channels(codes: npt.ArrayLike, rot_scale: float, bits: int) -> F32:
    """``float32(rot_scale * code / R)``, evaluated left to right in double."""
    _, r = code_limits(bits)
    c = np.asarray(codes, dtype=np.float64)
    return ((rot_scale * c) / r).astype(np.float32)
