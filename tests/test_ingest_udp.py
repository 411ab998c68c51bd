"""UDP receivers on real loopback sockets (ephemeral ports): Live Link, VMC, iFacialMocap,
msgpack publish; routing, stats, rate limits, and receive loops that never raise."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from pythonosc import dispatcher as osc_dispatcher
from pythonosc import osc_server
from pythonosc.udp_client import SimpleUDPClient

from avatar_engine.codec import encode_capture, encode_ping, encode_publish_hello
from avatar_engine.formats import ifacialmocap as ifm
from avatar_engine.formats import livelink, vmc
from avatar_engine.formats.livelink import build_packet, parse_packet
from avatar_engine.formats.rotation import DEGREES_PER_UNIT
from avatar_engine.ingest import (
    CollectingSink,
    IFacialMocapReceiver,
    LiveLinkReceiver,
    PublishUdpReceiver,
    ReceiverConfig,
    Router,
    RoutingConfig,
    VmcReceiver,
)
from avatar_engine.ingest.limits import LogLimiter, TokenBucket
from avatar_engine.ingest.receivers import DatagramReceiver
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES
from avatar_engine.transport.egress import ArkitView, LiveLinkEgress, VmcEgress

UUID = "9A1B2C3D-0000-4E5F-8A9B-0123456789AB"
A = {n: i for i, n in enumerate(ARKIT_NAMES)}
R = {n: i for i, n in enumerate(ROTATION_NAMES)}
LOOPBACK = "127.0.0.1"


def values61(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.random(61, dtype=np.float32)
    v[52:] = rng.uniform(-0.5, 0.5, 9).astype(np.float32)
    return v


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


async def until(pred: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def config(**kw: Any) -> ReceiverConfig:
    return ReceiverConfig(host=LOOPBACK, port=0, **kw)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def sender() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOPBACK, 0))
    return s


# --------------------------------------------------------------------------- Live Link


def test_livelink_spec_packets_reach_the_sink_by_subject() -> None:
    async def main() -> None:
        sink = CollectingSink()
        created: list[tuple[str, str]] = []

        def factory(session_id: str, rig: str) -> bool:
            created.append((session_id, rig))
            return True

        rx = LiveLinkReceiver(sink, Router(factory=factory), config=config())
        _, port = await rx.start()
        long_subject = "S" * livelink.MAX_NAME_BYTES
        packets = [
            build_packet(UUID, "iPhone", values61(1), frame_number=10),
            build_packet(UUID, long_subject, values61(2), frame_number=11),
            build_packet("", "Jo's iPhone 15", values61(3)),
        ]
        tx = sender()
        for p in packets:
            tx.sendto(p, (LOOPBACK, port))
        await until(lambda: len(sink) == 3)
        rx.close()
        tx.close()
        assert sink.sessions == ["iPhone", long_subject[:64], "Jo-s-iPhone-15"]
        assert created == [(s, "cc4-extended") for s in sink.sessions]
        np.testing.assert_array_equal(sink.arkit[0], values61(1)[:52])
        np.testing.assert_array_equal(sink.rotations[0], values61(1)[52:])
        info = sink.sources[0]
        assert info.kind == "livelink" and info.key == "iPhone" and info.device_id == UUID
        assert info.frame_time == pytest.approx(10 / 60)
        stats = rx.stats()
        assert stats["totals"]["frames"] == 3 and stats["totals"]["drops"] == {}
        (src,) = stats["sources"].values()
        assert src["frames"] == 3 and src["last_seen_s_ago"] is not None

    run(main())


def test_livelink_egress_round_trips_byte_for_byte_through_our_parser() -> None:
    async def main() -> None:
        sink = CollectingSink()
        rx = LiveLinkReceiver(sink, config=config())
        _, port = await rx.start()
        egress = LiveLinkEgress(LOOPBACK, port, subject="engine", device_id=UUID, timecode="stream")
        await egress.open()
        sent = []
        for i in range(5):
            v = values61(i)
            sent.append(egress.packet(v[:52], v[52:], i / 60))
            assert egress.send(v[:52], v[52:], i / 60)
        await until(lambda: len(sink) == 5)
        egress.close()
        rx.close()
        for i, packet in enumerate(sent):
            frame = parse_packet(packet)
            rebuilt = build_packet(
                frame.device_id,
                frame.subject,
                frame.values,
                frame_number=frame.frame_number,
                subframe=frame.subframe,
                fps=(frame.fps_numerator, frame.fps_denominator),
            )
            assert rebuilt == packet  # sender -> parser -> builder: identical bytes
            np.testing.assert_array_equal(sink.arkit[i], values61(i)[:52])
            np.testing.assert_array_equal(sink.rotations[i], values61(i)[52:])
            assert frame.frame_number == i and frame.device_id == UUID

    run(main())


def test_livelink_rotation_scale_and_clamping() -> None:
    async def main() -> None:
        sink = CollectingSink()
        rx = LiveLinkReceiver(sink, config=config(), rotation_scale=2.0)
        _, port = await rx.start()
        v = values61(4)
        v[0], v[1], v[52] = 1.5, -0.25, 100.0
        tx = sender()
        tx.sendto(build_packet(UUID, "s", v), (LOOPBACK, port))
        await until(lambda: len(sink) == 1)
        rx.close()
        tx.close()
        assert sink.arkit[0][0] == 1.0 and sink.arkit[0][1] == 0.0
        assert sink.rotations[0][0] == 8.0  # clamped to MAX_ROTATION_UNITS
        assert sink.rotations[0][1] == pytest.approx(v[53] * 2)
        assert rx.stats()["totals"]["clamped"] == 3

    run(main())


def malformed_corpus() -> list[bytes]:
    good = build_packet(UUID, "iPhone", values61(7))
    corpus = [good[:cut] for cut in range(len(good))]  # truncation at every offset
    rng = np.random.default_rng(0)
    for _ in range(300):  # bit flips
        b = bytearray(good)
        pos = int(rng.integers(len(b)))
        b[pos] ^= 1 << int(rng.integers(8))
        corpus.append(bytes(b))
    nan = values61(7)
    nan[3] = np.nan
    corpus += [
        build_packet(UUID, "iPhone", nan),
        b"\x05" + good[1:],  # v5
        good + b"\x00",  # trailing
        good[:1] + struct.pack(">i", 1 << 30) + good[5:],  # absurd name length
        b"\x00" * 2000,  # oversized
        good.replace(b"\x3d", b"\x34", 1) if good.count(b"\x3d") == 1 else good[:-1],
    ]
    return corpus


def test_livelink_malformed_corpus_is_dropped_and_the_loop_survives() -> None:
    async def main() -> None:
        sink = CollectingSink()
        rx = LiveLinkReceiver(
            sink, config=config(max_packet_rate_hz=1e6, packet_burst=1e6, max_frame_rate_hz=1e6)
        )
        _, port = await rx.start()
        tx = sender()
        corpus = malformed_corpus()
        expected_ok = 0
        for data in corpus:
            try:
                parse_packet(data)
                expected_ok += 1
            except livelink.LiveLinkPacketError:
                pass
        for i, data in enumerate(corpus):
            tx.sendto(data, (LOOPBACK, port))
            if i % 50 == 0:
                await asyncio.sleep(0.002)  # let the loop drain (the kernel buffer is finite)
        tx.sendto(build_packet(UUID, "after", values61(8)), (LOOPBACK, port))
        await until(lambda: rx.totals.packets == len(corpus) + 1)
        await until(lambda: bool(sink.sessions) and sink.sessions[-1] == "after")
        rx.close()
        tx.close()
        drops = rx.stats()["totals"]["drops"]
        assert "internal_error" not in drops
        assert sum(drops.values()) == len(corpus) - expected_ok
        assert {"truncated", "version", "non_finite", "trailing_bytes", "too_large"} <= set(drops)
        assert len(sink) == expected_ok + 1

    run(main())


# --------------------------------------------------------------------------- VMC


def test_python_osc_client_drives_our_vmc_receiver() -> None:
    async def main() -> None:
        sink = CollectingSink()
        rx = VmcReceiver(sink, config=config())
        _, port = await rx.start()
        client = SimpleUDPClient(LOOPBACK, port)  # python-osc's own client, unbundled
        q = (0.0, np.sin(np.radians(10)), 0.0, np.cos(np.radians(10)))  # 20 degrees yaw
        client.send_message(vmc.ADDR_BONE_POS, ["Head", 0.0, 1.5, 0.0, *map(float, q)])
        client.send_message(vmc.ADDR_BLEND_VAL, ["JawOpen", 0.75])
        client.send_message(vmc.ADDR_BLEND_VAL, ["Blink_R", 1.0])
        client.send_message(vmc.ADDR_BLEND_VAL, ["Nonsense", 1.0])
        client.send_message(vmc.ADDR_BLEND_APPLY, [])
        await until(lambda: len(sink) == 1)
        rx.close()
        assert sink.sessions == ["vmc"] and sink.sources[0].key == LOOPBACK
        assert sink.arkit[0][A["jawOpen"]] == 0.75
        assert sink.arkit[0][A["eyeBlinkRight"]] == 1.0
        assert sink.rotations[0][R["HeadYaw"]] == pytest.approx(20 / DEGREES_PER_UNIT, abs=1e-5)
        assert rx.stats()["totals"]["drops"] == {"unknown_name": 1}

    run(main())


def test_our_vmc_egress_is_read_by_python_osc_server() -> None:
    received: list[tuple[str, list[Any]]] = []
    done = threading.Event()

    def handler(address: str, *args: Any) -> None:
        received.append((address, list(args)))
        if address == vmc.ADDR_BLEND_APPLY:
            done.set()

    disp = osc_dispatcher.Dispatcher()
    disp.set_default_handler(handler)
    server = osc_server.ThreadingOSCUDPServer((LOOPBACK, 0), disp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    v = values61(11)

    async def main() -> None:
        egress = VmcEgress(LOOPBACK, port)
        await egress.open()
        assert egress.send(v[:52], v[52:], 0.5)
        await asyncio.sleep(0)
        egress.close()

    try:
        run(main())
        assert done.wait(5)
    finally:
        server.shutdown()
        server.server_close()
    blend = {args[0]: args[1] for addr, args in received if addr == vmc.ADDR_BLEND_VAL}
    assert list(blend) == list(vmc.PERFECT_SYNC_NAMES)
    np.testing.assert_allclose(list(blend.values()), v[:52], atol=1e-7)
    bones = {args[0]: args[1:] for addr, args in received if addr == vmc.ADDR_BONE_POS}
    assert set(bones) == {"Head", "LeftEye", "RightEye"}
    # python-osc saw a valid quaternion for the head; our own decoder agrees on the angles
    dec = vmc.VmcDecoder()
    frames = dec.feed([*received])
    np.testing.assert_allclose(frames.frames[0].rotations, v[52:], atol=1e-5)


# --------------------------------------------------------------------------- iFacialMocap


def test_ifacialmocap_handshake_then_frames() -> None:
    async def main() -> None:
        phone = sender()  # plays the phone: hears the handshake, answers with frames
        phone.setblocking(False)
        sink = CollectingSink()
        rx = IFacialMocapReceiver(
            sink,
            config=config(),
            phone_host=LOOPBACK,
            phone_port=phone.getsockname()[1],
            handshake_interval=0.05,
        )
        _, port = await rx.start()
        loop = asyncio.get_running_loop()
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(phone, 1024), 3)
        assert data == ifm.HANDSHAKE_V2 and addr[1] == port
        v = values61(12)
        for version in (1, 2):
            phone.sendto(ifm.build_frame(v[:52], v[52:], version=version), (LOOPBACK, port))
        await until(lambda: len(sink) == 2)
        rx.close()
        phone.close()
        assert sink.sessions == ["ifacialmocap", "ifacialmocap"]
        assert np.abs(sink.arkit[1] - v[:52]).max() <= 0.005 + 1e-6
        assert np.abs(sink.rotations[1] - v[52:]).max() <= 0.005 / DEGREES_PER_UNIT + 1e-6

    run(main())


def test_ifacialmocap_ignores_other_hosts_when_a_phone_is_set() -> None:
    async def main() -> None:
        sink = CollectingSink()
        rx = IFacialMocapReceiver(sink, config=config(), phone_host="127.0.0.2", phone_port=9)
        _, port = await rx.start()
        tx = sender()
        tx.sendto(ifm.build_frame(values61()[:52]), (LOOPBACK, port))
        await until(lambda: rx.totals.packets == 1)
        rx.close()
        tx.close()
        assert len(sink) == 0 and rx.stats()["totals"]["drops"] == {"unexpected_peer": 1}

    run(main())


# --------------------------------------------------------------------------- publish over UDP


def test_publish_udp_by_name_and_positional_with_pong() -> None:
    async def main() -> None:
        sink = CollectingSink()
        rx = PublishUdpReceiver(sink, config=config())
        _, port = await rx.start()
        tx = sender()
        tx.setblocking(False)
        v = values61(13)
        tx.sendto(encode_capture(3, 0, 0, v), (LOOPBACK, port))  # positional without hello
        tx.sendto(encode_capture(3, 1, 5, {"jawOpen": 0.5, "HeadYaw": 0.25, "foo": 1.0}),
                  (LOOPBACK, port))  # fmt: skip
        tx.sendto(encode_publish_hello(3, ARKIT_NAMES, ROTATION_NAMES, 60), (LOOPBACK, port))
        tx.sendto(encode_capture(3, 2, 21, v), (LOOPBACK, port))
        tx.sendto(encode_ping(77, 1234), (LOOPBACK, port))
        loop = asyncio.get_running_loop()
        pong, _ = await asyncio.wait_for(loop.sock_recvfrom(tx, 100), 3)
        await until(lambda: len(sink) == 2)
        rx.close()
        tx.close()
        assert pong[:2] == b"\x93\x06"  # [PONG, nonce, t]
        assert sink.sessions == ["publish-3", "publish-3"]
        assert sink.arkit[0][A["jawOpen"]] == 0.5 and sink.rotations[0][0] == 0.25
        np.testing.assert_array_equal(sink.arkit[1], v[:52])
        np.testing.assert_array_equal(sink.rotations[1], v[52:])
        assert sink.sources[1].frame_time == pytest.approx(0.021)
        assert rx.stats()["totals"]["drops"] == {"no_hello": 1, "unknown_name": 1}

    run(main())


# --------------------------------------------------------------------------- validation, limits


@pytest.mark.parametrize("cls", [LiveLinkReceiver, VmcReceiver, IFacialMocapReceiver,
                                 PublishUdpReceiver])  # fmt: skip
def test_receive_loops_never_raise_under_garbage(cls: type[DatagramReceiver]) -> None:
    async def main() -> None:
        sink = CollectingSink()
        rx = cls(sink, config=config(max_packet_rate_hz=1e6, packet_burst=1e6))
        _, port = await rx.start()
        tx = sender()
        rng = np.random.default_rng(1)
        for i in range(400):
            size = int(rng.integers(0, 1500))
            tx.sendto(rng.bytes(size), (LOOPBACK, port))
            if i % 50 == 0:
                await asyncio.sleep(0.002)
        await until(lambda: rx.totals.packets >= 390)
        rx.close()
        tx.close()
        drops = rx.stats()["totals"]["drops"]
        assert "internal_error" not in drops and sum(drops.values()) >= 390

    run(main())


def test_sink_errors_are_counted_not_raised() -> None:
    class Broken:
        def on_frame(self, *args: Any) -> None:
            raise RuntimeError("engine bug")

    rx = LiveLinkReceiver(Broken(), config=config())
    rx.datagram_received(build_packet(UUID, "s", values61()), (LOOPBACK, 5))
    assert rx.stats()["totals"]["drops"] == {"sink_error": 1}


def test_flood_from_one_sender_is_cut_and_others_are_unaffected() -> None:
    clock = FakeClock()
    sink = CollectingSink()
    rx = LiveLinkReceiver(sink, config=config(), clock=clock)  # defaults: 240 pkt/s, 120 fps
    good = build_packet(UUID, "phone", values61())
    flood = build_packet(UUID, "flood", values61(1))
    # 5 s: the phone at its declared 60 fps, the flooder at 10x (600 packets/s)
    for tick in range(5 * 600):
        clock.t += 1 / 600
        rx.datagram_received(flood, ("10.0.0.9", 5000))
        if tick % 10 == 0:
            rx.datagram_received(good, ("10.0.0.2", 5000))
    phone = sink.sessions.count("phone")
    flooded = sink.sessions.count("flood")
    assert phone == 300  # every phone frame got through
    assert flooded <= 120 * 5 + 30 + 1  # the frame bucket: 120/s plus the burst
    stats = rx.stats()["sources"]
    assert stats["10.0.0.9:5000"]["drops"]["rate_limited"] >= 3000 - flooded - 1
    assert stats["10.0.0.2:5000"]["drops"] == {}
    assert stats["10.0.0.2:5000"]["rate_hz"] == pytest.approx(60, rel=0.05)


def test_token_bucket_and_log_limiter() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.1) and not bucket.take(0.1)
    lines: list[str] = []

    class Capture:
        def log(self, level: int, fmt: str, *args: Any) -> None:
            lines.append(fmt % args)

    log = LogLimiter(Capture(), interval=5.0)  # type: ignore[arg-type]
    assert log.log("k", 0.0, "a") and not log.log("k", 1.0, "b") and not log.log("k", 2.0, "c")
    assert log.log("k", 6.0, "d") and lines == ["a", "d (2 similar suppressed)"]
    # thousands of keys (a flood from spoofed ports) still log at most max_lines per interval
    lines.clear()
    spray = LogLimiter(Capture(), interval=5.0, max_lines=20)  # type: ignore[arg-type]
    for i in range(5000):
        spray.log(f"10.0.0.{i % 250}:{i}/truncated", 100.0 + i / 1000, "x")
    assert len(lines) <= 20 + 20  # the burst, plus 4 lines/s over the 5 s of the flood


def test_routing_config_allowlist_and_auto_session_cap() -> None:
    made: list[str] = []

    def factory(session_id: str, rig: str) -> bool:
        made.append(session_id)
        return session_id != "refused"

    router = Router(
        RoutingConfig(
            routes={"livelink:iPhone": "alice", "vmc:10.0.0.5": "bob"},
            default_rig="arkit52",
            max_auto_sessions=2,
        ),
        factory,
    )
    assert router.resolve("livelink", "iPhone", "iPhone") == "alice"
    assert router.resolve("vmc", "10.0.0.5", "vmc") == "bob"
    assert router.resolve("vmc", "10.0.0.6", "vmc") == "vmc"
    assert router.resolve("livelink", "refused", "refused") is None
    assert router.resolve("livelink", "x", "x") == "x"
    assert router.resolve("livelink", "y", "y") is None  # cap of 2 auto sessions reached
    assert router.resolve("livelink", "iPhone", "iPhone") == "alice"  # cached
    assert made.count("alice") == 1
    closed = Router(RoutingConfig(create_on_first_packet=False))
    assert closed.resolve("livelink", "iPhone", "iPhone") is None
    allow = Router(RoutingConfig(allowlist=("iPhone",)))
    assert allow.resolve("livelink", "iPhone", "iPhone") == "iPhone"
    assert allow.resolve("livelink", "other", "other") is None


def test_unrouted_frames_are_dropped_and_counted() -> None:
    sink = CollectingSink()
    rx = LiveLinkReceiver(sink, Router(RoutingConfig(create_on_first_packet=False)))
    rx.datagram_received(build_packet(UUID, "s", values61()), (LOOPBACK, 5))
    assert len(sink) == 0 and rx.stats()["totals"]["drops"] == {"unrouted": 1}


def test_peer_table_is_bounded() -> None:
    rx = LiveLinkReceiver(CollectingSink(), config=config(max_peers=8))
    for port in range(100):
        rx.datagram_received(b"x", ("10.0.0.1", port))
    assert len(rx.stats()["sources"]) == 8 and rx.totals.packets == 100


def test_arkit_view_gathers_rig_rows_for_egress() -> None:
    from avatar_engine.rigs.profile import load_rig

    rig = load_rig("arkit52")
    view = ArkitView(rig.morph_names, rig.channel_names)
    morphs = np.arange(52, dtype=np.float32) / 52
    channels = np.arange(9, dtype=np.float32)
    arkit, rot = view.gather(morphs, channels)
    np.testing.assert_array_equal(arkit, morphs)
    np.testing.assert_array_equal(rot, channels)


def test_ingest_service_starts_every_enabled_receiver_and_reports_stats() -> None:
    from avatar_engine.ingest import IngestConfig, IngestService

    async def main() -> None:
        sink = CollectingSink()
        ephemeral = {kind: config() for kind in ("livelink", "vmc", "ifacialmocap", "publish-udp")}
        service = IngestService(
            sink,
            config=IngestConfig(ifacialmocap_port=1, publish_udp_port=1, overrides=ephemeral),
        )
        bound = await service.start()
        assert set(bound) == {"livelink", "vmc", "ifacialmocap", "publish-udp"}
        tx = sender()
        tx.sendto(build_packet(UUID, "svc", values61()), bound["livelink"])
        tx.sendto(ifm.build_frame(values61()[:52]), bound["ifacialmocap"])
        await until(lambda: len(sink) == 2)
        stats = service.stats()
        service.close()
        tx.close()
        assert stats["livelink"]["totals"]["frames"] == 1
        assert stats["ifacialmocap"]["totals"]["frames"] == 1
        assert sorted(sink.sessions) == ["ifacialmocap", "svc"]

    run(main())


def test_session_egress_sends_an_arkit52_session_as_live_link() -> None:
    from avatar_engine.rigs.profile import load_rig
    from avatar_engine.transport.egress import SessionEgress

    async def main() -> None:
        sink = CollectingSink()
        rx = LiveLinkReceiver(sink, config=config())
        _, port = await rx.start()
        rig = load_rig("arkit52")
        out = SessionEgress(LiveLinkEgress(LOOPBACK, port, subject="engine", timecode="stream"),
                            rig.morph_names, rig.channel_names)  # fmt: skip
        await out.target.open()
        v = values61(21)
        assert out.push(v[:52], v[52:], 1.0)
        await until(lambda: len(sink) == 1)
        out.target.close()
        rx.close()
        assert sink.sessions == ["engine"]
        np.testing.assert_array_equal(sink.arkit[0], v[:52])
        assert sink.sources[0].frame_time == pytest.approx(1.0)
        assert out.target.stats()["sent"] == 1

    run(main())
