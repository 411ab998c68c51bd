"""asv: capture ingest. Packets per second per parser (one core) and ingest-to-sink latency.

``time_*`` benchmarks time one packet; packets/s = 1 / time. ``track_*`` report a figure
directly. ``python benchmarks/benchmarks/bench_ingest.py`` prints every figure as a table
without asv (the same classes).

Target from issue 7: >= 100k Live Link packets/s in the Cython parser.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
import timeit
from typing import Any

import numpy as np

from avatar_engine.codec import encode_capture, encode_publish_hello
from avatar_engine.formats import ifacialmocap, livelink, vmc
from avatar_engine.formats.recording import (
    MAGIC,
    AvrecDecoder,
    capture_header,
    encode_frame,
    encode_record,
)
from avatar_engine.ingest.peers import PeerTable
from avatar_engine.ingest.publish import PublishDecoder
from avatar_engine.ingest.receivers import LiveLinkReceiver, ReceiverConfig
from avatar_engine.ingest.sink import SourceInfo
from avatar_engine.kernels.backends import native_module
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES

UUID = "9A1B2C3D-0000-4E5F-8A9B-0123456789AB"
UNLIMITED = ReceiverConfig(
    host="127.0.0.1",
    port=0,
    max_packet_rate_hz=1e9,
    packet_burst=1e9,
    max_frame_rate_hz=1e9,
    frame_burst=1e9,
)


def _values(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.random(61, dtype=np.float32)
    v[52:] = rng.uniform(-0.5, 0.5, 9)
    return v


class _NullSink:
    def on_frame(self, *args: Any) -> None:
        pass


class LiveLinkParse:
    """One Live Link v6 packet (UUID device id, 6-byte subject: 312 bytes)."""

    params = (["cython", "python"],)
    param_names = ("parser",)

    def setup(self, parser: str) -> None:
        self.packet = livelink.build_packet(UUID, "iPhone", _values())
        self.parse = livelink.parse_packet if parser == "cython" else livelink.parse_packet_py

    def time_parse(self, parser: str) -> None:
        self.parse(self.packet)


def _python_osc_messages(data: bytes) -> list[tuple[str, list[Any]]]:
    """What parsing with python-osc costs (the reason formats/osc.py exists)."""
    from pythonosc.osc_bundle import OscBundle

    out: list[tuple[str, list[Any]]] = []

    def walk(bundle: OscBundle) -> None:
        for content in bundle:
            if isinstance(content, OscBundle):
                walk(content)
            else:
                out.append((content.address, content.params))

    walk(OscBundle(data))
    return out


class VmcParse:
    """One Perfect Sync VMC frame: a bundle of 52 Blend/Val + Apply + 3 bones (2.9 KB),
    OSC-parsed and applied by :class:`VmcDecoder`; ``osc`` = which OSC parser."""

    params = (["ours", "python-osc"],)
    param_names = ("osc",)

    def setup(self, parser: str) -> None:
        v = _values()
        (self.datagram,) = vmc.build_vmc_frame(v[:52], v[52:], time=1.0)
        self.decoder = vmc.VmcDecoder()

    def time_parse(self, parser: str) -> None:
        if parser == "ours":
            self.decoder.feed_datagram(self.datagram)
        else:
            self.decoder.feed(_python_osc_messages(self.datagram))


class IFacialMocapParse:
    """One iFacialMocap v2 text frame (about 900 bytes)."""

    def setup(self) -> None:
        v = _values()
        self.frame = ifacialmocap.build_frame(v[:52], v[52:])

    def time_parse(self) -> None:
        ifacialmocap.parse_frame(self.frame)


class PublishParse:
    """One positional msgpack CAPTURE (61 float32) after a publish hello."""

    def setup(self) -> None:
        self.decoder = PublishDecoder()
        self.decoder.feed(encode_publish_hello(1, ARKIT_NAMES, ROTATION_NAMES, 60))
        # Sequence numbers must keep increasing (stale ones are dropped): 4096 messages 16 apart
        # wrap around the u16 space exactly, so cycling through them never goes backwards.
        v = _values()
        self.messages = [encode_capture(1, (i * 16) & 0xFFFF, 1000, v) for i in range(4096)]
        self.i = 0

    def time_parse(self) -> None:
        self.i = (self.i + 1) & 4095
        self.decoder.feed(self.messages[self.i])


class AvrecDecode:
    """Decode 1000 .avrec frames from memory (time per 1000 frames)."""

    def setup(self) -> None:
        v = _values()
        header = MAGIC + encode_record(capture_header().to_msgpack())
        self.data = header + b"".join(encode_frame(i / 60, v[:52], v[52:]) for i in range(1000))

    def time_decode_1000(self) -> None:
        AvrecDecoder().feed(self.data)


class LiveLinkReceivePath:
    """The whole receive path without the socket: peer lookup, rate buckets, parse, clamp,
    route, sink call (``datagram_received`` on a packet)."""

    def setup(self) -> None:
        self.rx = LiveLinkReceiver(_NullSink(), config=UNLIMITED)
        self.packet = livelink.build_packet(UUID, "iPhone", _values())
        self.addr = ("127.0.0.1", 5000)

    def time_datagram_received(self) -> None:
        self.rx.datagram_received(self.packet, self.addr)


class _NullBatchSink(_NullSink):
    def on_frames(self, *args: Any) -> None:
        pass


class LiveLinkReceiveBurst:
    """A burst of 100 phones' packets as a batch read leaves them, through the whole receive
    path: admission over the senders' columns (per ``admission`` backend), one parse, one range
    check, routing, one sink call. Time per burst (a hundredth of it per datagram); the
    receivers' clock steps a 60th of a second a burst, so no bucket runs dry."""

    params = (["native", "numpy"],)
    param_names = ("admission",)

    def setup(self, admission: str) -> None:
        if admission == "native" and not hasattr(native_module(), "admit_datagrams"):
            raise NotImplementedError("native module not built")
        self.t = 0.0
        config = LiveLinkReceiver.default_config
        rx = LiveLinkReceiver(_NullBatchSink(), config=config, clock=lambda: self.t)
        c = rx.config
        rx.peers = PeerTable(c.max_peers, len(rx._rows), (c.max_packet_rate_hz, c.packet_burst),
                             (c.max_frame_rate_hz, c.frame_burst), rx.new_peer_state,
                             backend=admission)  # fmt: skip
        for i in range(100):
            packet = livelink.build_packet(UUID, f"phone-{i}", _values(i))
            rx._rows[i, : len(packet)] = np.frombuffer(packet, np.uint8)
            rx._sizes[i] = len(packet)
        self.senders = [("127.0.0.1", 40000 + i) for i in range(100)]
        self.rx = rx

    def time_receive_burst(self, admission: str) -> None:
        self.t += 1 / 60
        self.rx.receive_batch(self.senders)


