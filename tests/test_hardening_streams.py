"""Issue 20 reproductions on the streaming paths: PING bursts, handshake errors, publish drops
in /stats and /metrics, Live Link subjects per sender, and the Python client's reconnect. The
handshake errors and publish drops are the app's own decisions and run in process on a fake
clock (tests/inprocess.py); the rest needs a real ``serve`` and its sockets."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import websockets

from avatar_engine.client.subscriber import Backoff, DecodedEvent, DecodedFrame, subscribe_ws
from avatar_engine.codec import encode_capture, encode_ping, encode_publish_hello
from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Pong
from avatar_engine.formats.livelink import VALUE_COUNT, build_packet
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES
from avatar_engine.transport.outbox import (
    CLOSE_NOT_READING,
    MAX_CONTROL_MESSAGES,
    MAX_PENDING_PONGS,
    Outbox,
    OutboxOverflowError,
)
from inprocess import InProcessServer
from server_process import ServerProcess

STARTUP_S = 120.0
"""A loaded machine (the suite runs beside other work) can take a while to start a server."""


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().wait_ready(STARTUP_S)
    yield proc
    proc.stop()


# -- 8. PING bursts ----------------------------------------------------------------------


def test_a_ping_burst_never_drops_a_reading_client(server: ServerProcess) -> None:
    assert httpx.post(f"{server.url}/sessions", json={"id": "pings"}).status_code == 201

    async def burst() -> tuple[int, int]:
        decoder = Decoder()
        pongs = frames_after = 0
        async with websockets.connect(f"{server.ws_url}/sessions/pings/stream") as ws:
            for nonce in range(200):  # 33 used to close the connection with 1006
                await ws.send(encode_ping(nonce, 0))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (pongs < 200 or frames_after < 10):
                message = decoder.feed(await asyncio.wait_for(ws.recv(), 10))
                if isinstance(message, Pong):
                    pongs += 1
                elif pongs:
                    frames_after += 1
        return pongs, frames_after

    pongs, frames_after = asyncio.run(burst())
    assert pongs == 200 and frames_after >= 10  # every PING answered, and still streaming
    assert "OutboxOverflowError" not in server.log()


def test_the_outbox_counts_pongs_apart_and_names_its_overflow() -> None:
    outbox = Outbox()
    for nonce in range(MAX_PENDING_PONGS + 5):
        outbox.put_pong(b"pong %d" % nonce)  # never raises, never closes
    assert not outbox.closed and outbox.pongs_dropped == 5
    for _ in range(MAX_CONTROL_MESSAGES):
        outbox.put_control(b"event")
    with pytest.raises(OutboxOverflowError):
        outbox.put_control(b"one too many")
    assert outbox.closed and outbox.close_reason == CLOSE_NOT_READING
    assert CLOSE_NOT_READING[0] == 1008 and CLOSE_NOT_READING[1]


# -- 12. handshake errors and publish drops -----------------------------------------------


@pytest.mark.parametrize(
    ("query", "word"), [("mode=diagonal", "mode"), ("lod=7", "lod"), ("lod=x", "lod"),
                        ("bits=12", "bits")],
)  # fmt: skip
def test_bad_stream_parameters_close_4400_with_a_reason(
    inprocess: InProcessServer, query: str, word: str
) -> None:
    inprocess.post("/sessions", json={"id": "params"})
    ws = inprocess.connect("/sessions/params/stream", query)
    assert ws.close_code == 4400 and word in ws.close_reason


def test_publish_drops_are_counted_in_stats_and_metrics(inprocess: InProcessServer) -> None:
    values = np.full(len(ARKIT_NAMES) + len(ROTATION_NAMES), 0.5, np.float32)
    nan = values.copy()
    nan[3] = np.nan
    pub = inprocess.connect("/sessions/pub/publish")
    pub.send(b"\xc1garbage")
    pub.send(encode_publish_hello(1, ARKIT_NAMES, ROTATION_NAMES, 60))
    pub.send(encode_capture(1, 0, 0, nan))
    for seq in range(1, 300):  # far over 120 frames/s with a burst of 30 (no time passes)
        pub.send(encode_capture(1, seq, seq, values))
    pub.send(encode_ping(1, 0))
    assert isinstance(Decoder().feed(pub.messages[-1]), Pong)  # everything before it was read
    drops = inprocess.get("/stats").json()["publish"]["websocket"]["drops"]
    assert drops.get("non_finite", 0) >= 1 and drops.get("rate_limited", 0) >= 100
    assert any(reason.startswith("protocol") for reason in drops), drops
    metrics = inprocess.get("/metrics").text
    assert 'avatar_engine_capture_dropped_total{kind="publish-ws",reason="rate_limited"}' in metrics


# -- 3. Live Link: one session per phone, for many phones ---------------------------------


def test_forty_phones_get_forty_sessions(server: ServerProcess) -> None:
    values = np.full(VALUE_COUNT, 0.2, np.float32)
    phones = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(40)]
    try:
        for frame in range(3):
            for i, sock in enumerate(phones):
                packet = build_packet("dev", f"phone{i}", values, frame_number=frame)
                sock.sendto(packet, ("127.0.0.1", server.livelink_port))
            time.sleep(0.05)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ids = {s["id"] for s in httpx.get(f"{server.url}/sessions").json()["sessions"]}
            if {f"phone{i}" for i in range(40)} <= ids:
                break
            time.sleep(0.2)
        assert {f"phone{i}" for i in range(40)} <= ids
        totals = httpx.get(f"{server.url}/stats").json()["sources"]["livelink"]["totals"]
        assert "unrouted" not in totals["drops"]
    finally:
        for sock in phones:
            sock.close()


# -- 13. the Python client reconnects ------------------------------------------------------


def test_the_python_client_reconnects_after_a_server_restart() -> None:
    first = ServerProcess("--livelink-port", "0", "--vmc-port", "0").wait_ready(STARTUP_S)
    port = first.port
    seen: list[str] = []

    async def follow() -> None:
        stream = subscribe_ws(
            f"ws://127.0.0.1:{port}/sessions/back/stream",
            reconnect=Backoff(initial_s=0.1, max_s=0.5),
        )
        second: ServerProcess | None = None
        try:
            async for item in stream:
                if isinstance(item, DecodedFrame):
                    seen.append("frame")
                    if second is None:
                        await asyncio.to_thread(first.stop)  # close 1012: retried
                        second = ServerProcess("--port", str(port), "--livelink-port", "0",
                                               "--vmc-port", "0")  # fmt: skip
                        second.url = first.url  # the last --port wins: the same address
                        await asyncio.to_thread(second.wait_ready, STARTUP_S)
                        await asyncio.to_thread(
                            httpx.post, f"{second.url}/sessions", json={"id": "back"}
                        )
                    elif "reconnect" in seen:
                        return
                elif isinstance(item, DecodedEvent) and item.kind == "reconnect":
                    seen.append("reconnect")
        finally:
            await stream.aclose()
            if second is not None:
                second.stop()

    try:
        assert httpx.post(f"{first.url}/sessions", json={"id": "back"}).status_code == 201
        asyncio.run(asyncio.wait_for(follow(), 240))
    finally:
        first.stop()
    assert seen[0] == "frame" and "reconnect" in seen and seen[-1] == "frame"


def test_reconnect_stops_on_codes_retrying_cannot_fix(server: ServerProcess) -> None:
    async def follow() -> list[str]:
        url = f"{server.ws_url}/sessions/never-created/stream"
        return [i.kind async for i in subscribe_ws(url, reconnect=Backoff(initial_s=0.05))
                if isinstance(i, DecodedEvent)]  # fmt: skip

    assert asyncio.run(asyncio.wait_for(follow(), 30)) == []  # 4404 before any frame: stop


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(initial_s=0.5, max_s=15.0, random=lambda: 1.0)
    assert [backoff.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    backoff.reset()
    assert Backoff(random=lambda: 0.0).next() == 0.25 and backoff.next() == 0.5
