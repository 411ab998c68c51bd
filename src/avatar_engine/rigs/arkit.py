"""Apple ARKit's 52 blendshape names, the nine Live Link rotations, and a name normaliser.

Capture sources spell the same shape three ways: ``eyeBlinkLeft`` (Apple's Swift API),
``EyeBlinkLeft`` (Unreal, Live Link Face, VMC Perfect Sync) and ``eyeBlink_L`` (ARKit's raw
string value, iFacialMocap, Face Cap). Everything inside the engine uses the camelCase form in
the canonical Apple/Unreal order, which is also the Live Link Face UDP payload order, so a
parser can index straight into a row without a name lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, Literal

ARKIT_NAMES: Final[tuple[str, ...]] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip
"""The 52 ARKit blendshapes in Apple-doc / Unreal ``EARFaceBlendShape`` / Live Link UDP order."""

ROTATION_NAMES: Final[tuple[str, ...]] = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
"""Live Link Face's nine head/eye rotations (UDP indices 52-60), the engine's channel names."""

ARKIT_COUNT: Final = len(ARKIT_NAMES)
ROTATION_COUNT: Final = len(ROTATION_NAMES)


class UnknownNameError(KeyError):
    """A blendshape or rotation name that none of the known spellings matches."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return (
            f"unknown ARKit blendshape or rotation name {self.name!r}; expected one of the 52 "
            "ARKit names (eyeBlinkLeft, EyeBlinkLeft or eyeBlink_L spellings) or a Live Link "
            "rotation (HeadYaw ... RightEyeRoll)"
        )


def _spellings() -> dict[str, str]:
    """Every accepted spelling, lower-cased, mapped to its canonical name."""
    table: dict[str, str] = {}
    for name in ARKIT_NAMES:
        table[name.lower()] = name
        for side, suffix in (("Left", "_L"), ("Right", "_R")):
            # jawLeft/mouthRight etc. are directions, not sides: ARKit never writes them _L/_R.
            if name.endswith(side) and not name.startswith(("jaw", "mouthLeft", "mouthRight")):
                table[(name[: -len(side)] + suffix).lower()] = name
    for name in ROTATION_NAMES:
        table[name.lower()] = name
    return table


_LOOKUP: Final[dict[str, str]] = _spellings()
_ARKIT_INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(ARKIT_NAMES)}
_ROTATION_INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(ROTATION_NAMES)}


def normalize_arkit_name(name: str) -> str:
    """Return the canonical spelling of an ARKit blendshape or Live Link rotation name.

    Matching ignores case, so ``EyeBlinkLeft``, ``eyeBlinkLeft``, ``eyeblinkleft`` and
    ``eyeBlink_L`` all give ``eyeBlinkLeft``; rotations come back PascalCase (``HeadYaw``).

    Raises:
        UnknownNameError: the name matches no known spelling.
    """
    try:
        return _LOOKUP[name.strip().lower()]
    except KeyError:
        raise UnknownNameError(name) from None


def is_rotation(canonical: str) -> bool:
    """Whether a canonical name is one of the nine Live Link rotations."""
    return canonical in _ROTATION_INDEX


class NameBinding:
    """Positions of a source's names in the canonical ARKit row and rotation row.

    Built once per source schema (a CSV header, a hello message), then used per frame, so the
    per-frame path is an index gather and never a string lookup.
    """

    __slots__ = (
        "arkit_columns",
        "arkit_targets",
        "rotation_columns",
        "rotation_targets",
        "skipped",
    )

    def __init__(
        self,
        names: Sequence[str],
        *,
        on_unknown: Literal["error", "skip"] = "error",
    ) -> None:
        self.arkit_columns: list[int] = []
        self.arkit_targets: list[int] = []
        self.rotation_columns: list[int] = []
        self.rotation_targets: list[int] = []
        self.skipped: list[str] = []
        seen: set[str] = set()
        for column, raw in enumerate(names):
            try:
                canonical = normalize_arkit_name(raw)
            except UnknownNameError:
                if on_unknown == "error":
                    raise
                self.skipped.append(raw)
                continue
            if canonical in seen:
                raise ValueError(f"name {raw!r} (column {column}) repeats {canonical!r}")
            seen.add(canonical)
            if canonical in _ROTATION_INDEX:
                self.rotation_columns.append(column)
                self.rotation_targets.append(_ROTATION_INDEX[canonical])
            else:
                self.arkit_columns.append(column)
                self.arkit_targets.append(_ARKIT_INDEX[canonical])

    @property
    def missing_arkit(self) -> list[str]:
        """Canonical ARKit names the source does not carry."""
        present = set(self.arkit_targets)
        return [n for i, n in enumerate(ARKIT_NAMES) if i not in present]


def arkit_index(names: Iterable[str]) -> list[int]:
    """Canonical ARKit indices for names in any spelling (rotations are rejected)."""
    out = []
    for raw in names:
        canonical = normalize_arkit_name(raw)
        if canonical not in _ARKIT_INDEX:
            raise ValueError(f"{raw!r} is a rotation, not an ARKit blendshape")
        out.append(_ARKIT_INDEX[canonical])
    return out