class _TimingSink:
    def __init__(self) -> None:
        self.arrivals: list[float] = []

    def on_frame(
        self, session_id: str, arkit: Any, rotations: Any, t: float, source: SourceInfo
    ) -> None:
        self.arrivals.append(time.perf_counter())


async def _latency_us(n: int = 400) -> list[float]:
    sink = _TimingSink()
    rx = LiveLinkReceiver(sink, config=UNLIMITED, clock=time.perf_counter)
    _, port = await rx.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    packet = livelink.build_packet(UUID, "iPhone", _values())
    out: list[float] = []
    try:
        for _ in range(n):
            before = len(sink.arrivals)
            t0 = time.perf_counter()
            tx.sendto(packet, ("127.0.0.1", port))
            while len(sink.arrivals) == before:
                await asyncio.sleep(0)
            out.append((sink.arrivals[-1] - t0) * 1e6)
    finally:
        tx.close()
        rx.close()
    return out


class IngestLatency:
    """Loopback sendto -> asyncio receiver -> sink.on_frame, Live Link packet (median us)."""

    unit = "us"
    timeout = 60

    def track_median_latency_us(self) -> float:
        return statistics.median(asyncio.run(_latency_us()))

    track_median_latency_us.unit = "us"  # type: ignore[attr-defined]


def _per_second(fn: Any) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    best = min(timer.repeat(repeat=5, number=number)) / number
    return 1.0 / best


def main() -> None:
    rows: list[tuple[str, float]] = []
    for parser in ("cython", "python"):
        case = LiveLinkParse()
        case.setup(parser)
        rows.append(
            (
                f"Live Link v6 parse ({parser})",
                _per_second(lambda c=case, p=parser: c.time_parse(p)),
            )
        )
    for parser in ("ours", "python-osc"):
        vcase = VmcParse()
        vcase.setup(parser)
        rows.append(
            (
                f"VMC Perfect Sync frame ({parser} OSC)",
                _per_second(lambda c=vcase, p=parser: c.time_parse(p)),
            )
        )
    for name, cls in (
        ("iFacialMocap v2 text frame", IFacialMocapParse),
        ("msgpack publish CAPTURE (positional)", PublishParse),
        ("Live Link receive path, no socket", LiveLinkReceivePath),
    ):
        case = cls()
        case.setup()
        method = next(getattr(case, m) for m in dir(case) if m.startswith("time_"))
        rows.append((name, _per_second(method)))
    avrec = AvrecDecode()
    avrec.setup()
    rows.append((".avrec frame decode", 1000 * _per_second(avrec.time_decode_1000)))
    print(f"{'ingest, one core':<44}{'packets/s':>14}{'us/packet':>12}")
    for name, rate in rows:
        print(f"{name:<44}{rate:>14,.0f}{1e6 / rate:>12.2f}")
    lat = asyncio.run(_latency_us())
    lat.sort()
    print(
        f"ingest-to-sink latency (loopback Live Link, {len(lat)} packets): "
        f"median {statistics.median(lat):.1f} us, p90 {lat[int(0.9 * len(lat))]:.1f} us, "
        f"p99 {lat[int(0.99 * len(lat))]:.1f} us"
    )


if __name__ == "__main__":
    sys.exit(main())
