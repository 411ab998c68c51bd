"""iFacialMocap text frames (v1 ``name-value`` and v2 ``name&value``): parse and build.

The PC sends a handshake string to the phone's UDP port 49983; the app then streams one UTF-8
text frame per datagram to the PC's UDP port 49983 at 60 fps (30 when the phone is hot)::

    mouthSmile_R-0|eyeLookOut_L-12|...|=head#rx,ry,rz,tx,ty,tz|rightEye#rx,ry,rz|leftEye#rx,ry,rz|

Blendshape names are ARKit's raw ``_L``/``_R`` spellings; values are 0-100 (divided by 100
here); rotations are Euler degrees, X = pitch, Y = yaw, Z = roll (converted to engine channel
units with ``degrees_per_unit``, see :mod:`avatar_engine.formats.rotation`). Appending
``|sendDataVersion=v2`` to the handshake makes the app use ``&`` between name and value, which
keeps negative numbers unambiguous; both separators are accepted on every frame. Frames sent
over the app's TCP mode end in ``___iFacialMocap``; that suffix is stripped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.formats.rotation import DEGREES_PER_UNIT, MAX_ROTATION_UNITS
from avatar_engine.rigs.arkit import (
    ARKIT_COUNT,
    ARKIT_NAMES,
    ROTATION_COUNT,
    ROTATION_NAMES,
    UnknownNameError,
    normalize_arkit_name,
)
from avatar_engine.types import F32

DEFAULT_PORT: Final = 49983
"""The phone listens for the handshake here, and the app streams to this port on the PC."""
HANDSHAKE_KEY: Final = "sahuasouryya9218sauhuiayeta91555dy3719"
HANDSHAKE_V1: Final = ("iFacialMocap_" + HANDSHAKE_KEY).encode("ascii")
HANDSHAKE_V2: Final = HANDSHAKE_V1 + b"|sendDataVersion=v2"
TCP_SUFFIX: Final = "___iFacialMocap"
MAX_FRAME_BYTES: Final = 8192
"""A full frame is about 1.2 KB; anything over 8 KiB is not iFacialMocap."""
MAX_PARTS: Final = 128
"""52 blendshapes + head + two eyes, with room for extras; more parts is garbage."""

_ROT = {name: i for i, name in enumerate(ROTATION_NAMES)}
_ARKIT = {name: i for i, name in enumerate(ARKIT_NAMES)}
# (part key) -> rotation channel indices for its X, Y, Z Euler angles (pitch, yaw, roll).
_EULER_TARGETS: Final[dict[str, tuple[int, int, int]]] = {
    "head": (_ROT["HeadPitch"], _ROT["HeadYaw"], _ROT["HeadRoll"]),
    "lefteye": (_ROT["LeftEyePitch"], _ROT["LeftEyeYaw"], _ROT["LeftEyeRoll"]),
    "righteye": (_ROT["RightEyePitch"], _ROT["RightEyeYaw"], _ROT["RightEyeRoll"]),
}


class IfmDropReason(StrEnum):
    """Why a frame was dropped (counted per reason by the receiver)."""

    TOO_LARGE = "too_large"
    ENCODING = "encoding"
    MALFORMED = "malformed"
    EMPTY = "empty"
    NON_FINITE = "non_finite"
    HANDSHAKE_ECHO = "handshake"


class IfmFrameError(ValueError):
    """A datagram that is not an iFacialMocap frame; ``reason`` says which check failed."""

    def __init__(self, reason: IfmDropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


@dataclass(slots=True)
class IfmFrame:
    """One parsed frame: engine-ready arrays plus what the parser had to fix."""

    arkit: F32
    """52 weights in canonical order, 0..1 (names the frame lacks are 0)."""
    rotations: F32
    """9 rotation channels in engine units (degrees / ``degrees_per_unit``)."""
    head_position: tuple[float, float, float] | None
    """The head ``tx, ty, tz`` the app sends (metres, camera space); not an engine channel."""
    version: int
    """1 or 2: the separator the blendshape parts used (2 when any part used ``&``)."""
    unknown: list[str] = field(default_factory=list)
    """Blendshape or rotation keys that matched no known name (skipped)."""
    clamped: int = 0
    """Values moved into range (blendshapes to 0..100, rotations to the documented limit)."""


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise IfmFrameError(IfmDropReason.NON_FINITE, f"{text!r} is not finite")
    return value


def parse_frame(data: bytes, *, degrees_per_unit: float = DEGREES_PER_UNIT) -> IfmFrame:
    """Parse one datagram; raises :class:`IfmFrameError`.

    Unknown blendshape names are skipped and listed in ``unknown`` (a newer app may add
    shapes); blendshape values are clamped to 0..100 and rotations to
    +-:data:`~avatar_engine.formats.rotation.MAX_ROTATION_UNITS`, counted in ``clamped``.
    A NaN or infinity anywhere drops the whole frame: one bad number means a bad sender.
    """
    parts = _frame_parts(data)
    frame = IfmFrame(
        np.zeros(ARKIT_COUNT, dtype=np.float32),
        np.zeros(ROTATION_COUNT, dtype=np.float32),
        head_position=None,
        version=1,
    )
    shapes = 0
    try:
        for raw_part in parts:
            part = raw_part.strip()
            if not part:
                continue
            if "#" in part:
                _apply_rotation_part(frame, part, degrees_per_unit)
            else:
                shapes += _apply_blendshape_part(frame, part)
    except ValueError as exc:
        if isinstance(exc, IfmFrameError):
            raise
        raise IfmFrameError(IfmDropReason.MALFORMED, str(exc)) from None
    if shapes == 0:
        raise IfmFrameError(IfmDropReason.EMPTY, "no known blendshape in the frame")
    return frame


def _frame_parts(data: bytes) -> list[str]:
    """The ``|``-separated parts of a datagram, after the checks that need no parsing (size,
    handshake echo, UTF-8, part count); the TCP variant's suffix is removed."""
    if len(data) > MAX_FRAME_BYTES:
        raise IfmFrameError(IfmDropReason.TOO_LARGE, f"{len(data)} bytes")
    if data.startswith(b"iFacialMocap_"):
        raise IfmFrameError(IfmDropReason.HANDSHAKE_ECHO, "a handshake, not a frame")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise IfmFrameError(IfmDropReason.ENCODING, "not UTF-8") from None
    text = text.strip()
    if text.endswith(TCP_SUFFIX):
        text = text[: -len(TCP_SUFFIX)]
    parts = text.split("|")
    if len(parts) > MAX_PARTS:
        raise IfmFrameError(IfmDropReason.MALFORMED, f"{len(parts)} parts")
    return parts


