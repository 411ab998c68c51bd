"""Streams from a real server process to real peers: capture in over UDP, frames out over
WebSocket and WebRTC, LOD switches, stalled and vanishing clients, SIGTERM under load. What
only the app decides (WebSocket publish, close codes, refused offers) runs in process on a
fake clock (tests/inprocess.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from pythonosc.udp_client import SimpleUDPClient

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import (
    Frame,
    Hello,
    Pong,
    encode_capture,
    encode_control,
    encode_ping,
    encode_publish_hello,
)
from avatar_engine.codec.wire import ControlOp
from avatar_engine.formats.livelink import build_packet
from avatar_engine.rigs.arkit import ARKIT_NAMES
from inprocess import InProcessServer
from server_process import ServerProcess

JAW = ARKIT_NAMES.index("jawOpen")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().wait_ready()
    yield proc
    proc.stop()


def livelink_values(jaw: float) -> np.ndarray:
    values = np.zeros(61, np.float32)
    values[JAW] = jaw
    return values


async def frames_until(ws: websockets.ClientConnection, decoder: Decoder, count: int,
                       timeout: float = 10.0) -> list[object]:  # fmt: skip
    """Decode messages until ``count`` frames arrived; returns every decoded message."""
    seen: list[object] = []
    deadline = time.monotonic() + timeout
    while sum(isinstance(m, Frame) for m in seen) < count:
        remaining = deadline - time.monotonic()
        seen.append(decoder.feed(await asyncio.wait_for(ws.recv(), remaining)))
    return seen


def jaw_open(decoder: Decoder, hello: Hello) -> float:
    names = hello.schema.morph_names
    return float(decoder.stream(hello.sid).morphs[names.index("Jaw_Open")])


def test_live_link_packets_create_a_session_and_reach_subscribers(server: ServerProcess) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def scenario() -> float:
        for _ in range(3):  # the first valid packet creates session "iPhoneTest"
            sock.sendto(
                build_packet("dev", "iPhoneTest", livelink_values(0.2)),
                ("127.0.0.1", server.livelink_port),
            )
            await asyncio.sleep(0.05)
        decoder = Decoder()
        async with websockets.connect(f"{server.ws_url}/sessions/iPhoneTest/stream") as ws:
            seen = await frames_until(ws, decoder, 1)
            hello = next(m for m in seen if isinstance(m, Hello))
            assert hello.schema.rig == "cc4-extended"
            for _ in range(20):
                sock.sendto(
                    build_packet("dev", "iPhoneTest", livelink_values(0.7)),
                    ("127.0.0.1", server.livelink_port),
                )
                await frames_until(ws, decoder, 1)
                if abs(jaw_open(decoder, hello) - 0.7) < 1 / 255:
                    break
            return jaw_open(decoder, hello)

    assert asyncio.run(scenario()) == pytest.approx(0.7, abs=1 / 255)
    stats = httpx.get(server.url + "/stats").json()
    livelink = stats["sources"]["livelink"]
    assert livelink["totals"]["frames"] >= 4 and "iPhoneTest" in str(livelink["sources"])
    sock.sendto(b"\x06garbage", ("127.0.0.1", server.livelink_port))  # dropped and counted
    assert httpx.get(server.url + "/health").status_code == 200


def test_vmc_from_python_osc_drives_the_vmc_session(server: ServerProcess) -> None:
    client = SimpleUDPClient("127.0.0.1", server.vmc_port)
    for _ in range(5):
        client.send_message("/VMC/Ext/Blend/Val", ["JawOpen", 0.5])
        client.send_message("/VMC/Ext/Blend/Apply", [])
        time.sleep(0.02)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        response = httpx.get(server.url + "/sessions/vmc")
        if response.status_code == 200 and response.json()["capture_frames"] > 0:
            break
        time.sleep(0.05)
    assert response.json()["capture_frames"] > 0


def test_websocket_publish_positional_and_by_name(inprocess: InProcessServer) -> None:
    srv = inprocess
    pub = srv.connect("/sessions/pub1/publish")
    pub.send(encode_publish_hello(1, list(ARKIT_NAMES), [], 60))
    pub.send(encode_capture(1, 0, 0, np.full(52, 0.1, np.float32)))
    srv.advance(0.1)
    ws = srv.connect("/sessions/pub1/stream")
    srv.advance(1 / 60)
    assert ws.decoder.hello is not None and ws.frames
    for seq in range(1, 40):
        pub.send(encode_capture(1, seq, seq * 16, {"JawOpen": 0.6}))
        srv.advance(1 / 60)
        if abs(ws.frames[-1].morphs["Jaw_Open"] - 0.6) < 1 / 255:
            break
    assert ws.frames[-1].morphs["Jaw_Open"] == pytest.approx(0.6, abs=1 / 255)


def test_lod_switch_gives_a_keyframe_of_the_new_level(server: ServerProcess) -> None:
    httpx.post(server.url + "/sessions", json={"id": "lod1"})

    async def scenario() -> None:
        decoder = Decoder()
        async with websockets.connect(f"{server.ws_url}/sessions/lod1/stream?lod=0") as ws:
            seen = await frames_until(ws, decoder, 1)
            hello = next(m for m in seen if isinstance(m, Hello))
            decoder.expect_lod(hello.sid, 3)
            await ws.send(encode_control(ControlOp.SET_LOD, hello.sid, 3))
            frames = [m for m in await frames_until(ws, decoder, 3) if isinstance(m, Frame)]
            assert any(f.lod == 3 and f.keyframe for f in frames)
            await ws.send(encode_ping(42, 0))
            for _ in range(100):  # frames may come first; the pong must come
                message = decoder.feed(await asyncio.wait_for(ws.recv(), 5))
                if isinstance(message, Pong):
                    assert message.nonce == 42
                    break
            else:
                raise AssertionError("no pong")

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("message", "code"),
    [("text please", 1003), (b"\xc1", 1007), (b"\x00" * 10000, 1009)],
)
def test_malformed_stream_messages_close_with_a_code(inprocess: InProcessServer, message: object,
                                                     code: int) -> None:  # fmt: skip
    inprocess.post("/sessions", json={"id": "bad1"})
    ws = inprocess.connect("/sessions/bad1/stream")
    assert ws.messages  # the hello came first
    ws.send(message)  # type: ignore[arg-type]
    assert ws.close_code == code
    assert inprocess.get("/health").status_code == 200


def test_unknown_session_stream_closes_4404(inprocess: InProcessServer) -> None:
    assert inprocess.connect("/sessions/nobody/stream").close_code == 4404


def test_stalled_and_vanishing_subscribers_do_not_hurt_the_others(server: ServerProcess) -> None:
    httpx.post(server.url + "/sessions", json={"id": "slow1"})
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def scenario() -> tuple[int, int]:
        # A stalled reader: connects, then never reads (its TCP window fills up).
        stalled = await websockets.connect(f"{server.ws_url}/sessions/slow1/stream", max_queue=1)
        stalled.transport.pause_reading()  # type: ignore[attr-defined]
        # A reader that vanishes without a close handshake.
        vanishing = await websockets.connect(f"{server.ws_url}/sessions/slow1/stream")
        vanishing.transport.abort()  # type: ignore[attr-defined]
        decoder = Decoder()
        received = 0
        async with websockets.connect(f"{server.ws_url}/sessions/slow1/stream") as healthy:
            start = time.monotonic()
            i = 0
            while time.monotonic() - start < 2.0:
                values = livelink_values(0.5 + 0.4 * np.sin(i / 5))
                sock.sendto(build_packet("d", "slow1", values), ("127.0.0.1", server.livelink_port))
                i += 1
                try:
                    decoder.feed(await asyncio.wait_for(healthy.recv(), 0.05))
                    received += 1
                except TimeoutError:
                    pass
        await stalled.close()
        return received, i

    received, sent = asyncio.run(scenario())
    assert received >= sent * 0.5  # the healthy one keeps streaming at the capture rate
    stats = httpx.get(server.url + "/stats").json()
    assert stats["tick"]["errors"] == 0 and httpx.get(server.url + "/health").status_code == 200
    ticks = stats["tick"]["ticks"]
    time.sleep(0.3)
    assert httpx.get(server.url + "/stats").json()["tick"]["ticks"] > ticks  # still ticking


def test_webrtc_peer_receives_frames_on_the_unreliable_channel(server: ServerProcess) -> None:
    httpx.post(server.url + "/sessions", json={"id": "rtc1"})

    async def scenario() -> list[str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        frames = pc.createDataChannel("frames", ordered=False, maxRetransmits=0)
        control = pc.createDataChannel("control")
        decoder = Decoder()
        kinds: list[str] = []
        got_frame = asyncio.Event()

        def on_message(message: bytes) -> None:
            decoded = decoder.feed(message)
            kinds.append(type(decoded).__name__)
            if isinstance(decoded, Frame):
                got_frame.set()

        frames.on("message", on_message)
        control.on("message", on_message)
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(base_url=server.url) as client:
            answer = await client.post("/rtc/offer", json={
                "sdp": pc.localDescription.sdp, "type": "offer", "session": "rtc1", "lod": 1,
            })  # fmt: skip
            assert answer.status_code == 200, answer.text
            await pc.setRemoteDescription(RTCSessionDescription(**answer.json()))
            await asyncio.wait_for(got_frame.wait(), 15)
            stats = (await client.get("/stats")).json()
            assert stats["subscribers_by_transport"].get("webrtc") == 1
        await pc.close()
        return kinds

    kinds = asyncio.run(scenario())
    assert kinds[0] == "Hello" and "Frame" in kinds


def test_bad_webrtc_offers_are_4xx(inprocess: InProcessServer) -> None:
    c = inprocess
    c.post("/sessions", json={"id": "rtc2"})
    bad = c.post("/rtc/offer", json={"sdp": "v=0 nonsense", "type": "offer", "session": "rtc2"})
    assert bad.status_code == 400 and "offer" in bad.json()["detail"]
    wrong_type = {"sdp": "x", "type": "answer", "session": "rtc2"}
    assert c.post("/rtc/offer", json=wrong_type).status_code == 422
    no_session = {"sdp": "x", "type": "offer", "session": "none"}
    assert c.post("/rtc/offer", json=no_session).status_code == 404


def test_sigterm_under_load_exits_within_five_seconds() -> None:
    proc = ServerProcess().wait_ready()
    httpx.post(proc.url + "/sessions", json={"id": "load"})

    async def subscribers() -> list[websockets.ClientConnection]:
        return [await websockets.connect(f"{proc.ws_url}/sessions/load/stream") for _ in range(20)]

    loop = asyncio.new_event_loop()
    conns = loop.run_until_complete(subscribers())
    try:
        took = proc.stop()
    finally:
        for ws in conns:
            loop.run_until_complete(ws.close())
        loop.close()
    assert took < 5.0
