"""VMC protocol (OSC over UDP): decode a Performer's face stream, build a face stream to send.

A VMC sender emits, per frame, ``/VMC/Ext/Blend/Val s name, f value`` for every blendshape clip,
then one ``/VMC/Ext/Blend/Apply``; bones arrive as ``/VMC/Ext/Bone/Pos s bone, f px py pz,
f qx qy qz qw`` (Unity coordinates, local rotation). Usually a whole frame is one OSC bundle,
but some senders send one message per datagram, so the decoder keeps state *across* datagrams
and emits a frame on every ``Apply`` (docs/ingest.md, "VMC").

Names: ARKit "Perfect Sync" clips (``EyeBlinkLeft``; any of the three ARKit spellings is
accepted) map one to one; VRM 0.x presets (``Blink_L``, ``A``, ``Joy``) and VRM 1.0
expressions (``blinkLeft``, ``aa``, ``happy``) are expanded into ARKit weights through
:data:`VRM_TO_ARKIT`, an approximation documented there. Matching ignores case (the spec says
names are case-sensitive, but senders disagree on the case of VRM keys). When a frame carries
both, explicit Perfect Sync values win over preset expansions for the same ARKit shape.

Head rotation comes from the ``Head`` bone (composed with ``Neck`` when a full-body Performer
sends both), eye rotations from ``LeftEye``/``RightEye``; Unity Euler angles (yaw about Y,
pitch about X, roll about Z, in degrees) become engine channels via ``degrees_per_unit``.
Bone poses are state: the last one received is reused until a new one arrives.

OSC parsing and writing use :mod:`avatar_engine.formats.osc` (python-osc measured about 3x
slower on a VMC bundle, see there); the tests check both directions against python-osc.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

import numpy as np

from avatar_engine.formats import osc
from avatar_engine.formats.osc import OscMessage
from avatar_engine.formats.rotation import (
    DEGREES_PER_UNIT,
    MAX_ROTATION_UNITS,
    quat_to_yaw_pitch_roll,
    yaw_pitch_roll_to_quat,
)
from avatar_engine.rigs.arkit import (
    ARKIT_COUNT,
    ARKIT_NAMES,
    ROTATION_COUNT,
    ROTATION_NAMES,
    UnknownNameError,
    normalize_arkit_name,
)
from avatar_engine.types import F32

DEFAULT_PORT: Final = 39539
"""Where a Marionette (receiver) listens; Performers send here."""
ASSISTANT_PORT: Final = 39540
MAX_DATAGRAM_BYTES: Final = 32768
"""A full-body Performer frame (55 bones + 52 clips) is about 6 KB; 32 KiB leaves room."""
MAX_MESSAGES: Final = 1024
"""Messages per datagram (nested bundles included)."""
MAX_VALUES_PER_FRAME: Final = 512
"""``Blend/Val`` messages between two ``Apply``; beyond this the pending frame is discarded."""
MAX_BUNDLE_DEPTH: Final = 8

ADDR_BLEND_VAL: Final = "/VMC/Ext/Blend/Val"
ADDR_BLEND_APPLY: Final = "/VMC/Ext/Blend/Apply"
ADDR_BONE_POS: Final = "/VMC/Ext/Bone/Pos"
ADDR_ROOT_POS: Final = "/VMC/Ext/Root/Pos"
ADDR_OK: Final = "/VMC/Ext/OK"
ADDR_TIME: Final = "/VMC/Ext/T"

NameSet = Literal["perfect_sync", "vrm0", "vrm1"]

_A = {name: i for i, name in enumerate(ARKIT_NAMES)}
_R = {name: i for i, name in enumerate(ROTATION_NAMES)}


# --- VRM presets <-> ARKit -----------------------------------------------------------------

VRM_TO_ARKIT: Final[dict[str, dict[str, float]]] = {
    # Approximations chosen by us (no standard exists): a preset at 1.0 contributes these ARKit
    # weights; contributions add and the sum is clamped to 1. Visemes follow jaw opening and lip
    # shape (A open, I/E spread, U pucker, O round); emotions use the FACS-like ARKit shapes.
    "blink": {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0},
    "blink_l": {"eyeBlinkLeft": 1.0},
    "blink_r": {"eyeBlinkRight": 1.0},
    "a": {"jawOpen": 0.6},
    "i": {"jawOpen": 0.15, "mouthStretchLeft": 0.5, "mouthStretchRight": 0.5},
    "u": {"jawOpen": 0.1, "mouthPucker": 0.8, "mouthFunnel": 0.3},
    "e": {"jawOpen": 0.3, "mouthStretchLeft": 0.3, "mouthStretchRight": 0.3},
    "o": {"jawOpen": 0.4, "mouthFunnel": 0.7},
    "joy": {
        "mouthSmileLeft": 0.8, "mouthSmileRight": 0.8,
        "cheekSquintLeft": 0.4, "cheekSquintRight": 0.4,
    },
    "fun": {"mouthSmileLeft": 0.6, "mouthSmileRight": 0.6},
    "relaxed": {"mouthSmileLeft": 0.3, "mouthSmileRight": 0.3},
    "angry": {
        "browDownLeft": 0.8, "browDownRight": 0.8, "noseSneerLeft": 0.3, "noseSneerRight": 0.3,
    },
    "sorrow": {"browInnerUp": 0.7, "mouthFrownLeft": 0.6, "mouthFrownRight": 0.6},
    "surprised": {
        "browInnerUp": 0.8, "browOuterUpLeft": 0.7, "browOuterUpRight": 0.7,
        "eyeWideLeft": 0.6, "eyeWideRight": 0.6, "jawOpen": 0.3,
    },
    "lookup": {"eyeLookUpLeft": 1.0, "eyeLookUpRight": 1.0},
    "lookdown": {"eyeLookDownLeft": 1.0, "eyeLookDownRight": 1.0},
    # Left/right are the face's own sides (Apple's convention): looking to one's left turns the
    # left eye outwards and the right eye inwards.
    "lookleft": {"eyeLookOutLeft": 1.0, "eyeLookInRight": 1.0},
    "lookright": {"eyeLookInLeft": 1.0, "eyeLookOutRight": 1.0},
    "neutral": {},
}  # fmt: skip
"""Lower-cased VRM 0.x preset -> ARKit weights at preset value 1.0."""

VRM1_ALIASES: Final[dict[str, str]] = {
    "blinkleft": "blink_l", "blinkright": "blink_r", "aa": "a", "ih": "i", "ou": "u",
    "ee": "e", "oh": "o", "happy": "joy", "sad": "sorrow",
}  # fmt: skip
"""Lower-cased VRM 1.0 expression -> the VRM 0.x preset it renames."""

VRM0_NAMES: Final[tuple[str, ...]] = (
    "Neutral", "A", "I", "U", "E", "O", "Blink", "Blink_L", "Blink_R", "LookUp", "LookDown",
    "LookLeft", "LookRight", "Joy", "Angry", "Sorrow", "Fun",
)  # fmt: skip
"""VRM 0.x presets as UniVRM spells them (what we send)."""
VRM1_NAMES: Final[dict[str, str]] = {
    "A": "aa", "I": "ih", "U": "ou", "E": "ee", "O": "oh", "Blink": "blink",
    "Blink_L": "blinkLeft", "Blink_R": "blinkRight", "LookUp": "lookUp",
    "LookDown": "lookDown", "LookLeft": "lookLeft", "LookRight": "lookRight", "Joy": "happy",
    "Angry": "angry", "Sorrow": "sad", "Fun": "relaxed", "Neutral": "neutral",
}  # fmt: skip
"""VRM 0.x preset -> VRM 1.0 expression name (what we send with ``names="vrm1"``)."""

ARKIT_TO_VRM: Final[dict[str, dict[str, float]]] = {
    # Egress approximation: preset = clamp(sum(weight * arkit), 0, 1). Blink is not sent (the
    # per-eye presets carry it; sending both would close the eyes twice on most models).
    "Blink_L": {"eyeBlinkLeft": 1.0},
    "Blink_R": {"eyeBlinkRight": 1.0},
    "A": {"jawOpen": 1.0},
    "I": {"mouthStretchLeft": 0.5, "mouthStretchRight": 0.5},
    "U": {"mouthPucker": 1.0},
    "E": {"mouthStretchLeft": 0.25, "mouthStretchRight": 0.25, "mouthSmileLeft": 0.25,
          "mouthSmileRight": 0.25},
    "O": {"mouthFunnel": 1.0},
    "Joy": {"mouthSmileLeft": 0.5, "mouthSmileRight": 0.5},
    "Angry": {"browDownLeft": 0.5, "browDownRight": 0.5},
    "Sorrow": {"mouthFrownLeft": 0.5, "mouthFrownRight": 0.5},
    "LookUp": {"eyeLookUpLeft": 0.5, "eyeLookUpRight": 0.5},
    "LookDown": {"eyeLookDownLeft": 0.5, "eyeLookDownRight": 0.5},
    "LookLeft": {"eyeLookOutLeft": 0.5, "eyeLookInRight": 0.5},
    "LookRight": {"eyeLookInLeft": 0.5, "eyeLookOutRight": 0.5},
}  # fmt: skip
"""VRM preset (UniVRM spelling) -> ARKit weights, for VMC output with VRM names."""


def _preset_vector(table: dict[str, float]) -> F32:
    vec = np.zeros(ARKIT_COUNT, dtype=np.float32)
    for name, weight in table.items():
        vec[_A[name]] = weight
    return vec


_PRESET_VECTORS: Final[dict[str, F32]] = {
    key: _preset_vector(table) for key, table in VRM_TO_ARKIT.items()
}
_EGRESS_MATRIX: Final = np.stack([_preset_vector(t) for t in ARKIT_TO_VRM.values()])
_EGRESS_NAMES: Final[tuple[str, ...]] = tuple(ARKIT_TO_VRM)

PERFECT_SYNC_NAMES: Final[tuple[str, ...]] = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)
"""The 52 Perfect Sync clip names (PascalCase ARKit), in canonical order."""


def _resolve_name(name: str) -> int | F32 | None:
    """ARKit index, a VRM preset's ARKit vector, or None for an unknown name."""
    try:
        canonical = normalize_arkit_name(name)
    except UnknownNameError:
        key = name.strip().lower()
        key = VRM1_ALIASES.get(key, key)
        return _PRESET_VECTORS.get(key)
    return _A.get(canonical)  # None for a rotation name sent as a blendshape


