"""Sans-I/O capture formats: iFacialMocap text, VMC/OSC (against python-osc), .avrec files."""

from __future__ import annotations

import contextlib
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from avatar_engine.formats import ifacialmocap as ifm
from avatar_engine.formats import recording as rec
from avatar_engine.formats import vmc
from avatar_engine.formats.rotation import (
    DEGREES_PER_UNIT,
    quat_to_yaw_pitch_roll,
    yaw_pitch_roll_to_quat,
)
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES

A = {n: i for i, n in enumerate(ARKIT_NAMES)}
R = {n: i for i, n in enumerate(ROTATION_NAMES)}

# The example frame from iFacialMocap's developer page (shortened there too).
IFM_EXAMPLE = (
    b"mouthSmile_R-0|eyeLookOut_L-0|mouthUpperUp_L-11|eyeWide_R-0|mouthClose-8|mouthPucker-4|"
    b"mouthRollLower-9|eyeBlink_R-7|eyeLookDown_L-17|cheekSquint_R-11|eyeBlink_L-7|"
    b"tongueOut-0|jawRight-0|eyeLookIn_R-6|cheekSquint_L-11|mouthDimple_L-10|mouthPress_L-4|"
    b"eyeSquint_L-11|mouthRight-0|mouthShrugLower-9|eyeLookUp_R-0|eyeLookOut_R-0|"
    b"mouthPress_R-5|cheekPuff-2|jawForward-11|mouthLowerDown_L-1|mouthFrown_L-6|"
    b"mouthShrugUpper-26|browOuterUp_L-4|browInnerUp-16|mouthDimple_R-10|browDown_R-0|"
    b"mouthUpperUp_R-10|mouthRollUpper-8|mouthFunnel-12|mouthStretch_R-21|mouthFrown_R-13|"
    b"eyeLookDown_R-17|jawOpen-12|jawLeft-0|browDown_L-0|mouthSmile_L-0|noseSneer_R-18|"
    b"mouthLowerDown_R-0|noseSneer_L-21|eyeWide_L-0|mouthStretch_L-21|browOuterUp_R-4|"
    b"eyeLookIn_L-4|eyeSquint_R-11|eyeLookUp_L-0|mouthLeft-1|"
    b"=head#-21.488958,-6.038993,-6.6019735,-0.030653415,-0.10287084,-0.6584072|"
    b"rightEye#6.0297494,2.4403017,0.25649446|leftEye#6.034903,-1.6660284,-0.17520553|"
)


# --------------------------------------------------------------------------- iFacialMocap


def test_ifm_handshake_bytes_are_the_documented_strings() -> None:
    assert ifm.HANDSHAKE_V1 == b"iFacialMocap_sahuasouryya9218sauhuiayeta91555dy3719"
    assert ifm.HANDSHAKE_V2 == ifm.HANDSHAKE_V1 + b"|sendDataVersion=v2"
    assert ifm.DEFAULT_PORT == 49983


def test_ifm_official_example_v1() -> None:
    frame = ifm.parse_frame(IFM_EXAMPLE)
    assert frame.version == 1 and frame.unknown == [] and frame.clamped == 0
    assert frame.arkit[A["mouthShrugUpper"]] == pytest.approx(0.26)
    assert frame.arkit[A["noseSneerLeft"]] == pytest.approx(0.21)
    assert frame.arkit[A["mouthLeft"]] == pytest.approx(0.01)
    # head#X,Y,Z = pitch, yaw, roll in degrees -> engine units at 40 degrees per unit
    assert frame.rotations[R["HeadPitch"]] == pytest.approx(-21.488958 / DEGREES_PER_UNIT)
    assert frame.rotations[R["HeadYaw"]] == pytest.approx(-6.038993 / DEGREES_PER_UNIT)
    assert frame.rotations[R["HeadRoll"]] == pytest.approx(-6.6019735 / DEGREES_PER_UNIT)
    assert frame.rotations[R["RightEyeYaw"]] == pytest.approx(2.4403017 / DEGREES_PER_UNIT)
    assert frame.rotations[R["LeftEyePitch"]] == pytest.approx(6.034903 / DEGREES_PER_UNIT)
    assert frame.head_position == pytest.approx((-0.030653415, -0.10287084, -0.6584072))


