"""The rig file format (``avatar-engine/rig@1``), validated on load.

A rig file is data: which morphs a character has, which face region each belongs to, their
limits, its bone channels, and sparse weighted mappings from source vocabularies (ARKit 52,
visemes, emotion presets) onto its morphs. See ``docs/rigs.md`` for a walk-through.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RIG_FORMAT = "avatar-engine/rig@1"


class Region(StrEnum):
    """Face regions; compositor masks and LOD tables are expressed in them."""

    BROW = "brow"
    EYE = "eye"
    EYELASH = "eyelash"
    EAR = "ear"
    NOSE = "nose"
    CHEEK = "cheek"
    MOUTH = "mouth"
    JAW = "jaw"
    TONGUE = "tongue"
    NECK = "neck"
    HEAD = "head"
    OTHER = "other"


REGION_ORDER: tuple[Region, ...] = tuple(Region)
"""Region codes used in arrays are indices into this tuple."""

Axis = Literal["x", "y", "z"]
Weight = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelSpec(_Strict):
    """A rotation channel of the frame (Live Link's nine), and the bone it drives, if any."""

    name: str
    bone: str | None = None
    axis: Axis | None = None
    scale_deg: Annotated[float, Field(allow_inf_nan=False)] = 40.0
    """Bone rotation in degrees at channel value 1.0 (sign gives the direction)."""


class BoneDriver(_Strict):
    """A bone that moves with morph values, like CC4's jaw (``Jaw_Open`` -> 30 degrees)."""

    bone: str
    axis: Axis
    degrees_per_unit: dict[str, Weight]
    """Morph name -> degrees at morph value 1.0; contributions add."""


class LodSpec(_Strict):
    """One level of detail: which morphs and channels a subscriber at that level receives."""

    level: Annotated[int, Field(ge=1, le=3)]
    fps: Annotated[int, Field(ge=1, le=240)]
    regions: list[Region] = []
    morphs: list[str] = []
    channels: list[str] = []


class RigFile(_Strict):
    """The on-disk schema, before it is compiled into arrays by :class:`RigProfile`."""

    format: Literal["avatar-engine/rig@1"]
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
    description: str = ""
    extends: str | None = None
    regions: dict[Region, list[str]] = {}
    limits: dict[str, tuple[Weight, Weight]] = {}
    gain: dict[str, Weight] = {}
    offset: dict[str, Weight] = {}
    exclusive: list[tuple[str, str]] = []
    """(dominant, suppressed) morph pairs: the suppressed value is scaled by 1 - dominant."""
    channels: list[ChannelSpec] = []
    bone_drivers: list[BoneDriver] = []
    mappings: dict[str, dict[str, dict[str, Weight]]] = {}
    """Source vocabulary (``arkit52``, ``visemes``, ...) -> source name -> morph -> weight."""
    lod: list[LodSpec] = []

    @model_validator(mode="after")
    def _names_are_consistent(self) -> RigFile:
        if self.extends is not None:
            return self  # checked after the merge with the base rig
        morphs: list[str] = [m for names in self.regions.values() for m in names]
        seen: set[str] = set()
        for m in morphs:
            if m in seen:
                raise ValueError(f"regions: morph {m!r} is listed twice")
            seen.add(m)
        if not morphs:
            raise ValueError("regions: a rig needs at least one morph")

        def known(where: str, name: str) -> None:
            if name not in seen:
                raise ValueError(f"{where}: {name!r} is not a morph of this rig")

        for key, (lo, hi) in self.limits.items():
            known(f"limits.{key}", key)
            if not lo < hi:
                raise ValueError(f"limits.{key}: min {lo} must be below max {hi}")
        for key in self.gain:
            known(f"gain.{key}", key)
        for key in self.offset:
            known(f"offset.{key}", key)
        for i, (dominant, suppressed) in enumerate(self.exclusive):
            known(f"exclusive[{i}]", dominant)
            known(f"exclusive[{i}]", suppressed)
            if dominant == suppressed:
                raise ValueError(f"exclusive[{i}]: a morph cannot exclude itself")
        for i, driver in enumerate(self.bone_drivers):
            for morph in driver.degrees_per_unit:
                known(f"bone_drivers[{i}].degrees_per_unit", morph)
        for source, table in self.mappings.items():
            for source_name, targets in table.items():
                for morph in targets:
                    known(f"mappings.{source}.{source_name}", morph)
        channel_names = {c.name for c in self.channels}
        levels: set[int] = set()
        for spec in self.lod:
            if spec.level in levels:
                raise ValueError(f"lod: level {spec.level} is defined twice")
            levels.add(spec.level)
            for morph in spec.morphs:
                known(f"lod[{spec.level}].morphs", morph)
            for channel in spec.channels:
                if channel not in channel_names:
                    raise ValueError(f"lod[{spec.level}].channels: {channel!r} is not a channel")
        return self
