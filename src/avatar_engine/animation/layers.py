"""Layer names, blend modes and the default per-session compositor configuration.

Composition order is fixed (later layers apply on top of earlier ones); what each layer does
is per-session data: a mode, a weight, a per-region mask, and two "ducking" tables that lower
a layer's weight per region while the session speaks or while live capture is present.

Effective weight of layer ``l`` for session ``s`` in region ``r``::

    w = weight[s, l] * gate[s, l] * mask[s, l, r]
        * (1 - duck_speech[s, l, r] * speaking[s])
        * (1 - duck_capture[s, l, r] * capture[s])

where ``gate`` is the capture-presence envelope for the capture layer, the speaking envelope
(times ``1 - thinking``) for the speech layer, and 1 otherwise. The animate step computes it
for all sessions in one kernel call with the envelopes (:mod:`avatar_engine.kernels.envelopes`).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Final

import numpy as np

from avatar_engine.kernels.compose import MODES, BlendMode
from avatar_engine.rigs.schema import REGION_ORDER, Region
from avatar_engine.rows import BlockField, RowTable, table_of
from avatar_engine.types import F32, I8


class Layer(IntEnum):
    """The compositor layers in composition order, first to last; the value is the layer's
    plane index. ``MANUAL`` is last so an override always wins."""

    PROCEDURAL = 0
    CAPTURE = 1
    SPEECH = 2
    EMOTION = 3
    MANUAL = 4


LAYER_NAMES: Final[tuple[str, ...]] = tuple(layer.name.lower() for layer in Layer)
"""The layer names users send (``set_layer(row, "capture", ...)``), in composition order."""
LAYER_INDEX: Final[dict[str, Layer]] = {layer.name.lower(): layer for layer in Layer}
N_LAYERS: Final = len(Layer)
N_REGIONS: Final = len(REGION_ORDER)

SPEECH_REGIONS: Final = (Region.MOUTH, Region.JAW, Region.TONGUE)
"""What speech owns while a session speaks."""
EMOTION_MOUTH_WHILE_SPEAKING: Final = 0.5
"""Share of an emotion's mouth/jaw shape kept while speaking: a smile narrows the lip spread
of the visemes instead of fighting them."""

DEFAULT_VMAX: Final[dict[Region, float]] = {
    Region.BROW: 15.0, Region.EYE: 40.0, Region.EYELASH: 40.0, Region.EAR: 10.0,
    Region.NOSE: 10.0, Region.CHEEK: 10.0, Region.MOUTH: 25.0, Region.JAW: 25.0,
    Region.TONGUE: 25.0, Region.NECK: 8.0, Region.HEAD: 4.0, Region.OTHER: 10.0,
}  # fmt: skip
"""Maximum speed per region in units per second (morph value, or channel units for the
rotations): a full blink closes in 25 ms at 40/s, a jaw opens fully in 40 ms at 25/s, the head
turns at most 4 * 40 = 160 degrees per second."""

DEFAULT_FILTER: Final[dict[Region, tuple[float, float, float]]] = {
    region: (0.5, 5.0, 2.0) for region in REGION_ORDER
}
"""One Euro ``(min_cutoff Hz, beta, d_cutoff Hz)`` for capture, per region. Tuned on the real
Live Link take with added noise (docs/expression.md): >= 5x less jitter at < 1 frame of lag on
fast motion. The same values suit every region on that take; the table exists so a rig or a
noisy tracker can loosen or tighten one region alone."""


def region_code(region: Region | str) -> int:
    """A region's column in the per-region tables (its index in ``REGION_ORDER``)."""
    return REGION_ORDER.index(Region(region))


def _default_config() -> tuple[I8, F32, F32, F32]:
    """A new session's (mode, mask, duck_speech, duck_capture) rows: the defaults users
    expect (see the module docstring and docs/expression.md)."""
    mode = np.full(N_LAYERS, BlendMode.OVERRIDE, np.int8)
    mode[Layer.EMOTION] = BlendMode.ADDITIVE
    mask = np.ones((N_LAYERS, N_REGIONS), np.float32)
    mask[Layer.SPEECH] = 0.0
    duck_speech = np.zeros((N_LAYERS, N_REGIONS), np.float32)
    for region in SPEECH_REGIONS:
        mask[Layer.SPEECH, region_code(region)] = 1.0
        duck_speech[Layer.EMOTION, region_code(region)] = 1.0 - EMOTION_MOUTH_WHILE_SPEAKING
    duck_capture = np.zeros((N_LAYERS, N_REGIONS), np.float32)
    duck_capture[Layer.EMOTION] = 1.0  # live capture is the face; presets step aside
    return mode, mask, duck_speech, duck_capture


class LayerConfig:
    """Per-session compositor settings (blocks ``layers.*`` of a row table, one row each)."""

    mode = BlockField[np.int8]()
    weight = BlockField[np.float32]()
    mask = BlockField[np.float32]()
    duck_speech = BlockField[np.float32]()
    duck_capture = BlockField[np.float32]()

    def __init__(self, rows: RowTable[Any] | int) -> None:
        mode, mask, duck_speech, duck_capture = _default_config()
        declare = table_of(rows).declare
        per_region = (N_LAYERS, N_REGIONS)
        self.mode = declare("layers.mode", (N_LAYERS,), np.int8, mode)
        self.weight = declare("layers.weight", (N_LAYERS,), np.float32, 1.0)
        self.mask = declare("layers.mask", per_region, np.float32, mask)
        self.duck_speech = declare("layers.duck_speech", per_region, np.float32, duck_speech)
        self.duck_capture = declare("layers.duck_capture", per_region, np.float32, duck_capture)

    def set(
        self,
        row: int,
        layer: str,
        *,
        mode: str | None = None,
        weight: float | None = None,
        mask: dict[str, float] | None = None,
        duck_speech: dict[str, float] | None = None,
        duck_capture: dict[str, float] | None = None,
    ) -> None:
        """Change one layer of one session; region tables name only the regions to change."""
        if layer not in LAYER_INDEX:
            raise ValueError(f"unknown layer {layer!r}; layers: {', '.join(LAYER_NAMES)}")
        li = LAYER_INDEX[layer]
        if mode is not None:
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
            self.mode[row, li] = MODES[mode]
        if weight is not None:
            if not np.isfinite(weight):
                raise ValueError("weight must be finite")
            self.weight[row, li] = weight
        for table, values in ((self.mask, mask), (self.duck_speech, duck_speech),
                              (self.duck_capture, duck_capture)):  # fmt: skip
            for region, value in (values or {}).items():
                if not np.isfinite(value):
                    raise ValueError(f"region {region!r}: value must be finite")
                table[row, li, region_code(region)] = value