def test_ifm_v2_separator_and_negative_values() -> None:
    text = IFM_EXAMPLE.replace(b"-", b"&").replace(b"#&", b"#-").replace(b",&", b",-")
    frame = ifm.parse_frame(text)
    assert frame.version == 2
    np.testing.assert_allclose(frame.arkit, ifm.parse_frame(IFM_EXAMPLE).arkit)
    assert ifm.parse_frame(b"jawOpen&-5|").arkit[A["jawOpen"]] == 0.0  # clamped, counted
    assert ifm.parse_frame(b"jawOpen&-5|").clamped == 1
    assert ifm.parse_frame(b"jawOpen&150|").arkit[A["jawOpen"]] == 1.0


@pytest.mark.parametrize("version", [1, 2])
def test_ifm_build_parse_round_trip(version: int) -> None:
    rng = np.random.default_rng(version)
    arkit = rng.random(52).astype(np.float32)
    rotations = rng.uniform(-1, 1, 9).astype(np.float32)
    rotations[[R["LeftEyeRoll"], R["RightEyeRoll"]]] = rotations[[R["LeftEyeRoll"], 0]]
    frame = ifm.parse_frame(ifm.build_frame(arkit, rotations, version=version))
    assert np.abs(frame.arkit - arkit).max() <= 0.005 + 1e-6  # whole percent
    assert np.abs(frame.rotations - rotations).max() <= 0.005 / DEGREES_PER_UNIT + 1e-6


def test_ifm_tcp_suffix_and_unknown_names() -> None:
    frame = ifm.parse_frame(b"jawOpen-50|FM_SAD-10|mystery-3|=head#0,0,0|___iFacialMocap")
    assert frame.arkit[A["jawOpen"]] == pytest.approx(0.5)
    assert frame.unknown == ["FM_SAD", "mystery"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe garbage", ifm.IfmDropReason.ENCODING),
        (b"", ifm.IfmDropReason.EMPTY),
        (b"|||", ifm.IfmDropReason.EMPTY),
        (b"jawOpen-nan|", ifm.IfmDropReason.NON_FINITE),
        (b"jawOpen-inf|", ifm.IfmDropReason.NON_FINITE),
        (b"jawOpen-abc|", ifm.IfmDropReason.MALFORMED),
        (b"jawOpen|", ifm.IfmDropReason.MALFORMED),
        (b"jawOpen-1|=head#1,2|", ifm.IfmDropReason.MALFORMED),
        (b"jawOpen-1|=head#1,nan,2|", ifm.IfmDropReason.NON_FINITE),
        (b"x" * 9000, ifm.IfmDropReason.TOO_LARGE),
        (b"a-1|" * 200, ifm.IfmDropReason.MALFORMED),
        (ifm.HANDSHAKE_V2, ifm.IfmDropReason.HANDSHAKE_ECHO),
    ],
)
def test_ifm_malformed(data: bytes, reason: ifm.IfmDropReason) -> None:
    with pytest.raises(ifm.IfmFrameError) as info:
        ifm.parse_frame(data)
    assert info.value.reason is reason


@given(st.binary(max_size=2000))
def test_ifm_parser_only_raises_its_own_error(data: bytes) -> None:
    with contextlib.suppress(ifm.IfmFrameError):
        ifm.parse_frame(data)


# --------------------------------------------------------------------------- rotations


