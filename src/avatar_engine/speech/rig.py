"""From the 45 speech channels to a rig's morphs, through the rig's own ``visemes`` mapping.

The rig file maps each canonical viseme to weighted morphs. Here every morph is assigned to an
articulator layer by the rig's region codes (jaw region -> jaw layer, tongue region -> tongue
layer, everything else -> lips layer), and the morph reads the viseme channels of its layer
only. So JA/LI gains, tongue-only visemes and the contact rules act on the right morphs of any
rig without per-rig code.

One exception keeps direct-viseme rigs (Oculus ``viseme_*``, VRM) whole: a morph that only
tongue-only visemes drive (Oculus ``viseme_DD``) is the tongue shape itself, so it reads the
tongue layer whatever its region.

The result is an ordinary sparse map, run by the retarget stage (numpy/numba/native), which
also applies the rig's gains, offsets and limits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avatar_engine.kernels.backends import BackendName, resolve_backend
from avatar_engine.kernels.retarget import RetargetKernel, RetargetTables, make_kernel
from avatar_engine.rigs.profile import RigProfile
from avatar_engine.rigs.schema import REGION_ORDER, Region
from avatar_engine.rigs.sparse import SparseMap
from avatar_engine.speech.coarticulation import (
    CHANNEL_NAMES,
    CHANNELS,
    JAW,
    LIPS,
    N_VISEMES,
    TONGUE,
    Keyframes,
    dominance_table,
)
from avatar_engine.speech.visemes import VISEMES
from avatar_engine.types import F32, I8


def morph_layers(rig: RigProfile, viseme_map: SparseMap) -> I8:
    """Articulator layer of every morph of ``rig`` (see the module docstring)."""
    jaw = REGION_ORDER.index(Region.JAW)
    tongue = REGION_ORDER.index(Region.TONGUE)
    codes = rig.region_codes
    layers = np.full(rig.morph_count, LIPS, dtype=np.int8)
    layers[codes == jaw] = JAW
    layers[codes == tongue] = TONGUE
    tongue_only = dominance_table().tongue_only
    for m in range(viseme_map.n_outputs):
        srcs = viseme_map.indices[viseme_map.indptr[m] : viseme_map.indptr[m + 1]]
        if srcs.shape[0] and bool(tongue_only[srcs].all()):
            layers[m] = TONGUE
    return layers


def layered_map(rig: RigProfile) -> SparseMap:
    """The rig's 15-viseme map widened to the 45 layered channels."""
    vmap = rig.sparse_map("visemes", VISEMES)
    layers = morph_layers(rig, vmap)
    triplets: list[tuple[int, int, float]] = []
    for m in range(vmap.n_outputs):
        for k in range(int(vmap.indptr[m]), int(vmap.indptr[m + 1])):
            v = int(vmap.indices[k])
            triplets.append((m, int(layers[m]) * N_VISEMES + v, float(vmap.weights[k])))
    return SparseMap.from_triplets(rig.morph_count, CHANNELS, triplets)


class SpeechRig:
    """Speech channels -> one rig's morphs, for any number of sessions per call."""

    __slots__ = ("_kernel", "backend", "mapping", "rig")

    def __init__(self, rig: RigProfile, *, backend: str | None = None) -> None:
        self.rig = rig
        self.backend: BackendName = resolve_backend(backend)
        self.mapping = layered_map(rig)
        tables = RetargetTables(
            mapping=self.mapping, gain=rig.gain, offset=rig.offset, lower=rig.lower,
            upper=rig.upper, exclusive=rig.exclusive,
        )  # fmt: skip
        self._kernel: RetargetKernel = make_kernel(tables, self.backend)

    @property
    def morph_names(self) -> tuple[str, ...]:
        """The rig's morphs, the columns of :meth:`run`'s output."""
        return self.rig.morph_names

    @property
    def channel_names(self) -> Sequence[str]:
        """The 45 speech channels, the columns of :meth:`run`'s input."""
        return CHANNEL_NAMES

    def run(self, channels: F32, out: F32) -> None:
        """(S, 45) channel values -> (S, M) morphs, into the caller's buffer."""
        bad = self._kernel(channels, out)
        if bad >= 0:
            raise ValueError(f"non-finite speech channel {CHANNEL_NAMES[bad % CHANNELS]}")

    def render(self, keys: Keyframes, fps: float, duration: float | None = None) -> F32:
        """Offline: sample keyframes on a uniform grid from time 0 and map to morphs."""
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError("fps must be positive")
        end = float(keys.times[-1]) if len(keys) and duration is None else (duration or 0.0)
        count = int(np.floor(max(end, 0.0) * fps + 1e-9)) + 1
        channels = keys.sample(np.arange(count, dtype=np.float64) / fps)
        out = np.empty((count, self.rig.morph_count), dtype=np.float32)
        self.run(np.ascontiguousarray(channels), out)
        return out
