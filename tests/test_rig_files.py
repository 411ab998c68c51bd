"""The built-in rig profiles (data files) and how user rig files are loaded and checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avatar_engine.kernels.retarget import Retargeter
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES
from avatar_engine.rigs.profile import RigProfile, RigProfileError, builtin_rig_names, load_rig
from avatar_engine.rigs.schema import Region

BUILTIN = ("cc4-extended", "cc4-standard", "arkit52", "oculus15", "vrm1", "ict-arkit")
VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U")
"""The engine's canonical viseme vocabulary: Oculus/OVR LipSync's 15, in OVR index order."""
EMOTIONS = (
    "neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted", "thinking",
    "listening", "confused", "smirk", "concerned",
)  # fmt: skip
DATA = Path(__file__).resolve().parents[1] / "src" / "avatar_engine" / "rigs" / "data"


def lod_sets(rig: RigProfile) -> dict[int, tuple[set[str], set[str]]]:
    """Level -> (morph names, channel names), resolving regions to morphs."""
    out = {}
    for spec in rig.lod:
        morphs = {rig.morph_names[i] for i in rig.morphs_in(*spec.regions)} | set(spec.morphs)
        out[spec.level] = (morphs, set(spec.channels))
    return out


@pytest.fixture(params=BUILTIN)
def rig(request: pytest.FixtureRequest) -> RigProfile:
    return load_rig(request.param)


# ---- every built-in rig -----------------------------------------------------------------------


def test_every_builtin_rig_is_shipped_and_loads() -> None:
    assert set(BUILTIN) <= set(builtin_rig_names())
    for name in builtin_rig_names():
        assert load_rig(name).name == name


def test_rig_files_are_two_space_indented_json() -> None:
    for name in BUILTIN:
        text = (DATA / f"{name}.json").read_text(encoding="utf-8")
        assert text.startswith('{\n  "format": "avatar-engine/rig@1",'), name


def test_every_rig_maps_all_52_arkit_names(rig: RigProfile) -> None:
    table = rig.spec.mappings["arkit52"]
    assert set(table) == set(ARKIT_NAMES)
    mapping = rig.sparse_map("arkit52", ARKIT_NAMES)
    assert mapping.nnz > 0


def test_every_rig_maps_all_15_visemes(rig: RigProfile) -> None:
    table = rig.spec.mappings["visemes"]
    assert set(table) == set(VISEMES)
    rig.sparse_map("visemes", VISEMES)
    # sil may be empty (the rest pose); so may PP (closed lips) on VRM, which has no
    # closed-lip preset; every other viseme must move something
    may_be_empty = {"sil", "PP"} if rig.name == "vrm1" else {"sil"}
    for viseme in VISEMES:
        if viseme not in may_be_empty:
            assert table[viseme], f"{rig.name}: viseme {viseme} drives nothing"


def test_every_rig_maps_all_12_emotions(rig: RigProfile) -> None:
    table = rig.spec.mappings["emotions"]
    assert set(table) == set(EMOTIONS)
    rig.sparse_map("emotions", EMOTIONS)
    assert table["neutral"] == {}
    for emotion in EMOTIONS[1:]:
        assert table[emotion], f"{rig.name}: emotion {emotion} drives nothing"


def test_emotion_presets_keep_the_mouth_moderate(rig: RigProfile) -> None:
    """Emotions are layered over speech: no preset may push a mouth or jaw morph past 0.6."""
    speech = set(rig.morphs_in(Region.MOUTH, Region.JAW))
    for emotion, targets in rig.spec.mappings["emotions"].items():
        for morph, weight in targets.items():
            assert 0.0 < weight <= 1.0, (rig.name, emotion, morph)
            if rig.morph_index(morph) in speech:
                assert weight <= 0.6, (rig.name, emotion, morph, weight)


def test_mapping_weights_are_sane(rig: RigProfile) -> None:
    for source, table in rig.spec.mappings.items():
        for name, targets in table.items():
            for morph, weight in targets.items():
                assert -1.0 <= weight <= 1.0 and weight != 0.0, (rig.name, source, name, morph)


def test_every_rig_has_the_nine_channels_in_live_link_order(rig: RigProfile) -> None:
    assert rig.channel_names == ROTATION_NAMES
    for channel in rig.channels:
        assert channel.bone and channel.axis, (rig.name, channel.name)


def test_every_rig_blinks_over_wide_eyes_where_it_has_both(rig: RigProfile) -> None:
    pairs = {tuple(rig.morph_names[i] for i in row) for row in rig.exclusive.tolist()}
    if "Eye_Blink_L" in rig.morph_names:
        assert {("Eye_Blink_L", "Eye_Wide_L"), ("Eye_Blink_R", "Eye_Wide_R")} <= pairs
    if "eyeBlinkLeft" in rig.morph_names:
        assert {("eyeBlinkLeft", "eyeWideLeft"), ("eyeBlinkRight", "eyeWideRight")} <= pairs


def test_lod_levels_are_present_and_nested(rig: RigProfile) -> None:
    levels = lod_sets(rig)
    assert sorted(levels) == [1, 2, 3]
    fps = {spec.level: spec.fps for spec in rig.lod}
    assert fps[1] >= fps[2] >= fps[3]
    for level in (1, 2, 3):
        morphs, channels = levels[level]
        assert morphs and channels, (rig.name, level)
    assert levels[3][0] < levels[2][0] < levels[1][0] <= set(rig.morph_names)
    assert levels[3][1] <= levels[2][1] <= levels[1][1] <= set(rig.channel_names)
    assert levels[1][1] == set(ROTATION_NAMES)
    assert levels[3][1] == {"HeadYaw", "HeadPitch", "HeadRoll"}


def test_every_rig_retargets_a_frame(rig: RigProfile) -> None:
    for source, names in (("arkit52", ARKIT_NAMES), ("visemes", VISEMES), ("emotions", EMOTIONS)):
        stage = Retargeter(rig, source=source, source_names=names, backend="numpy")
        out = stage.map(np.full((2, len(names)), 0.5, np.float32))
        assert out.shape == (2, rig.morph_count)
        assert np.all((out >= rig.lower) & (out <= rig.upper))


# ---- CC4 Extended facts -------------------------------------------------------------------------


def test_cc4_extended_has_every_extended_morph() -> None:
    rig = load_rig("cc4-extended")
    regions = {region.value: len(names) for region, names in rig.spec.regions.items()}
    assert regions == {
        "brow": 8, "eye": 16, "eyelash": 8, "ear": 6, "nose": 16, "cheek": 6,
        "mouth": 59 + 8, "jaw": 7, "tongue": 20 + 7, "neck": 4, "head": 10,
    }  # fmt: skip
    # 140 body expressions (incl. Tongue_Bulge_L/R) + 2 pupil + 18 tongue mesh + 8 + 7 visemes
    assert rig.morph_count == 140 + 2 + 18 + 15
    for name in ("V_Tongue_up", "V_Tongue_Curl_D", "V_Lip_Open", "Eye_Pupil_Dilate",
                 "Mouth_Smile_Sharp_L", "Tongue_Twist_R", "Neck_Swallow_Down"):  # fmt: skip
        rig.morph_index(name)
    with pytest.raises(KeyError):
        rig.morph_index("V_Tongue_Up")  # CC4 spells it with a lower-case u


def test_cc4_extended_arkit_multi_targets() -> None:
    table = load_rig("cc4-extended").spec.mappings["arkit52"]
    assert table["cheekPuff"] == {"Cheek_Puff_L": 1.0, "Cheek_Puff_R": 1.0}
    assert table["browInnerUp"] == {"Brow_Raise_Inner_L": 1.0, "Brow_Raise_Inner_R": 1.0}
    assert set(table["mouthFunnel"]) == {
        "Mouth_Funnel_Up_L", "Mouth_Funnel_Up_R", "Mouth_Funnel_Down_L", "Mouth_Funnel_Down_R",
    }  # fmt: skip
    assert set(table["mouthPucker"]) == {
        "Mouth_Pucker_Up_L", "Mouth_Pucker_Up_R", "Mouth_Pucker_Down_L", "Mouth_Pucker_Down_R",
    }  # fmt: skip
    assert set(table["mouthRollUpper"]) == {"Mouth_Roll_In_Upper_L", "Mouth_Roll_In_Upper_R"}
    assert set(table["mouthRollLower"]) == {"Mouth_Roll_In_Lower_L", "Mouth_Roll_In_Lower_R"}
    assert table["eyeLookInLeft"] == {"Eye_L_Look_R": 1.0}
    assert table["eyeLookOutLeft"] == {"Eye_L_Look_L": 1.0}
    assert table["eyeLookInRight"] == {"Eye_R_Look_L": 1.0}
    assert table["jawOpen"] == {"Jaw_Open": 1.0}  # no V_Open too: that would double the jaw
    assert table["tongueOut"] == {"Tongue_Out": 1.0}


def test_cc4_extended_retargets_jaw_blink_and_puff() -> None:
    rig = load_rig("cc4-extended")
    frame = np.zeros(len(ARKIT_NAMES), np.float32)
    for name, value in (("jawOpen", 0.7), ("eyeBlinkLeft", 1.0), ("eyeWideLeft", 1.0),
                        ("cheekPuff", 0.4), ("eyeWideRight", 0.5)):  # fmt: skip
        frame[ARKIT_NAMES.index(name)] = value
    out = Retargeter(rig, backend="numpy").map(frame)[0]
    got = {m: float(out[rig.morph_index(m)]) for m in rig.morph_names}
    assert got["Jaw_Open"] == pytest.approx(0.7)
    assert got["Eye_Blink_L"] == 1.0 and got["Eye_Wide_L"] == 0.0  # the blink wins
    assert got["Eye_Wide_R"] == pytest.approx(0.5)
    assert got["Cheek_Puff_L"] == got["Cheek_Puff_R"] == pytest.approx(0.4)
    assert got["V_Open"] == 0.0


def test_cc4_extended_visemes_use_the_pair_system() -> None:
    table = load_rig("cc4-extended").spec.mappings["visemes"]
    assert table["sil"] == {}
    assert table["PP"] == {"V_Explosive": 1.0}
    assert table["FF"] == {"V_Dental_Lip": 1.0}
    assert table["aa"]["V_Open"] == 1.0
    assert "V_Tongue_up" in table["DD"] and "V_Tongue_Out" in table["TH"]
    assert all(m.startswith("V_") for targets in table.values() for m in targets)


def test_cc4_bones_channels_and_jaw_driver() -> None:
    for name in ("cc4-extended", "cc4-standard"):
        rig = load_rig(name)
        bones = {c.name: (c.bone, c.axis, c.scale_deg) for c in rig.channels}
        assert bones["HeadYaw"] == ("CC_Base_Head", "y", 40.0)
        assert bones["HeadPitch"] == ("CC_Base_Head", "x", 40.0)
        assert bones["LeftEyeYaw"] == ("CC_Base_L_Eye", "z", -40.0)
        assert bones["RightEyePitch"] == ("CC_Base_R_Eye", "x", 40.0)
        (jaw,) = [d for d in rig.bone_drivers if d.bone == "CC_Base_JawRoot"]
        assert jaw.degrees_per_unit == {"Jaw_Open": 30.0, "V_Open": 18.0}


def test_cc4_extended_lod_level_3_is_jaw_blink_head() -> None:
    levels = lod_sets(load_rig("cc4-extended"))
    assert levels[3][0] == {"Jaw_Open", "V_Open", "Eye_Blink_L", "Eye_Blink_R"}
    level1 = levels[1][0]
    assert not {"Ear_Up_L", "Eyelash_Upper_Up_L", "Neck_Swallow_Up", "Eye_Pupil_Dilate",
                "Tongue_Twist_L"} & level1  # fmt: skip
    assert {"Nose_Sneer_L", "V_Tight_O", "Cheek_Raise_R", "Eye_L_Look_Up"} <= level1


# ---- the other rigs ------------------------------------------------------------------------------


def test_cc4_standard_uses_unsplit_names() -> None:
    rig = load_rig("cc4-standard")
    table = rig.spec.mappings["arkit52"]
    assert table["mouthFunnel"] == {"Mouth_Funnel": 1.0}
    assert table["mouthPucker"] == {"Mouth_Pucker": 1.0}
    assert table["mouthRollUpper"] == {"Mouth_Roll_In_Upper": 1.0}
    assert table["cheekPuff"] == {"Cheek_Puff_L": 1.0, "Cheek_Puff_R": 1.0}
    assert table["eyeLookInLeft"] == {"Eye_L_Look_R": 1.0}
    tongue = rig.spec.regions[Region.TONGUE]
    assert len([m for m in tongue if not m.startswith("V_")]) == 1 + 11  # Tongue_Out + 11
    assert "Mouth_Funnel_Up_L" not in rig.morph_names


def test_passthrough_rigs_map_arkit_one_to_one() -> None:
    for name in ("arkit52", "oculus15"):
        table = load_rig(name).spec.mappings["arkit52"]
        assert all(table[n] == {n: 1.0} for n in ARKIT_NAMES), name


def test_oculus15_visemes_are_one_to_one() -> None:
    rig = load_rig("oculus15")
    assert rig.morph_count == 52 + 15
    table = rig.spec.mappings["visemes"]
    assert all(table[v] == {f"viseme_{v}": 1.0} for v in VISEMES)
    bones = {c.bone for c in rig.channels}
    assert bones == {"Head", "LeftEye", "RightEye"}


def test_arkit52_visemes_speak_with_arkit_shapes() -> None:
    table = load_rig("arkit52").spec.mappings["visemes"]
    assert table["aa"]["jawOpen"] >= 0.5
    assert {"mouthClose", "mouthPressLeft", "mouthPressRight"} <= set(table["PP"])
    assert "mouthFunnel" in table["O"] and "mouthPucker" in table["U"]
    assert "mouthRollLower" in table["FF"]


def test_vrm1_presets_and_bones() -> None:
    rig = load_rig("vrm1")
    assert set(rig.morph_names) == {
        "happy", "angry", "sad", "relaxed", "surprised", "aa", "ih", "ou", "ee", "oh", "blink",
        "blinkLeft", "blinkRight", "lookUp", "lookDown", "lookLeft", "lookRight", "neutral",
    }  # fmt: skip
    arkit = rig.spec.mappings["arkit52"]
    assert arkit["eyeBlinkLeft"] == {"blinkLeft": 1.0}
    assert arkit["jawOpen"] == {"aa": 1.0}
    visemes = rig.spec.mappings["visemes"]
    for viseme, preset in (("aa", "aa"), ("I", "ih"), ("U", "ou"), ("E", "ee"), ("O", "oh")):
        assert visemes[viseme] == {preset: 1.0}
    assert {c.bone for c in rig.channels} == {"head", "leftEye", "rightEye"}
    # mouthClose over an open jaw closes the lips: aa must not exceed jawOpen - mouthClose
    frame = np.zeros(len(ARKIT_NAMES), np.float32)
    frame[ARKIT_NAMES.index("jawOpen")] = 0.5
    frame[ARKIT_NAMES.index("mouthClose")] = 0.4
    out = Retargeter(rig, backend="numpy").map(frame)[0]
    assert out[rig.morph_index("aa")] == pytest.approx(0.1)


# ---- user rig files -----------------------------------------------------------------------------

MINIMAL = {
    "format": "avatar-engine/rig@1",
    "name": "my-rig",
    "regions": {"mouth": ["Open", "Smile"], "eye": ["Blink_L"]},
    "mappings": {"arkit52": {"jawOpen": {"Open": 1.0}}},
}


def write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def broken(tmp_path: Path, **changes: object) -> str:
    path = write(tmp_path / "broken-rig.json", {**MINIMAL, **changes})
    with pytest.raises(RigProfileError) as info:
        load_rig(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_a_minimal_user_rig_loads(tmp_path: Path) -> None:
    rig = load_rig(write(tmp_path / "mine.json", MINIMAL))
    assert rig.morph_names == ("Open", "Smile", "Blink_L")


def test_unknown_morph_in_a_mapping_is_named(tmp_path: Path) -> None:
    message = broken(tmp_path, mappings={"arkit52": {"jawOpen": {"Opn": 1.0}}})
    assert "mappings.arkit52.jawOpen" in message and "'Opn'" in message
    assert "not a morph" in message


def test_limits_with_min_not_below_max_are_named(tmp_path: Path) -> None:
    message = broken(tmp_path, limits={"Smile": [1.0, 0.5]})
    assert "limits.Smile" in message and "must be below max" in message


def test_a_morph_listed_twice_is_named(tmp_path: Path) -> None:
    message = broken(tmp_path, regions={"mouth": ["Open", "Smile"], "cheek": ["Smile"]})
    assert "regions" in message and "'Smile'" in message and "listed twice" in message


def test_bad_json_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken-rig.json"
    path.write_text('{\n  "format": "avatar-engine/rig@1",\n  "name": "x",,\n}\n', "utf-8")
    with pytest.raises(RigProfileError) as info:
        load_rig(path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "not valid JSON" in message


def test_schema_errors_name_the_key(tmp_path: Path) -> None:
    message = broken(tmp_path, format="avatar-engine/rig@2")
    assert "format" in message
    message = broken(tmp_path, mappings={"arkit52": {"jawOpen": {"Open": "lots"}}})
    assert "mappings.arkit52.jawOpen.Open" in message
    message = broken(tmp_path, mappings={"arkit52": []})
    assert "mappings.arkit52" in message and "JSON object" in message
    message = broken(tmp_path, lod=[{"level": 1, "fps": 30, "channels": ["HeadTurn"]}])
    assert "lod[1].channels" in message and "'HeadTurn'" in message
    message = broken(tmp_path, surprise=1)
    assert "surprise" in message


def test_a_mapping_to_an_unknown_arkit_name_fails_when_compiled(tmp_path: Path) -> None:
    rig = load_rig(write(tmp_path / "typo.json", {
        **MINIMAL, "mappings": {"arkit52": {"jawOpn": {"Open": 1.0}}},
    }))  # fmt: skip
    with pytest.raises(RigProfileError, match=r"mappings\.arkit52\.jawOpn: not a arkit52 name"):
        rig.sparse_map("arkit52", ARKIT_NAMES)


def test_extends_overrides_one_mapping_and_nothing_else(tmp_path: Path) -> None:
    base = load_rig("cc4-extended")
    path = write(tmp_path / "my-cc4.json", {
        "format": "avatar-engine/rig@1",
        "name": "my-cc4",
        "extends": "cc4-extended",
        "mappings": {"arkit52": {"jawOpen": {"Jaw_Open": 0.8, "Mouth_Drop_Lower": 0.2}}},
    })  # fmt: skip
    mine = load_rig(path)
    assert mine.name == "my-cc4"
    assert mine.morph_names == base.morph_names
    assert mine.channels == base.channels and mine.bone_drivers == base.bone_drivers
    assert mine.lod == base.lod
    assert np.array_equal(mine.exclusive, base.exclusive)
    ours, theirs = mine.spec.mappings, base.spec.mappings
    assert set(ours) == set(theirs)
    assert ours["arkit52"]["jawOpen"] == {"Jaw_Open": 0.8, "Mouth_Drop_Lower": 0.2}
    for name in ARKIT_NAMES:
        if name != "jawOpen":
            assert ours["arkit52"][name] == theirs["arkit52"][name], name
    assert ours["visemes"] == theirs["visemes"] and ours["emotions"] == theirs["emotions"]
    dense_mine = mine.sparse_map("arkit52", ARKIT_NAMES).to_dense()
    dense_base = base.sparse_map("arkit52", ARKIT_NAMES).to_dense()
    changed = np.argwhere(dense_mine != dense_base)
    assert {ARKIT_NAMES[col] for _, col in changed} == {"jawOpen"}


def test_extends_checks_the_merged_rig(tmp_path: Path) -> None:
    path = write(tmp_path / "my-cc4.json", {
        "format": "avatar-engine/rig@1",
        "name": "my-cc4",
        "extends": "cc4-extended",
        "mappings": {"visemes": {"PP": {"V_Explosiv": 1.0}}},
    })  # fmt: skip
    with pytest.raises(RigProfileError, match=r"mappings\.visemes\.PP: 'V_Explosiv'") as info:
        load_rig(path)
    assert str(path) in str(info.value)


def test_extends_a_user_file_by_relative_path(tmp_path: Path) -> None:
    write(tmp_path / "base.json", MINIMAL)
    child = write(tmp_path / "child.json", {
        "format": "avatar-engine/rig@1",
        "name": "child",
        "extends": "base.json",
        "limits": {"Smile": [0.0, 0.8]},
        "mappings": {"arkit52": {"mouthSmileLeft": {"Smile": 0.5}}},
    })  # fmt: skip
    rig = load_rig(child)
    assert rig.spec.mappings["arkit52"] == {
        "jawOpen": {"Open": 1.0}, "mouthSmileLeft": {"Smile": 0.5},
    }  # fmt: skip
    assert rig.upper[rig.morph_index("Smile")] == pytest.approx(0.8)


def test_the_json_examples_in_docs_rigs_md_load(tmp_path: Path) -> None:
    """Every complete rig file shown in docs/rigs.md loads (so the docs stay true)."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "rigs.md"
    blocks = [
        block.split("\n", 1)[1].split("```", 1)[0]
        for block in docs.read_text(encoding="utf-8").split("```json")[1:]
    ]
    rigs = [json.loads(block) for block in blocks]
    assert len(rigs) >= 3
    by_name = {}
    for doc in rigs:
        assert doc["format"] == "avatar-engine/rig@1"
        by_name[doc["name"]] = load_rig(write(tmp_path / f"{doc['name']}.json", doc))
    mascot = by_name["my-avatar"]
    mascot.sparse_map("arkit52", ARKIT_NAMES)
    mascot.sparse_map("visemes", VISEMES)
    mascot.sparse_map("emotions", EMOTIONS)
    look = by_name["cc4-extended-lookbones"]
    assert load_rig("cc4-extended").bone_drivers == look.bone_drivers[:3]
    eyes = {(d.bone, d.axis): d.degrees_per_unit for d in look.bone_drivers}
    assert eyes["CC_Base_L_Eye", "z"] == {"Eye_L_Look_L": 40.0, "Eye_L_Look_R": -30.0}
    assert eyes["CC_Base_R_Eye", "x"] == {"Eye_R_Look_Up": -20.0, "Eye_R_Look_Down": 22.0}
    assert by_name["my-cc4"].spec.mappings["arkit52"]["cheekPuff"]["Mouth_Blow_L"] == 0.3
