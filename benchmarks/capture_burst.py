"""What one burst of 100 phones' Live Link packets costs the server to take in, step by step.

    .venv/bin/python benchmarks/capture_burst.py [--bursts 60]

All on loopback, in one process (run it under the bench lock; the load average is printed):

- **loop**: 100 datagrams queued on a socket, taken by asyncio's datagram transport (one per
  pass of the event loop) against one reader callback that reads them all; per datagram,
  wake-up included;
- **recv**: the batch read alone, ``_core.recv_batch`` (one ``recvmmsg``) against its Python
  reference (one ``recvfrom_into`` per row);
- **receive**: a Live Link receiver's ``drain`` of a queued burst (read, parse, clamp, admit,
  route, deliver) against the same packets one ``datagram_received`` at a time, into a sink
  that keeps nothing and into the server's runtime (``Runtime.on_frame``: quota, engine);
- **send**: the lean publisher's burst (one socket per subject) with ``send`` on connected
  sockets against ``sendto``;
- **cpu**: CPU time (``time.process_time``, no socket) of ``receive_batch`` over 100 queued
  rows from 100 senders: into a batch sink that keeps nothing, into the runtime, and into the
  runtime through its per-frame ``on_frame`` (what a receiver does with a sink that has no
  ``on_frames``);
- **fanout**: CPU per one-viewer group of the fan-out pass over 100 groups on Unix socketpairs:
  one ``offer_to_all`` per group, one ``offer_to_groups`` for all, and a bare ``os.write`` of
  the same frame per socket (the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from avatar_engine.client.lean import livelink_packets
from avatar_engine.ingest import CollectingSink, LiveLinkReceiver
from avatar_engine.ingest.receivers import with_port
from avatar_engine.ingest.recv_batch import recv_batch_native, recv_batch_reference
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.fanout import (
    LINKS,
    DirectLink,
    GroupTable,
    ViewerSet,
    frame_header,
    offer_to_all,
    offer_to_groups,
)
from avatar_engine.server.runtime import Runtime

N = 100
LOOPBACK = "127.0.0.1"


def _phones(n: int = N, connect: tuple[str, int] | None = None) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LOOPBACK, 0))
        if connect is not None:
            s.connect(connect)
        out.append(s)
    return out


def _receiver_socket() -> socket.socket:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    rx.bind((LOOPBACK, 0))
    rx.setblocking(False)
    return rx


async def loop_case(bursts: int) -> dict[str, float]:
    """us per datagram for a queued burst: asyncio's transport against one draining reader."""
    loop = asyncio.get_running_loop()
    packet = bytes(330)
    out = {}
    got: list[Any] = []
    done: list[asyncio.Future[None]] = []

    def seen(item: Any) -> None:
        got.append(item)
        if len(got) == N and not done[0].done():
            done[0].set_result(None)

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            seen(data)

    transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=(LOOPBACK, 0))
    rx = _receiver_socket()

    def drain() -> None:
        while True:
            try:
                seen(rx.recvfrom(2048))
            except BlockingIOError:
                return

    loop.add_reader(rx.fileno(), drain)
    phones = _phones()
    for name, address in (("asyncio_transport", transport.get_extra_info("sockname")),
                          ("one_reader_drains", rx.getsockname())):  # fmt: skip
        total = 0.0
        for _ in range(bursts):
            got.clear()
            done[:] = [loop.create_future()]
            for phone in phones:
                phone.sendto(packet, address)
            start = time.perf_counter()
            await done[0]
            total += time.perf_counter() - start
        out[name] = round(1e6 * total / (bursts * N), 2)
    loop.remove_reader(rx.fileno())
    transport.close()
    for s in [rx, *phones]:
        s.close()
    return out


def recv_case(bursts: int) -> dict[str, float]:
    """us per datagram of the batch read alone, native against the reference."""
    rx, phones = _receiver_socket(), _phones()
    buf, sizes = np.zeros((256, 1025), np.uint8), np.zeros(256, np.int64)
    out = {}
    for name, recv in (("reference", recv_batch_reference), ("native", recv_batch_native)) * 2:
        total = 0.0
        for _ in range(bursts):
            for phone in phones:
                phone.sendto(bytes(330), rx.getsockname())
            start = time.perf_counter()
            assert len(recv(rx, buf, sizes)) == N
            total += time.perf_counter() - start
        out[name] = round(1e6 * total / (bursts * N), 2)  # the second (warm) run of each
    for s in [rx, *phones]:
        s.close()
    return out