def _apply_rotation_part(frame: IfmFrame, part: str, degrees_per_unit: float) -> None:
    """``head#x,y,z[,tx,ty,tz]`` or an eye's ``#x,y,z``: Euler degrees into rotation channels
    (clamped), and the head's position when it is sent."""
    key, _, values_text = part.partition("#")
    key = key.lstrip("=").strip().lower()
    targets = _EULER_TARGETS.get(key)
    if targets is None:
        frame.unknown.append(key)
        return
    numbers = [_number(v) for v in values_text.split(",")]
    if len(numbers) not in (3, 6):
        raise IfmFrameError(IfmDropReason.MALFORMED, f"{key} has {len(numbers)} numbers")
    for target, degrees in zip(targets, numbers[:3], strict=True):
        units = degrees / degrees_per_unit
        if abs(units) > MAX_ROTATION_UNITS:
            units = math.copysign(MAX_ROTATION_UNITS, units)
            frame.clamped += 1
        frame.rotations[target] = units
    if key == "head" and len(numbers) == 6:
        frame.head_position = (numbers[3], numbers[4], numbers[5])


def _apply_blendshape_part(frame: IfmFrame, part: str) -> int:
    """``name-value`` (v1) or ``name&value`` (v2), 0..100, into the ARKit weights (clamped).

    Returns 1 when a known blendshape was set, 0 for a skipped part (unknown names are listed;
    a v1 ``key=value`` extra is ignored).
    """
    if "&" in part:
        name, _, value_text = part.partition("&")
        frame.version = 2
    else:
        # v1: names never contain "-", so the first "-" separates name and value.
        name, sep, value_text = part.partition("-")
        if not sep:
            if "=" in part:  # a key=value extra (e.g. a future app setting): ignore
                return 0
            raise IfmFrameError(IfmDropReason.MALFORMED, f"part {part[:40]!r}")
    value = _number(value_text)
    try:
        canonical = normalize_arkit_name(name)
    except UnknownNameError:
        frame.unknown.append(name)
        return 0
    index = _ARKIT.get(canonical)
    if index is None:  # a rotation name in a blendshape slot
        frame.unknown.append(name)
        return 0
    if value < 0.0 or value > 100.0:
        value = min(max(value, 0.0), 100.0)
        frame.clamped += 1
    frame.arkit[index] = value / 100.0
    return 1


def _raw_name(canonical: str) -> str:
    """ARKit's raw spelling (``eyeBlink_L``) of a canonical name, as the app sends it."""
    for side, suffix in (("Left", "_L"), ("Right", "_R")):
        if canonical.endswith(side) and not canonical.startswith(
            ("jaw", "mouthLeft", "mouthRight")
        ):
            return canonical[: -len(side)] + suffix
    return canonical


RAW_NAMES: Final[tuple[str, ...]] = tuple(_raw_name(n) for n in ARKIT_NAMES)
"""The 52 names as iFacialMocap spells them, in canonical order."""


def build_frame(
    arkit: npt.ArrayLike,
    rotations: npt.ArrayLike | None = None,
    *,
    version: int = 2,
    degrees_per_unit: float = DEGREES_PER_UNIT,
    integer_values: bool = True,
    head_position: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> bytes:
    """Serialise a frame the way the app does (a phone simulator for tests and demos).

    ``integer_values`` rounds weights to whole percent like the app; rotations are written
    with two decimals (degrees), also like the app.
    """
    weights = np.asarray(arkit, dtype=np.float64).reshape(-1)
    if weights.shape[0] != ARKIT_COUNT:
        raise ValueError(f"expected {ARKIT_COUNT} weights")
    rot = (
        np.zeros(ROTATION_COUNT)
        if rotations is None
        else np.asarray(rotations, dtype=np.float64).reshape(-1)
    )
    if rot.shape[0] != ROTATION_COUNT:
        raise ValueError(f"expected {ROTATION_COUNT} rotations")
    sep = "&" if version == 2 else "-"
    parts = []
    for name, w in zip(RAW_NAMES, weights.tolist(), strict=True):
        percent = min(max(w * 100.0, 0.0), 100.0)
        parts.append(f"{name}{sep}{round(percent) if integer_values else f'{percent:.4f}'}")
    deg = rot * degrees_per_unit

    def euler(key: str) -> str:
        pitch, yaw, roll = (float(deg[i]) for i in _EULER_TARGETS[key])
        return f"{pitch:.2f},{yaw:.2f},{roll:.2f}"

    tx, ty, tz = head_position
    parts.append(f"=head#{euler('head')},{tx:.4f},{ty:.4f},{tz:.4f}")
    parts.append(f"rightEye#{euler('righteye')}")
    parts.append(f"leftEye#{euler('lefteye')}")
    return ("|".join(parts) + "|").encode("utf-8")
