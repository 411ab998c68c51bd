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
  sockets against ``sendto``.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def main_async(bursts: int) -> dict[str, Any]:
    out: dict[str, Any] = {"loop_us_per_datagram": await loop_case(bursts),
                           "recv_us_per_datagram": recv_case(bursts)}  # fmt: skip
    receive = await receive_case(bursts, CollectingSink(limit=0), "null_sink")
    receive |= await receive_case(bursts, Runtime(ServerOptions()), "runtime")
    out["receive_us_per_datagram"] = receive
    out["send_us_per_burst_of_100"] = send_case(bursts)
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
