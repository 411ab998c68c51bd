"""The data-channel fast path (transport/rtc_datapath.py) between two real aiortc peers.

It books chunks in aiortc's private SCTP state, so these tests are what fails when aiortc
changes: the installed release must be one the module lists as tested, every message must take
the fast path on both sides, and aiortc's own bookkeeping (flight size, sent queue, cumulative
TSN) must come out as if aiortc had sent and acknowledged them itself.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator
from importlib.metadata import version
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdatachannel import RTCDataChannel
from google_crc32c import value as crc32c

from avatar_engine.client.rtc_lean import run_rtc_viewers
from avatar_engine.codec.wire import DeltaMode
from avatar_engine.server.fanout import DataChannelLink
from avatar_engine.server.streams import StreamKey, Subscriber
from avatar_engine.transport import rtc_datapath as datapath
from avatar_engine.transport.rtc_datapath import (
    AIORTC_TESTED,
    FastSender,
    LeanReceiver,
    internals_ok,
)
from server_process import ServerProcess


async def _pair() -> tuple[RTCPeerConnection, RTCPeerConnection, dict[str, RTCDataChannel],
                           dict[str, RTCDataChannel]]:  # fmt: skip
    """Two connected peers on loopback; the offerer's channels and the answerer's."""
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    mine = {
        "frames": offerer.createDataChannel("frames", ordered=False, maxRetransmits=0),
        "control": offerer.createDataChannel("control"),
    }
    theirs: dict[str, RTCDataChannel] = {}
    both_open = asyncio.Event()

    @answerer.on("datachannel")
    def on_channel(channel: RTCDataChannel) -> None:
        theirs[channel.label] = channel
        if len(theirs) == 2:
            both_open.set()

    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    await asyncio.wait_for(both_open.wait(), 15)
    while any(c.readyState != "open" for c in mine.values()):
        await asyncio.sleep(0.01)
    return offerer, answerer, mine, theirs


def test_the_installed_aiortc_is_one_the_fast_path_was_tested_with() -> None:
    assert version("aiortc").startswith(AIORTC_TESTED), (
        f"aiortc {version('aiortc')}: check transport/rtc_datapath.py against its SCTP, DTLS "
        "and ICE internals, then add it to AIORTC_TESTED"
    )
    assert internals_ok()


@pytest.fixture(params=["native", "python"])
def seal(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Records opened and sealed natively (when this build can) or by pyOpenSSL in Python."""
    if request.param == "python":
        monkeypatch.setattr(datapath, "PYOPENSSL_TESTED", ("0.0.",))
    elif not datapath.native_ok():
        pytest.skip("no native WebRTC path here")
    datapath.native_ok.cache_clear()
    yield request.param
    datapath.native_ok.cache_clear()


def test_fast_send_and_lean_receive_keep_aiortc_s_bookkeeping(seal: str) -> None:
    async def scenario() -> None:
        offerer, answerer, mine, theirs = await _pair()
        try:
            got: list[tuple[int, bytes]] = []
            via_aiortc: list[bytes] = []
            mine["frames"].on("message", via_aiortc.append)
            sctp, their_sctp = offerer.sctp, answerer.sctp
            assert sctp is not None and their_sctp is not None
            receiver = LeanReceiver(sctp, lambda sid, data: got.append((sid, data)))
            sender = FastSender(theirs["frames"])
            acks = LeanReceiver(their_sctp, None)  # the server's side: SACKs only
            assert (receiver._path.row is not None) == (seal == "native")
            n = 41
            for i in range(n):
                sender.send(b"frame %d" % i)
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.1)
            receiver.flush_sack()  # the odd last packet
            for _ in range(100):
                if not their_sctp._sent_queue:
                    break
                await asyncio.sleep(0.01)
            assert sender.fast == n and receiver.fast == n, "every message took the fast path"
            assert acks.fast == (n + 1) // 2, "every SACK too (one per second packet)"
            assert [d for _, d in got] == [b"frame %d" % i for i in range(n)] and not via_aiortc
            assert {sid for sid, _ in got} == {theirs["frames"].id}
            # aiortc saw the SACKs: nothing in flight or queued, the timer stopped.
            assert not their_sctp._sent_queue and their_sctp._t3_handle is None
            assert their_sctp._flight_size == 0
            assert sctp._last_received_tsn == (their_sctp._local_tsn - 1) % 2**32
            # Control messages both ways still go through aiortc, in order, after the frames.
            echoed: list[bytes] = []
            theirs["control"].on("message", echoed.append)
            mine["control"].send(b"ping")
            control_got: list[bytes] = []
            mine["control"].on("message", control_got.append)
            theirs["control"].send(b"pong")
            sender.send(b"after")
            for _ in range(200):
                if echoed and control_got and len(got) == n + 1:
                    break
                await asyncio.sleep(0.01)
            assert echoed == [b"ping"] and control_got == [b"pong"]
            assert got[-1][1] == b"after"
            receiver.close()
        finally:
            await offerer.close()
            await answerer.close()

    asyncio.run(scenario())