@given(st.floats(-170, 170), st.floats(-85, 85), st.floats(-170, 170))
def test_unity_euler_quaternion_round_trip(yaw: float, pitch: float, roll: float) -> None:
    back = quat_to_yaw_pitch_roll(*yaw_pitch_roll_to_quat(yaw, pitch, roll))
    assert back == pytest.approx((yaw, pitch, roll), abs=1e-6)


def test_quaternion_axes_follow_unity() -> None:
    s = math.sin(math.radians(15))
    c = math.cos(math.radians(15))
    assert quat_to_yaw_pitch_roll(0, s, 0, c) == pytest.approx((30, 0, 0))  # about +Y: yaw
    assert quat_to_yaw_pitch_roll(s, 0, 0, c) == pytest.approx((0, 30, 0))  # about +X: pitch
    assert quat_to_yaw_pitch_roll(0, 0, s, c) == pytest.approx((0, 0, 30))  # about +Z: roll


# --------------------------------------------------------------------------- VMC


def osc(address: str, *args: object) -> bytes:
    """A message built by python-osc (the independent implementation)."""
    builder = OscMessageBuilder(address=address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def bundle(*messages: bytes) -> bytes:
    from pythonosc.osc_message import OscMessage

    builder = OscBundleBuilder(IMMEDIATELY)
    for m in messages:
        builder.add_content(OscMessage(m))
    return builder.build().dgram


def test_vmc_perfect_sync_bundle_from_python_osc() -> None:
    msgs = [
        osc(vmc.ADDR_BLEND_VAL, name, 0.01 * i) for i, name in enumerate(vmc.PERFECT_SYNC_NAMES)
    ]
    frame_bundle = bundle(*msgs, osc(vmc.ADDR_BLEND_APPLY))
    result = vmc.VmcDecoder().feed_datagram(frame_bundle)
    assert result.issues == {} and len(result.frames) == 1
    np.testing.assert_allclose(result.frames[0].arkit, np.arange(52) * 0.01, atol=1e-6)


def test_vmc_state_spans_datagrams_and_names_are_case_insensitive() -> None:
    dec = vmc.VmcDecoder()
    assert dec.feed_datagram(osc(vmc.ADDR_BLEND_VAL, "jawopen", 0.5)).frames == []
    assert dec.feed_datagram(osc(vmc.ADDR_BLEND_VAL, "eyeBlink_L", 0.25)).frames == []
    frames = dec.feed_datagram(osc(vmc.ADDR_BLEND_APPLY)).frames
    assert frames[0].arkit[A["jawOpen"]] == 0.5 and frames[0].arkit[A["eyeBlinkLeft"]] == 0.25
    # values reset after Apply: a frame carries only what was sent since the last Apply
    assert dec.feed_datagram(osc(vmc.ADDR_BLEND_APPLY)).frames[0].arkit.max() == 0.0


def test_vmc_vrm_presets_expand_and_perfect_sync_wins() -> None:
    dec = vmc.VmcDecoder()
    result = dec.feed_datagram(
        bundle(
            osc(vmc.ADDR_BLEND_VAL, "Blink_L", 1.0),
            osc(vmc.ADDR_BLEND_VAL, "blinkRight", 0.5),  # VRM 1.0 spelling
            osc(vmc.ADDR_BLEND_VAL, "A", 1.0),
            osc(vmc.ADDR_BLEND_VAL, "JawOpen", 0.2),  # explicit: wins over A's jawOpen
            osc(vmc.ADDR_BLEND_APPLY),
        )
    )
    arkit = result.frames[0].arkit
    assert arkit[A["eyeBlinkLeft"]] == 1.0 and arkit[A["eyeBlinkRight"]] == 0.5
    assert arkit[A["jawOpen"]] == pytest.approx(0.2)


def test_vmc_head_bone_gives_head_rotation() -> None:
    qx, qy, qz, qw = yaw_pitch_roll_to_quat(20.0, -10.0, 5.0)
    dec = vmc.VmcDecoder()
    result = dec.feed_datagram(
        bundle(
            osc(vmc.ADDR_ROOT_POS, "root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
            osc(vmc.ADDR_BONE_POS, "Head", 0.0, 0.1, 0.0, qx, qy, qz, qw),
            osc(vmc.ADDR_BONE_POS, "LeftUpperArm", 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 1.0),
            osc(vmc.ADDR_BLEND_APPLY),
        )
    )
    rot = result.frames[0].rotations
    assert rot[R["HeadYaw"]] == pytest.approx(20 / DEGREES_PER_UNIT, abs=1e-5)
    assert rot[R["HeadPitch"]] == pytest.approx(-10 / DEGREES_PER_UNIT, abs=1e-5)
    assert rot[R["HeadRoll"]] == pytest.approx(5 / DEGREES_PER_UNIT, abs=1e-5)
    # bone poses persist to the next frame
    again = dec.feed_datagram(osc(vmc.ADDR_BLEND_APPLY)).frames[0].rotations
    np.testing.assert_array_equal(again, rot)


def test_vmc_bad_messages_are_counted_not_fatal() -> None:
    dec = vmc.VmcDecoder()
    result = dec.feed_datagram(
        bundle(
            osc(vmc.ADDR_BLEND_VAL, "JawOpen", float("nan")),
            osc(vmc.ADDR_BLEND_VAL, "NotAShape", 0.5),
            osc(vmc.ADDR_BLEND_VAL, "JawOpen"),
            osc(vmc.ADDR_BLEND_VAL, 3, 0.5),
            osc(vmc.ADDR_BLEND_VAL, "MouthClose", 7.0),
            osc(vmc.ADDR_BONE_POS, "Head", 0.0, 0.0, 0.0, float("inf"), 0.0, 0.0, 1.0),
            osc(vmc.ADDR_BLEND_APPLY),
        )
    )
    assert result.issues == {"non_finite": 2, "unknown_name": 1, "bad_arguments": 2}
    assert result.unknown_names == ["NotAShape"]
    assert result.clamped == 1 and result.frames[0].arkit[A["mouthClose"]] == 1.0


def test_vmc_too_many_values_resets_the_pending_frame() -> None:
    dec = vmc.VmcDecoder()
    msgs = [osc(vmc.ADDR_BLEND_VAL, "JawOpen", 0.5)] * (vmc.MAX_VALUES_PER_FRAME + 1)
    issues: dict[str, int] = {}
    for m in msgs:
        for k, v in dec.feed_datagram(m).issues.items():
            issues[k] = issues.get(k, 0) + v
    assert issues == {"too_many_values": 1}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", vmc.VmcDropReason.MALFORMED_OSC),
        (b"hello", vmc.VmcDropReason.MALFORMED_OSC),
        (b"/VMC/Ext/Blend/Val\x00\x00,sf\x00", vmc.VmcDropReason.MALFORMED_OSC),
        (b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 999), vmc.VmcDropReason.MALFORMED_OSC),
        (b"/" + b"a" * 40000, vmc.VmcDropReason.TOO_LARGE),
    ],
)
def test_vmc_malformed_datagrams(data: bytes, reason: vmc.VmcDropReason) -> None:
    with pytest.raises(vmc.VmcPacketError) as info:
        vmc.parse_datagram(data)
    assert info.value.reason is reason


