from __future__ import annotations

import pytest

from avatar_engine.rigs.arkit import (
    ARKIT_NAMES,
    ROTATION_NAMES,
    NameBinding,
    UnknownNameError,
    arkit_index,
    normalize_arkit_name,
)


def raw_spelling(name: str) -> str:
    """ARKit's raw string value: symmetric pairs end in _L/_R (jaw/mouth directions do not)."""
    if name in ("jawLeft", "jawRight", "mouthLeft", "mouthRight"):
        return name
    for side, suffix in (("Left", "_L"), ("Right", "_R")):
        if name.endswith(side):
            return name[: -len(side)] + suffix
    return name


def test_canonical_order_is_the_live_link_udp_order() -> None:
    assert len(ARKIT_NAMES) == 52 and len(set(ARKIT_NAMES)) == 52
    assert ARKIT_NAMES[0] == "eyeBlinkLeft"
    assert ARKIT_NAMES[15:18] == ("jawLeft", "jawRight", "jawOpen")
    assert ARKIT_NAMES[51] == "tongueOut"
    assert ROTATION_NAMES[0] == "HeadYaw" and ROTATION_NAMES[-1] == "RightEyeRoll"


@pytest.mark.parametrize("name", ARKIT_NAMES)
def test_all_three_spellings_normalise(name: str) -> None:
    pascal = name[0].upper() + name[1:]
    assert normalize_arkit_name(name) == name
    assert normalize_arkit_name(pascal) == name
    assert normalize_arkit_name(raw_spelling(name)) == name


def test_directional_shapes_have_no_side_suffix_spelling() -> None:
    with pytest.raises(UnknownNameError):
        normalize_arkit_name("jaw_L")
    assert normalize_arkit_name("mouthLeft") == "mouthLeft"


@pytest.mark.parametrize("name", ROTATION_NAMES)
def test_rotations_normalise(name: str) -> None:
    assert normalize_arkit_name(name) == name
    assert normalize_arkit_name(name.lower()) == name


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(UnknownNameError, match="eyeBlinkMiddle"):
        normalize_arkit_name("eyeBlinkMiddle")


def test_binding_maps_columns_by_name_and_can_skip_unknowns() -> None:
    names = ["JawRight", "JawLeft", "Bogus", "HeadPitch", "eyeBlink_L"]
    with pytest.raises(UnknownNameError):
        NameBinding(names)
    binding = NameBinding(names, on_unknown="skip")
    assert binding.skipped == ["Bogus"]
    assert binding.arkit_columns == [0, 1, 4]
    assert binding.arkit_targets == [16, 15, 0]
    assert binding.rotation_columns == [3] and binding.rotation_targets == [1]
    assert "jawOpen" in binding.missing_arkit


def test_binding_rejects_the_same_shape_twice() -> None:
    with pytest.raises(ValueError, match="repeats"):
        NameBinding(["eyeBlinkLeft", "EyeBlinkLeft"])


def test_arkit_index_rejects_rotations() -> None:
    assert arkit_index(["TongueOut", "eyeBlink_R"]) == [51, 7]
    with pytest.raises(ValueError, match="rotation"):
        arkit_index(["HeadYaw"])