async def receive_case(bursts: int, sink: Any, label: str) -> dict[str, float]:
    """us per datagram: a receiver's drain of a queued burst against one datagram at a time."""
    router = sink.ingest.router if isinstance(sink, Runtime) else None
    config = with_port(LiveLinkReceiver.default_config, LOOPBACK, 0)
    rx = LiveLinkReceiver(sink, router, config=config)
    address = await rx.start()
    assert rx.sock is not None
    asyncio.get_running_loop().remove_reader(rx.sock.fileno())  # the benchmark drains
    phones = _phones()
    packets = [livelink_packets(f"sim-{i}")[0] for i in range(N)]
    senders = [("127.0.0.1", p.getsockname()[1]) for p in phones]
    for phone, packet in zip(phones, packets, strict=True):  # sessions made, peers known
        phone.sendto(packet, address)
    rx.drain()
    await asyncio.sleep(1 / 60)
    one = batch = 0.0
    for _ in range(bursts):
        for phone, packet in zip(phones, packets, strict=True):
            phone.sendto(packet, address)
        start = time.perf_counter()
        assert rx.drain() == N
        batch += time.perf_counter() - start
        await asyncio.sleep(1 / 60)  # the senders' rate limits see a 60 fps phone
        start = time.perf_counter()
        for packet, sender in zip(packets, senders, strict=True):
            rx.datagram_received(packet, sender)
        one += time.perf_counter() - start
        await asyncio.sleep(1 / 60)
    rx.close()
    for phone in phones:
        phone.close()
    assert not rx.totals.drops, rx.totals.drops
    return {f"{label}_drain": round(1e6 * batch / (bursts * N), 2),
            f"{label}_one_at_a_time": round(1e6 * one / (bursts * N), 2)}  # fmt: skip


def send_case(bursts: int) -> dict[str, float]:
    """us for the publisher's burst of 100 packets, connected send against sendto."""
    rx = _receiver_socket()
    address = rx.getsockname()
    plain, connected = _phones(), _phones(connect=address)
    packet = bytes(330)

    def sendto() -> None:
        for p in plain:
            p.sendto(packet, address)

    def send_connected() -> None:
        for p in connected:
            p.send(packet)

    sends: dict[str, Callable[[], None]] = {"sendto": sendto, "send_connected": send_connected}
    out = {}
    for name, burst in list(sends.items()) * 2:
        total = 0.0
        for _ in range(bursts):
            start = time.perf_counter()
            burst()
            total += time.perf_counter() - start
            while True:
                try:
                    rx.recv(2048)
                except BlockingIOError:
                    break
        out[name] = round(1e6 * total / bursts, 1)
    for s in [rx, *plain, *connected]:
        s.close()
    return out


class _Time:
    """The receivers' and runtimes' clock, stepped by the benchmark (the runtime's quotas must
    see the same 60 fps as the senders' limits: on the real clock a loop of bursts runs far
    faster, the tenant's publish budget runs out and frames take the refusal path)."""

    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


class _PerFrame:
    """A sink with only ``on_frame`` (the runtime's per-frame path), for the cpu case."""

    def __init__(self, runtime: Runtime) -> None:
        self.on_frame = runtime.on_frame