def test_an_untested_aiortc_release_takes_aiortc_s_public_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(datapath, "internals_ok", lambda: False)

    async def scenario() -> None:
        offerer, answerer, mine, theirs = await _pair()
        try:
            got: list[bytes] = []
            mine["frames"].on("message", got.append)
            sender = FastSender(theirs["frames"])
            for i in range(5):
                sender.send(b"m%d" % i)
            for _ in range(200):
                if len(got) == 5:
                    break
                await asyncio.sleep(0.01)
            assert sender.fast == 0 and sorted(got) == [b"m%d" % i for i in range(5)]
        finally:
            await offerer.close()
            await answerer.close()

    asyncio.run(scenario())


def test_lean_webrtc_viewers_against_a_real_server(server: ServerProcess) -> None:
    """The load generator's viewers (client/rtc_lean.py): connect, count frames in a window
    with no gaps, report their CPU; the server's fast path delivers every frame."""
    httpx.post(server.url + "/sessions", json={"id": "lean-rtc"}).raise_for_status()
    t0 = time.monotonic()
    stats = httpx.get(server.url + "/stats").json()
    spec = {
        "base": server.url,
        "paths": [["/sessions/lean-rtc/stream?lod=0", i == 0, False] for i in range(3)],
        "sessions": ["lean-rtc"] * 3,
        "t0": t0,
        "server_t0": float(stats["clock"]["monotonic_t0"]),
        "limit_s": 60.0,
    }
    window: list[float] = []

    def on_ready() -> None:
        now = time.monotonic()
        window.extend((now + 0.2, now + 1.7))

    result = run_rtc_viewers(spec, on_ready, lambda: (window[0], window[1]) if window else None)
    assert result["connected"] == 3 and result["failed"] == 0
    assert result["frames"] >= 3 * 60, result  # the idle face moves: about 60 frames/s each
    assert result["gaps"] == 0 and result["cpu_s"] > 0
    latencies = np.frombuffer(result["tick_to_receive_ms"], np.float32)
    assert len(latencies) == result["frames"] and float(np.median(latencies)) < 100


def test_native_crc32c_and_sctp_packet_match_the_python_reference() -> None:
    """The native group send's packet (register_rtc.cpp) is byte for byte the Python
    reference's (``sctp_packet`` of ``data_chunk``), its CRC32c google_crc32c's."""
    core = pytest.importorskip("avatar_engine._core")
    rng = np.random.default_rng(16)
    for size in (0, 1, 7, 8, 9, 63, 1500):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert core.rtc_crc32c(data) == crc32c(data)
    sctp = SimpleNamespace(_local_port=5000, _remote_port=5001, _remote_verification_tag=0xDEADBEEF)
    header = struct.pack("!HHL", 5000, 5001, 0xDEADBEEF) + bytes(4)
    for size, tsn, stream in ((1, 0, 0), (16, 0xFFFFFFFF, 1), (45, 12345, 65535), (1200, 7, 3)):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        reference = datapath.sctp_packet(sctp, datapath.data_chunk(tsn, stream, data))  # type: ignore[arg-type]
        assert core.rtc_sctp_packet(header, tsn, stream, data) == reference
    with pytest.raises(ValueError, match=r"1\.\.1200"):
        core.rtc_sctp_packet(header, 0, 0, bytes(1201))


