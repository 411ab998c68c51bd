"""Egress as Unreal and VMC receivers see it (docs/unreal.md): any rig leaves as ARKit weights,
Live Link frames carry a phone-like time-of-day timecode and a 36-character device id, and VMC
bones carry rest positions, checked with parsers that are not ours (struct per Epic's layout,
python-osc) and against a real server."""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage

from avatar_engine import Retargeter, load_rig
from avatar_engine.formats.llf_csv import read_take
from avatar_engine.formats.vmc import HUMANOID_REST_POSITIONS
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES
from avatar_engine.transport.egress import (
    ArkitView,
    LiveLinkEgress,
    VmcEgress,
    device_id_for,
    seconds_of_day,
)
from live_capture import LiveLinkPhone, wait_for_session
from server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
JAW = ARKIT_NAMES.index("jawOpen")


def parse_llf(data: bytes) -> dict[str, object]:
    """Live Link Face v6 read field by field from Epic's layout (not the project's parser)."""
    assert data[0] == 6
    (n_dev,) = struct.unpack_from(">i", data, 1)
    device = data[5 : 5 + n_dev].decode()
    at = 5 + n_dev
    (n_sub,) = struct.unpack_from(">i", data, at)
    subject = data[at + 4 : at + 4 + n_sub].decode()
    at += 4 + n_sub
    frame, subframe, num, den = struct.unpack_from(">ifii", data, at)
    at += 16
    assert data[at] == 61
    values = struct.unpack_from(">61f", data, at + 1)
    assert at + 1 + 244 == len(data)
    # PyLiveLinkFace reads bytes 4..40 as a 37-character id starting with '$' (0x24 = 36).
    assert data[4:5] == b"$"
    return {"device": device, "subject": subject, "frame": frame, "subframe": subframe,
            "fps": (num, den), "values": values}  # fmt: skip


# ------------------------------------------------------------------ in process


def test_the_default_rig_comes_back_as_the_arkit_weights_of_a_capture() -> None:
    rig = load_rig("cc4-extended")
    take = read_take(ROOT / "tests" / "data" / "llf-take-jmtechart.csv")
    morphs = Retargeter(rig).map(take.arkit)
    view = ArkitView.for_rig(rig)
    assert view.method == "inverse_mapping"
    worst = 0.0
    for frame, arkit in zip(morphs, take.arkit, strict=True):
        got, _ = view.gather(frame.astype(np.float32), None)
        worst = max(worst, float(np.abs(got - np.clip(arkit, 0, 1)).max()))
    assert worst < 1e-3  # retarget then inverse: the phone's weights again
    assert ArkitView.for_rig(load_rig("arkit52")).method == "names"


def test_a_rig_unrelated_to_arkit_is_refused(tmp_path: Path) -> None:
    rig_file = tmp_path / "plain.json"
    rig_file.write_text(
        '{"format": "avatar-engine/rig@1", "name": "plain", "regions": {"mouth": ["Open"]}}'
    )
    with pytest.raises(ValueError, match="arkit52 mapping"):
        ArkitView.for_rig(load_rig(rig_file))


def test_live_link_timecode_is_the_time_of_day_like_a_phone() -> None:
    start = time.mktime((2026, 12, 2, 13, 45, 30, 0, 0, -1)) + 0.25
    egress = LiveLinkEgress(subject="Avatar", clock=lambda: start)
    zeros = np.zeros(52, np.float32)
    first = parse_llf(egress.packet(zeros, None, 10.0))
    later = parse_llf(egress.packet(zeros, None, 10.5))
    day = (13 * 3600 + 45 * 60 + 30.25) * 60
    assert first["frame"] == math.floor(day) and first["fps"] == (60, 1)
    assert later["frame"] == first["frame"] + 30  # the stream clock advances the timecode
    assert first["device"] == device_id_for("Avatar") and len(str(first["device"])) == 36
    assert LiveLinkEgress(subject="Avatar").device_id == first["device"]  # stable per subject
    midnight = LiveLinkEgress(clock=lambda: time.mktime((2026, 12, 2, 23, 59, 59, 0, 0, -1)))
    midnight.packet(zeros, None, 0.0)
    assert parse_llf(midnight.packet(zeros, None, 2.0))["frame"] == 60  # wraps like a clock
    stream = LiveLinkEgress(timecode="stream")
    assert parse_llf(stream.packet(zeros, None, 2.5))["frame"] == 150
    with pytest.raises(ValueError, match="36"):
        LiveLinkEgress(device_id="iPhone")