@given(st.binary(max_size=512))
def test_vmc_parser_only_raises_its_own_error(data: bytes) -> None:
    with contextlib.suppress(vmc.VmcPacketError):
        vmc.VmcDecoder().feed_datagram(data)


def test_vmc_deeply_nested_bundles_are_refused() -> None:
    inner = osc(vmc.ADDR_BLEND_APPLY)
    data = inner
    for _ in range(vmc.MAX_BUNDLE_DEPTH + 2):
        data = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", len(data)) + data
    with pytest.raises(vmc.VmcPacketError):
        vmc.parse_datagram(data)


@pytest.mark.parametrize("names", ["perfect_sync", "vrm0", "vrm1"])
@pytest.mark.parametrize("bundled", [True, False])
def test_our_vmc_frames_parse_with_python_osc(names: vmc.NameSet, bundled: bool) -> None:
    rng = np.random.default_rng(5)
    arkit = rng.random(52).astype(np.float32)
    rotations = rng.uniform(-1, 1, 9).astype(np.float32)
    datagrams = vmc.build_vmc_frame(arkit, rotations, names=names, bundle=bundled, time=1.5)
    seen: dict[str, float] = {}
    addresses = []
    for d in datagrams:
        for timed in OscPacket(d).messages:
            addresses.append(timed.message.address)
            if timed.message.address == vmc.ADDR_BLEND_VAL:
                name, value = timed.message.params
                seen[name] = value
    assert addresses[0] == vmc.ADDR_OK and addresses[-1] == vmc.ADDR_BLEND_APPLY
    assert addresses.count(vmc.ADDR_BONE_POS) == 3
    if names == "perfect_sync":
        assert list(seen) == list(vmc.PERFECT_SYNC_NAMES)
        np.testing.assert_allclose(list(seen.values()), arkit, atol=1e-7)
    else:
        expected = vmc.VRM0_NAMES if names == "vrm0" else tuple(vmc.VRM1_NAMES.values())
        assert set(seen) <= set(expected)
        assert seen["Blink_L" if names == "vrm0" else "blinkLeft"] == pytest.approx(arkit[0])
    # and our own decoder recovers the frame
    dec = vmc.VmcDecoder()
    frames = [f for d in datagrams for f in dec.feed_datagram(d).frames]
    assert len(frames) == 1
    np.testing.assert_allclose(frames[0].rotations, rotations, atol=1e-5)
    if names == "perfect_sync":
        np.testing.assert_allclose(frames[0].arkit, arkit, atol=1e-7)