async def _native_peers(n: int) -> tuple[list[tuple[RTCPeerConnection, RTCPeerConnection]],
                                          list[FastSender], list[list[bytes]]]:  # fmt: skip
    """``n`` connected pairs: the viewers receive with aiortc's own stack (which checks the
    CRC32c and decrypts every record), the server side sends with FastSenders and takes the
    SACKs with a LeanReceiver."""
    pairs, senders, got = [], [], []
    for _ in range(n):
        offerer, answerer, mine, theirs = await _pair()
        received: list[bytes] = []
        mine["frames"].on("message", received.append)
        assert answerer.sctp is not None
        LeanReceiver(answerer.sctp, None)
        pairs.append((offerer, answerer))
        senders.append(FastSender(theirs["frames"]))
        got.append(received)
    return pairs, senders, got


def test_frames_the_kernel_refuses_are_counted_as_lost_and_reach_stats() -> None:
    """A peer whose socket refuses the datagram loses the frame (counted, as on the network);
    the group's other peers are not held up, and the viewer's count is what /stats adds up."""
    if not datapath.native_ok():
        pytest.skip("no native group send here")

    async def scenario() -> None:
        pairs, senders, got = await _native_peers(2)
        refusing = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # no IPv4 destinations
        try:
            for sender in senders:
                sender.send(b"open")
            while not all(got):
                await asyncio.sleep(0.01)
            row = senders[0].row
            assert row is not None
            fields = list(datapath._ROW.unpack(row))
            fields[2] = refusing.fileno()
            senders[0].row = datapath._ROW.pack(*fields)
            n = 5
            for i in range(n):
                datapath.send_to_peers(senders, b"frame %d" % i)
                await asyncio.sleep(0.003)
            for _ in range(200):
                if len(got[1]) == n + 1:
                    break
                await asyncio.sleep(0.01)
            assert sorted(got[1][1:]) == [b"frame %d" % i for i in range(n)]
            assert [s.lost for s in senders] == [n, 0]
            viewer = Subscriber("s", "t", "webrtc", StreamKey("s", 0, DeltaMode.CHAINED, 8), 1, 0.0)
            viewer.direct = DataChannelLink(senders[0], 1 << 16)
            assert viewer.frames_lost == n
        finally:
            refusing.close()
            for offerer, answerer in pairs:
                await offerer.close()
                await answerer.close()

    asyncio.run(scenario())


def test_native_group_send_reaches_aiortc_s_own_receiver_and_keeps_the_bookkeeping() -> None:
    if not datapath.native_ok():
        pytest.skip("no native group send here")

    async def scenario() -> None:
        pairs, senders, got = await _native_peers(3)
        try:
            senders[2].send(b"open")  # opens its fast path, then takes the Python one
            senders[2].row = None
            while not got[2]:
                await asyncio.sleep(0.01)
            got[2].clear()
            n = 30
            for i in range(n):
                datapath.send_to_peers(senders, b"frame %d" % i)
                await asyncio.sleep(0.003)
            for _ in range(200):
                if all(len(g) == n for g in got) and not any(
                    a.sctp._sent_queue for _, a in pairs if a.sctp is not None
                ):
                    break
                await asyncio.sleep(0.01)
            expected = [b"frame %d" % i for i in range(n)]
            assert [sorted(g) for g in got] == [sorted(expected)] * 3
            assert [s.fast for s in senders] == [n, n, n + 1] and not any(s.lost for s in senders)
            for _, answerer in pairs:
                sctp = answerer.sctp
                assert sctp is not None
                assert not sctp._sent_queue and sctp._flight_size == 0 and sctp._t3_handle is None
        finally:
            for offerer, answerer in pairs:
                await offerer.close()
                await answerer.close()

    asyncio.run(scenario())


def test_an_untested_pyopenssl_release_sends_from_python(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(datapath, "PYOPENSSL_TESTED", ("0.0.",))
    datapath.native_ok.cache_clear()

    async def scenario() -> None:
        pairs, senders, got = await _native_peers(2)
        try:
            for i in range(5):
                datapath.send_to_peers(senders, b"m%d" % i)
            for _ in range(200):
                if all(len(g) == 5 for g in got):
                    break
                await asyncio.sleep(0.01)
            assert [sorted(g) for g in got] == [[b"m%d" % i for i in range(5)]] * 2
            assert all(s.row is None and s.fast == 5 for s in senders)  # the Python reference
        finally:
            for offerer, answerer in pairs:
                await offerer.close()
                await answerer.close()

    try:
        with caplog.at_level("WARNING", logger="avatar_engine.rtc_datapath"):
            asyncio.run(scenario())
        assert "not releases the native WebRTC send was tested with" in caplog.text
    finally:
        datapath.native_ok.cache_clear()
