"""Egress: a session mirrored to a Live Link receiver and a VMC receiver (python-osc)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer

from avatar_engine.formats.livelink import parse_packet
from avatar_engine.rigs.arkit import ARKIT_NAMES
from server_process import ServerProcess, free_port


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().wait_ready()
    yield proc
    proc.stop()


def test_live_link_egress_sends_the_sessions_face(server: ServerProcess) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    port = receiver.getsockname()[1]
    with httpx.Client(base_url=server.url) as c:
        c.post("/sessions", json={"id": "mirror", "rig": "arkit52"})
        attached = c.post("/sessions/mirror/egress",
                          json={"kind": "livelink", "port": port, "subject": "Engine"})  # fmt: skip
        assert attached.status_code == 201, attached.text
        c.post("/sessions/mirror/speak", json={"text": "Mama made a big pie"})
        jaw = 0.0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            frame = parse_packet(receiver.recv(2048))
            assert frame.subject == "Engine"
            jaw = max(jaw, float(frame.values[ARKIT_NAMES.index("jawOpen")]))
            if jaw > 0.2:
                break
        assert jaw > 0.2  # the engine's lip-sync arrives as a phone would send it
        listed = c.get("/sessions/mirror/egress").json()["egress"]
        assert listed[0]["sent"] > 0
        assert c.delete(f"/sessions/mirror/egress/{listed[0]['id']}").status_code == 204
        assert c.delete("/sessions/mirror/egress/nope").status_code == 404


def test_vmc_egress_is_read_by_python_osc(server: ServerProcess) -> None:
    received: list[tuple[str, float]] = []
    dispatcher = Dispatcher()
    dispatcher.map("/VMC/Ext/Blend/Val", lambda _addr, name, value: received.append((name, value)))
    port = free_port(socket.SOCK_DGRAM)
    osc = ThreadingOSCUDPServer(("127.0.0.1", port), dispatcher)
    thread = threading.Thread(target=osc.serve_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=server.url) as c:
            c.post("/sessions", json={"id": "vtuber", "rig": "oculus15"})
            assert (
                c.post("/sessions/vtuber/egress", json={"kind": "vmc", "port": port}).status_code
                == 201
            )
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not received:
                time.sleep(0.05)
    finally:
        osc.shutdown()
    names = {name for name, _ in received}
    assert "JawOpen" in names and "EyeBlinkLeft" in names  # Perfect Sync names


def test_egress_sends_the_default_rig_through_its_arkit_mapping(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as c:
        c.post("/sessions", json={"id": "cc4only"})
        accepted = c.post("/sessions/cc4only/egress", json={"kind": "livelink"})
        assert accepted.status_code == 201
        listed = c.get("/sessions/cc4only/egress").json()["egress"]
        assert listed[0]["arkit_from"] == "inverse_mapping"
        assert listed[0]["timecode"] == "time_of_day"
        assert c.post("/sessions/cc4only/egress", json={"kind": "osc"}).status_code == 422
        partial = {"kind": "vmc", "bone_positions": {"Head": [0, 0.1, 0]}}
        assert c.post("/sessions/cc4only/egress", json=partial).status_code == 422