# --- OSC datagrams --------------------------------------------------------------------------


class VmcDropReason(StrEnum):
    """Why a datagram, a message or a pending frame was dropped (counted per reason)."""

    TOO_LARGE = "too_large"
    MALFORMED_OSC = "malformed_osc"
    TOO_MANY_MESSAGES = "too_many_messages"
    BAD_ARGUMENTS = "bad_arguments"
    NON_FINITE = "non_finite"
    UNKNOWN_NAME = "unknown_name"
    TOO_MANY_VALUES = "too_many_values"


class VmcPacketError(ValueError):
    """A datagram that is not usable OSC; ``reason`` says which check failed."""

    def __init__(self, reason: VmcDropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


def parse_datagram(data: bytes) -> list[OscMessage]:
    """All OSC messages of one datagram, in order, as ``(address, args)``.

    Bundle time tags are ignored: VMC frames are applied on arrival. Raises
    :class:`VmcPacketError` for oversized or malformed datagrams.
    """
    if len(data) > MAX_DATAGRAM_BYTES:
        raise VmcPacketError(VmcDropReason.TOO_LARGE, f"{len(data)} bytes")
    try:
        return osc.parse_datagram(data, max_messages=MAX_MESSAGES, max_depth=MAX_BUNDLE_DEPTH)
    except osc.OscError as exc:
        reason = VmcDropReason.TOO_MANY_MESSAGES if exc.too_many else VmcDropReason.MALFORMED_OSC
        raise VmcPacketError(reason, str(exc)) from None


# --- decoder state machine -------------------------------------------------------------------


@dataclass(slots=True)
class VmcFrame:
    """One applied frame: engine-ready arrays."""

    arkit: F32
    rotations: F32
    values: int
    """How many ``Blend/Val`` messages made this frame."""


@dataclass(slots=True)
class VmcDecodeResult:
    """What one datagram produced: frames (one per ``Apply``) and per-reason issue counts."""

    frames: list[VmcFrame] = field(default_factory=list)
    issues: dict[str, int] = field(default_factory=dict)
    unknown_names: list[str] = field(default_factory=list)
    clamped: int = 0

    def count(self, reason: VmcDropReason, n: int = 1) -> None:
        """Count ``n`` drops of one reason (the per-reason totals the receiver's stats report)."""
        self.issues[reason.value] = self.issues.get(reason.value, 0) + n


def _finite_floats(args: Sequence[Any], start: int, count: int) -> list[float] | None:
    if len(args) < start + count:
        return None
    out = []
    for value in args[start : start + count]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        out.append(float(value))
    return out


def _qmul(
    a: tuple[float, float, float, float], b: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


_IDENTITY: Final = (0.0, 0.0, 0.0, 1.0)
_MISSING: Final = object()
_BONE_CHANNELS: Final[dict[str, tuple[int, int, int]]] = {
    # bone -> (yaw, pitch, roll) channel indices
    "head": (_R["HeadYaw"], _R["HeadPitch"], _R["HeadRoll"]),
    "lefteye": (_R["LeftEyeYaw"], _R["LeftEyePitch"], _R["LeftEyeRoll"]),
    "righteye": (_R["RightEyeYaw"], _R["RightEyePitch"], _R["RightEyeRoll"]),
}


class VmcDecoder:
    """Accumulates ``Blend/Val`` and bone poses across datagrams; emits a frame per ``Apply``.

    ``axis_signs`` multiplies (yaw, pitch, roll) after conversion, for receivers whose idea of
    a positive turn differs from Unity's; the default keeps Unity's signs.
    """

    __slots__ = (
        "_axis_signs",
        "_cache",
        "_degrees_per_unit",
        "_explicit",
        "_explicit_set",
        "_poses",
        "_presets",
        "_rotations",
        "_values",
    )

    _CACHE_LIMIT: Final = 1024

    def __init__(
        self,
        *,
        degrees_per_unit: float = DEGREES_PER_UNIT,
        axis_signs: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        self._degrees_per_unit = degrees_per_unit
        self._axis_signs = axis_signs
        self._explicit = np.zeros(ARKIT_COUNT, dtype=np.float32)
        self._explicit_set = np.zeros(ARKIT_COUNT, dtype=bool)
        self._presets = np.zeros(ARKIT_COUNT, dtype=np.float32)
        self._values = 0
        self._rotations = np.zeros(ROTATION_COUNT, dtype=np.float32)
        self._poses: dict[str, tuple[float, float, float, float]] = {}
        self._cache: dict[str, Any] = {}

    def _reset_pending(self) -> None:
        self._explicit.fill(0.0)
        self._explicit_set.fill(False)
        self._presets.fill(0.0)
        self._values = 0

    def _lookup(self, name: str) -> int | F32 | None:
        """Resolve a name not in the cache yet, and cache it."""
        resolved = _resolve_name(name)
        if len(self._cache) >= self._CACHE_LIMIT:  # bounded: garbage names cannot grow it
            self._cache.clear()
        self._cache[name] = resolved
        return resolved

    def _blend_val(self, args: list[Any], result: VmcDecodeResult) -> None:
        # The per-message hot path (52 per frame): type() checks, no helper calls.
        if len(args) != 2:
            result.count(VmcDropReason.BAD_ARGUMENTS)
            return
        name, value = args
        if type(name) is not str or type(value) not in (float, int):
            result.count(VmcDropReason.BAD_ARGUMENTS)
            return
        if not math.isfinite(value):
            result.count(VmcDropReason.NON_FINITE)
            return
        if self._values >= MAX_VALUES_PER_FRAME:
            result.count(VmcDropReason.TOO_MANY_VALUES)
            self._reset_pending()
            return
        target = self._cache.get(name, _MISSING)
        if target is _MISSING:
            target = self._lookup(name)
        if target is None:
            result.count(VmcDropReason.UNKNOWN_NAME)
            if len(result.unknown_names) < 16:
                result.unknown_names.append(name[:64])
            return
        if value < 0.0 or value > 1.0:
            value = 0.0 if value < 0.0 else 1.0
            result.clamped += 1
        self._values += 1
        if type(target) is int:
            self._explicit[target] = value
            self._explicit_set[target] = True
        else:
            self._presets += target * np.float32(value)

    def _bone(self, args: list[Any], result: VmcDecodeResult) -> None:
        if len(args) != 8 or not isinstance(args[0], str):
            result.count(VmcDropReason.BAD_ARGUMENTS)
            return
        bone = args[0].lower()
        if bone not in ("head", "neck", "lefteye", "righteye"):
            return  # body bones are valid VMC; the face engine does not use them
        numbers = _finite_floats(args, 1, 7)
        if numbers is None:
            result.count(VmcDropReason.BAD_ARGUMENTS)
            return
        if not all(math.isfinite(v) for v in numbers):
            result.count(VmcDropReason.NON_FINITE)
            return
        qx, qy, qz, qw = numbers[3:]
        self._poses[bone] = (qx, qy, qz, qw)
        self._update_rotations(bone, result)

    def _update_rotations(self, bone: str, result: VmcDecodeResult) -> None:
        if bone in ("head", "neck"):
            neck = self._poses.get("neck", _IDENTITY)
            quat = _qmul(neck, self._poses.get("head", _IDENTITY))
            targets = _BONE_CHANNELS["head"]
        else:
            quat = self._poses[bone]
            targets = _BONE_CHANNELS[bone]
        angles = quat_to_yaw_pitch_roll(*quat)
        for target, degrees, sign in zip(targets, angles, self._axis_signs, strict=True):
            units = sign * degrees / self._degrees_per_unit
            if abs(units) > MAX_ROTATION_UNITS:
                units = math.copysign(MAX_ROTATION_UNITS, units)
                result.clamped += 1
            self._rotations[target] = units

    def feed(self, messages: Iterable[OscMessage]) -> VmcDecodeResult:
        """Apply one datagram's messages; frames are complete at each ``Apply``."""
        result = VmcDecodeResult()
        for address, args in messages:
            if address == ADDR_BLEND_VAL:
                self._blend_val(args, result)
            elif address == ADDR_BLEND_APPLY:
                arkit = np.where(
                    self._explicit_set, self._explicit, np.minimum(self._presets, 1.0)
                ).astype(np.float32)
                result.frames.append(VmcFrame(arkit, self._rotations.copy(), self._values))
                self._reset_pending()
            elif address == ADDR_BONE_POS:
                self._bone(args, result)
            # Root/Pos, OK, T, camera, devices ...: valid VMC the face engine does not need.
        return result

    def feed_datagram(self, data: bytes) -> VmcDecodeResult:
        """:func:`parse_datagram` then :meth:`feed`; raises :class:`VmcPacketError`."""
        return self.feed(parse_datagram(data))


# --- building (egress) -----------------------------------------------------------------------

BonePositions = dict[str, tuple[float, float, float]]
"""Rest local position (Unity coordinates, metres, relative to the parent bone) per VMC bone."""

EGRESS_BONES: Final[tuple[str, ...]] = ("Head", "LeftEye", "RightEye")
"""The bones VMC egress sends (the nine rotation channels drive exactly these)."""

HUMANOID_REST_POSITIONS: Final[BonePositions] = {
    "Head": (0.0, 0.1, 0.0),
    "LeftEye": (-0.032, 0.065, 0.03),
    "RightEye": (0.032, 0.065, 0.03),
}
"""Default rest local positions, an assumption (the engine's rigs carry no skeleton): an adult
VRM humanoid's head joint 10 cm above its neck joint, eyes 6.4 cm apart, 6.5 cm above and 3 cm
in front of the head joint (Unity: the avatar faces +z, +x is its right, +y is up). Receivers
that synchronise positions show the head and eyes there; pass the receiving avatar's own values
(its Head, LeftEye and RightEye ``localPosition``) for an exact fit (docs/unreal.md, VMC)."""


def check_bone_positions(positions: BonePositions) -> BonePositions:
    """Exactly the egress bones, each three finite coordinates within 10 m (else ValueError)."""
    if set(positions) != set(EGRESS_BONES):
        raise ValueError(f"bone positions need exactly {', '.join(EGRESS_BONES)}")
    out: BonePositions = {}
    for bone, xyz in positions.items():
        if len(xyz) != 3 or not all(math.isfinite(v) and abs(v) <= 10.0 for v in xyz):
            raise ValueError(f"bone position {bone}: three finite coordinates within 10 m")
        out[bone] = (float(xyz[0]), float(xyz[1]), float(xyz[2]))
    return out


osc_message_bytes = osc.message_bytes
osc_bundle_bytes = osc.bundle_bytes


def vmc_blend_values(arkit: F32, names: NameSet = "perfect_sync") -> list[tuple[str, float]]:
    """The ``(clip name, value)`` pairs a frame sends for a name set."""
    weights = np.clip(np.asarray(arkit, dtype=np.float32).reshape(-1), 0.0, 1.0)
    if weights.shape[0] != ARKIT_COUNT:
        raise ValueError(f"expected {ARKIT_COUNT} weights")
    if names == "perfect_sync":
        return list(zip(PERFECT_SYNC_NAMES, weights.tolist(), strict=True))
    presets = np.clip(_EGRESS_MATRIX @ weights, 0.0, 1.0).tolist()
    if names == "vrm1":
        return [(VRM1_NAMES[n], v) for n, v in zip(_EGRESS_NAMES, presets, strict=True)]
    return list(zip(_EGRESS_NAMES, presets, strict=True))


def build_vmc_frame(
    arkit: F32,
    rotations: F32 | None = None,
    *,
    names: NameSet = "perfect_sync",
    degrees_per_unit: float = DEGREES_PER_UNIT,
    bundle: bool = True,
    time: float | None = None,
    bones: bool = True,
    bone_positions: BonePositions | None = None,
) -> list[bytes]:
    """The datagrams of one VMC frame: head and eye bones, blend values, then ``Apply``.

    Bones come first so a receiver that applies on ``Apply`` (ours does) sees this frame's
    pose even when the messages travel unbundled. Each ``/VMC/Ext/Bone/Pos`` carries the bone's
    rest local position (``bone_positions``, default :data:`HUMANOID_REST_POSITIONS`) with its
    rotation: receivers that synchronise bone positions (EVMC4U does by default) would
    otherwise pull the head onto the neck's pivot and the eyes onto the head's.

    With ``bundle=True`` (the default, what VSeeFace and VMC itself send) the result is one
    datagram; with ``bundle=False`` one datagram per message, for receivers that cannot parse
    bundles. ``time`` adds ``/VMC/Ext/T`` (sender liveness); ``/VMC/Ext/OK 1`` is always sent.
    """
    messages = [osc_message_bytes(ADDR_OK, 1)]
    if time is not None:
        messages.append(osc_message_bytes(ADDR_TIME, float(time)))
    if bones and rotations is not None:
        rot = np.asarray(rotations, dtype=np.float64).reshape(-1)
        if rot.shape[0] != ROTATION_COUNT:
            raise ValueError(f"expected {ROTATION_COUNT} rotations")
        rest = HUMANOID_REST_POSITIONS if bone_positions is None else bone_positions
        for bone, targets in (
            ("Head", _BONE_CHANNELS["head"]),
            ("LeftEye", _BONE_CHANNELS["lefteye"]),
            ("RightEye", _BONE_CHANNELS["righteye"]),
        ):
            yaw, pitch, roll = (float(rot[i]) * degrees_per_unit for i in targets)
            qx, qy, qz, qw = yaw_pitch_roll_to_quat(yaw, pitch, roll)
            px, py, pz = rest[bone]
            messages.append(osc_message_bytes(ADDR_BONE_POS, bone, px, py, pz, qx, qy, qz, qw))
    for name, value in vmc_blend_values(arkit, names):
        messages.append(osc_message_bytes(ADDR_BLEND_VAL, name, value))
    messages.append(osc_message_bytes(ADDR_BLEND_APPLY))
    if bundle:
        return [osc_bundle_bytes(messages)]
    return messages