def test_vmc_bones_carry_rest_positions_for_receivers_that_sync_them() -> None:
    rotations = np.zeros(9, np.float32)
    rotations[ROTATION_NAMES.index("HeadYaw")] = 0.5
    (datagram,) = VmcEgress().datagrams(np.zeros(52, np.float32), rotations, 1.0)
    assert OscBundle.dgram_is_bundle(datagram)
    bones = {}
    for item in OscBundle(datagram):
        if isinstance(item, OscMessage) and item.address == "/VMC/Ext/Bone/Pos":
            name, *numbers = item.params
            bones[name] = numbers
    assert set(bones) == {"Head", "LeftEye", "RightEye"}
    for bone, (px, py, pz, *_) in bones.items():
        assert (px, py, pz) == pytest.approx(HUMANOID_REST_POSITIONS[bone], abs=1e-6)
    # EVMC4U with Bone Position Synchronize on: localPosition = pos, localRotation = rot.
    neck = np.array([0.0, 1.45, 0.0])
    head = neck + np.array(bones["Head"][:3])
    assert np.linalg.norm(head - neck) == pytest.approx(0.1, abs=1e-6)  # not on the neck's pivot
    _, qy, _, _ = bones["Head"][3:]
    assert qy == pytest.approx(math.sin(math.radians(0.5 * 40) / 2), abs=1e-6)
    left, right = np.array(bones["LeftEye"][:3]), np.array(bones["RightEye"][:3])
    assert np.linalg.norm(left - right) == pytest.approx(0.064, abs=1e-6)
    assert left[2] > 0 and right[2] > 0 and left[0] < 0 < right[0]  # in front; left is -x
    custom = {"Head": (0.0, 0.12, 0.01), "LeftEye": (-0.03, 0.07, 0.02),
              "RightEye": (0.03, 0.07, 0.02)}  # fmt: skip
    (datagram,) = VmcEgress(bone_positions=custom).datagrams(
        np.zeros(52, np.float32), rotations, 1.0
    )
    heads = [m.params for m in OscBundle(datagram) if m.address == "/VMC/Ext/Bone/Pos"]
    assert heads[0][1:4] == pytest.approx([0.0, 0.12, 0.01])
    with pytest.raises(ValueError, match="exactly"):
        VmcEgress(bone_positions={"Head": (0.0, 0.1, 0.0)})


# ------------------------------------------------------------------ a real server


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().wait_ready()
    yield proc
    proc.stop()


class Listener:
    """A UDP socket collecting datagrams on a thread (Unreal's side of Live Link)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.packets.append(self.sock.recv(65536))
            except TimeoutError:
                continue

    def wait(self, count: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.packets) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.packets) >= count, f"{len(self.packets)} packets"
        return list(self.packets)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_a_captured_cc4_session_reaches_unreal_as_the_phone_sent_it(server: ServerProcess) -> None:
    rx = Listener()
    try:
        with (
            LiveLinkPhone(server.livelink_port, "unreal", jaw=0.6),
            httpx.Client(base_url=server.url) as c,
        ):
            wait_for_session(server, "unreal")
            assert c.get("/sessions/unreal").json()["rig"] == "cc4-extended"
            body = {"kind": "livelink", "port": rx.port, "subject": "Avatar"}
            made = c.post("/sessions/unreal/egress", json=body)
            assert made.status_code == 201
            packets = rx.wait(30)
    finally:
        rx.close()
    frames = [parse_llf(p) for p in packets[-10:]]
    jaw = [float(f["values"][JAW]) for f in frames]  # type: ignore[index]
    yaw = [float(f["values"][52]) for f in frames]  # type: ignore[index]
    assert np.median(jaw) == pytest.approx(0.6, abs=0.05)
    assert np.median(yaw) == pytest.approx(0.25, abs=0.05)
    assert {f["subject"] for f in frames} == {"Avatar"}
    assert {f["device"] for f in frames} == {device_id_for("Avatar")}
    now_frames = seconds_of_day(time.time()) * 60
    assert abs(int(frames[-1]["frame"]) - now_frames) < 10 * 60  # type: ignore[call-overload]
    numbers = [int(f["frame"]) for f in frames]  # type: ignore[call-overload]
    assert numbers == sorted(numbers)


def test_a_text_driven_cc4_session_speaks_in_arkit_weights(server: ServerProcess) -> None:
    rx = Listener()
    try:
        with httpx.Client(base_url=server.url) as c:
            assert c.post("/sessions", json={"id": "talker"}).status_code == 201
            made = c.post("/sessions/talker/egress", json={"kind": "livelink", "port": rx.port})
            assert made.status_code == 201
            said = c.post("/sessions/talker/speak", json={"text": "Hello, how are you today?"})
            assert said.status_code == 202, said.text
            time.sleep(2.5)
            packets = rx.wait(60)
    finally:
        rx.close()
    jaw = np.array([parse_llf(p)["values"][JAW] for p in packets])  # type: ignore[index]
    assert jaw.max() > 0.1  # the mouth opens for the words, in the ARKit jawOpen curve
    assert jaw.min() < 0.05


def test_vmc_egress_from_a_server_carries_the_receivers_bone_positions(
    server: ServerProcess,
) -> None:
    rx = Listener()
    positions = {"Head": [0.0, 0.11, 0.0], "LeftEye": [-0.03, 0.06, 0.03],
                 "RightEye": [0.03, 0.06, 0.03]}  # fmt: skip
    try:
        with httpx.Client(base_url=server.url) as c:
            c.post("/sessions", json={"id": "vtuber-cc4"})
            body = {"kind": "vmc", "port": rx.port, "bone_positions": positions}
            assert c.post("/sessions/vtuber-cc4/egress", json=body).status_code == 201
            packets = rx.wait(5)
    finally:
        rx.close()
    seen = {}
    for item in OscBundle(packets[-1]):
        if item.address == "/VMC/Ext/Bone/Pos":
            seen[item.params[0]] = item.params[1:4]
    for bone, xyz in positions.items():
        assert seen[bone] == pytest.approx(xyz, abs=1e-6)