def cpu_case(bursts: int, rounds: int = 5) -> dict[str, float]:
    """us of CPU per datagram of ``receive_batch`` over 100 rows already read (no socket): the
    cases interleaved in ``rounds`` rounds, the least of each (CPU time still grows when
    another process shares the core's caches)."""
    packets = [livelink_packets(f"sim-{i}")[0] for i in range(N)]
    senders: list[Any] = [(LOOPBACK, 40000 + i) for i in range(N)]
    clock = _Time()
    cases = {}
    runtimes = []
    for name in ("null_batch_sink", "runtime", "runtime_per_frame"):
        runtime = Runtime(ServerOptions(), clock=clock)
        runtimes.append(runtime)
        sink: Any = {"null_batch_sink": CollectingSink(limit=0), "runtime": runtime,
                     "runtime_per_frame": _PerFrame(runtime)}[name]  # fmt: skip
        router = None if name == "null_batch_sink" else runtime.ingest.router
        config = with_port(LiveLinkReceiver.default_config, LOOPBACK, 0)
        rx = cases[name] = LiveLinkReceiver(sink, router, config=config, clock=clock.now)
        for i, packet in enumerate(packets):  # the batch read's buffers, filled here instead
            rx._rows[i, : len(packet)] = np.frombuffer(packet, np.uint8)
            rx._sizes[i] = len(packet)
        for _ in range(10):  # the sessions are made, the paths warm
            clock.t += 1 / 60
            rx.receive_batch(senders)
    best = dict.fromkeys(cases, float("inf"))
    per_round = max(1, bursts // rounds)
    for _ in range(rounds):
        for name, rx in cases.items():
            total = 0.0
            for _ in range(per_round):
                clock.t += 1 / 60  # a 60 fps phone for the senders' rate limits
                start = time.process_time()
                rx.receive_batch(senders)
                total += time.process_time() - start
            best[name] = min(best[name], total / per_round)
    for rx in cases.values():
        assert not rx.totals.drops, rx.totals.drops
    assert not any(r.counters.publish_rejected for r in runtimes)  # every frame stored
    return {name: round(1e6 * t / N, 2) for name, t in best.items()}


class _Viewer:
    """A group member with a direct link and no outbox (every write here goes directly)."""

    __slots__ = ("direct", "outbox")
    direct: DirectLink
    outbox: Any

    def __init__(self, link: DirectLink) -> None:
        self.direct, self.outbox = link, None


def fanout_case(bursts: int) -> dict[str, float]:
    """us of CPU per one-viewer group of a pass over 100 groups (Unix socketpairs)."""
    pairs = [socket.socketpair() for _ in range(N)]
    groups = []
    for ours, peer in pairs:
        ours.setblocking(False)
        peer.setblocking(False)
        link = object.__new__(DirectLink)  # a row of the link table without a connection
        link.row = LINKS.open(ours.fileno())
        groups.append(ViewerSet([_Viewer(link)], holds=False))
    message = bytes(120)
    wire = frame_header(len(message)) + message
    fds = [ours.fileno() for ours, _ in pairs]
    table = GroupTable(groups)  # one message per group, laid out as an encoder's tick buffer
    payload = memoryview(bytearray(message * N))
    bounds = np.arange(N + 1, dtype=np.int64) * len(message)
    order, keyframes = np.arange(N, dtype=np.int64), np.zeros(N, bool)

    def each() -> None:
        for group in groups:
            offer_to_all(group, message, keyframe=False)

    def together() -> None:
        offer_to_groups(table, payload, bounds, order, keyframes)

    def bare() -> None:
        for fd in fds:
            os.write(fd, wire)

    passes = {"offer_to_all_each": each, "offer_to_groups": together, "bare_os_write": bare}
    out = {}
    for name, run in list(passes.items()) * 2:  # the second (warm) run of each
        total = 0.0
        for _ in range(bursts):
            start = time.process_time()
            run()
            total += time.process_time() - start
            for _, peer in pairs:
                with contextlib.suppress(BlockingIOError):
                    while peer.recv(65536):
                        pass
        out[name] = round(1e6 * total / (bursts * N), 2)
    for group in groups:
        LINKS.release(group.rows()[0])
    for s in (s for pair in pairs for s in pair):
        s.close()
    return out


async def main_async(bursts: int) -> dict[str, Any]:
    out: dict[str, Any] = {"loop_us_per_datagram": await loop_case(bursts),
                           "recv_us_per_datagram": recv_case(bursts)}  # fmt: skip
    receive = await receive_case(bursts, CollectingSink(limit=0), "null_sink")
    receive |= await receive_case(bursts, Runtime(ServerOptions()), "runtime")
    out["receive_us_per_datagram"] = receive
    out["send_us_per_burst_of_100"] = send_case(bursts)
    out["cpu_us_per_datagram"] = cpu_case(bursts)
    out["fanout_cpu_us_per_group"] = fanout_case(bursts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=60)
    args = parser.parse_args()
    print(f"load average {[round(x, 2) for x in os.getloadavg()]}")
    for name, row in asyncio.run(main_async(args.bursts)).items():
        print(f"{name}: {row}")
    print(f"load average {[round(x, 2) for x in os.getloadavg()]}")


if __name__ == "__main__":
    main()