def test_osc_message_bytes_match_python_osc() -> None:
    assert vmc.osc_message_bytes("/VMC/Ext/Blend/Val", "JawOpen", 0.5) == osc(
        "/VMC/Ext/Blend/Val", "JawOpen", 0.5
    )
    assert vmc.osc_message_bytes("/VMC/Ext/OK", 1) == osc("/VMC/Ext/OK", 1)
    assert vmc.osc_message_bytes("/VMC/Ext/Blend/Apply") == osc("/VMC/Ext/Blend/Apply")


# --------------------------------------------------------------------------- .avrec


def _frames(n: int, seed: int = 0) -> list[tuple[float, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (i / 60, rng.random(52).astype(np.float32), rng.uniform(-1, 1, 9).astype(np.float32))
        for i in range(n)
    ]


def test_avrec_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "take.avrec"
    frames = _frames(20)
    with rec.AvrecWriter(path, rec.capture_header("test", {"k": 1})) as w:
        for t, a, r in frames:
            w.write(t, a, r)
    out = rec.read_recording(path)
    assert out.header.kind == "capture" and out.header.names == ARKIT_NAMES
    assert out.header.meta == {"k": 1} and out.error is None and out.skipped_tail_bytes == 0
    np.testing.assert_array_equal(out.values, np.stack([f[1] for f in frames]))
    np.testing.assert_array_equal(out.channels, np.stack([f[2] for f in frames]))
    np.testing.assert_array_equal(out.times, [f[0] for f in frames])
    assert path.read_bytes().startswith(rec.MAGIC)


def test_avrec_is_readable_while_being_written(tmp_path: Path) -> None:
    path = tmp_path / "live.avrec"
    frames = _frames(10)
    writer = rec.AvrecWriter(path, rec.capture_header(), fsync_interval=None)
    try:
        for i, (t, a, r) in enumerate(frames):
            writer.write(t, a, r)
            now = list(rec.iter_frames(path))  # a second reader while the file grows
            assert len(now) == i + 1
            np.testing.assert_array_equal(now[-1].values, a)
    finally:
        writer.close()


def test_avrec_truncated_tail_loses_at_most_the_last_frame(tmp_path: Path) -> None:
    path = tmp_path / "crash.avrec"
    frames = _frames(5)
    with rec.AvrecWriter(path, rec.capture_header()) as w:
        for t, a, r in frames[:4]:
            w.write(t, a, r)
    size_4 = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(rec.encode_frame(*frames[4]))
    full = path.read_bytes()
    for cut in range(size_4, len(full)):  # a crash at every byte of the last record
        path.write_bytes(full[:cut])
        out = rec.read_recording(path)
        assert len(out.times) == 4 and out.skipped_tail_bytes == cut - size_4
        assert out.error is None
    path.write_bytes(full)
    assert len(rec.read_recording(path).times) == 5


def test_avrec_zero_filled_tail_and_corruption_stop_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "torn.avrec"
    with rec.AvrecWriter(path, rec.capture_header()) as w:
        for t, a, r in _frames(3):
            w.write(t, a, r)
    good = path.read_bytes()
    last = rec.encode_frame(*_frames(1, 9)[0])
    # some file systems extend the file before the data lands: length present, payload zeros
    path.write_bytes(good + last[:8] + b"\x00" * (len(last) - 8))
    out = rec.read_recording(path)
    assert len(out.times) == 3 and out.error == "record CRC mismatch"
    flipped = bytearray(good)
    flipped[-5] ^= 0x40
    path.write_bytes(bytes(flipped))
    out = rec.read_recording(path)
    assert len(out.times) == 2 and out.error is not None


def test_avrec_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x.avrec"
    path.write_bytes(b"Timecode,BlendShapeCount\n")
    with pytest.raises(rec.AvrecFormatError):
        rec.read_recording(path)
    path.write_bytes(rec.MAGIC[:4])
    with pytest.raises(rec.AvrecFormatError, match="no complete header"):
        rec.read_recording(path)
    path.write_bytes(rec.MAGIC + rec.encode_record({"format": "other"}))
    with pytest.raises(rec.AvrecFormatError):
        rec.read_recording(path)


def test_avrec_decoder_memory_is_bounded() -> None:
    dec = rec.AvrecDecoder()
    dec.feed(rec.MAGIC + struct.pack("<II", rec.MAX_RECORD_BYTES + 1, 0))
    assert dec.error is not None and dec.feed(b"\x00" * 1000) == []


@given(st.binary(max_size=400))
def test_avrec_decoder_never_raises_on_garbage_after_the_header(data: bytes) -> None:
    dec = rec.AvrecDecoder()
    dec.feed(rec.MAGIC + rec.encode_record(rec.capture_header().to_msgpack()))
    dec.feed(data)


# --------------------------------------------------------------------------- OSC vs python-osc

_osc_args = st.lists(
    st.one_of(
        st.integers(-(2**31), 2**31 - 1),
        st.floats(width=32, allow_nan=False),
        st.text(max_size=20).filter(lambda s: "\x00" not in s),
        st.binary(min_size=1, max_size=20),
        st.booleans(),
        st.none(),
    ),
    max_size=10,
)


@given(st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s), _osc_args)
def test_our_osc_parser_agrees_with_python_osc(address: str, args: list[object]) -> None:
    from pythonosc.osc_message import OscMessage

    from avatar_engine.formats import osc as our_osc

    data = osc("/" + address, *args)
    theirs = OscMessage(data)
    ours = our_osc.parse_datagram(data)
    assert ours == [(theirs.address, list(theirs.params))]
    # inside a bundle too
    assert our_osc.parse_datagram(bundle(data, data)) == ours * 2


@given(st.binary(max_size=300))
def test_our_osc_parser_raises_only_osc_error(data: bytes) -> None:
    from avatar_engine.formats import osc as our_osc

    with contextlib.suppress(our_osc.OscError):
        our_osc.parse_datagram(data)
