"""Where a WebRTC frame's server CPU goes, per peer, in one process (no load generator, no
scheduler noise: ``time.process_time`` around synchronous passes only).

    .venv/bin/python benchmarks/rtc_send_cost.py [--peers 20] [--frames 300]

``--peers`` pairs of real aiortc peers on loopback in this process: the "server" side sends
with :class:`~avatar_engine.transport.rtc_datapath.FastSender`, the "viewer" side takes frames
with a :class:`~avatar_engine.transport.rtc_datapath.LeanReceiver`. Printed, in us per peer per
frame:

- **python pass**: ``FastSender.send`` to every peer (the Python reference: booking, packet,
  CRC32c, pyOpenSSL ``send``/``bio_read``, the transport's ``sendto``);
- **native pass**: :func:`~avatar_engine.transport.rtc_datapath.send_to_peers`, the same
  frames with the packet, CRC32c, DTLS record and ``sendto`` in one native call (Python books);
- its parts, each timed alone on one peer: the booking (chunk and aiortc's counters), the
  packet and CRC32c in Python, pyOpenSSL's ``send`` + ``bio_read``, the asyncio transport's
  ``sendto``, a bare ``socket.sendto``.

Between frames the event loop runs for 5 ms, so SACKs come back and the windows stay open.

Last, why the native pass keeps the GIL: the wall time of a 2 ms call that releases it
(``time.sleep``), alone and beside one busy Python thread (mean and worst, ms).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdatachannel import RTCDataChannel

from avatar_engine.transport.rtc_datapath import (
    FastSender,
    LeanReceiver,
    native_ok,
    sctp_packet,
    send_to_peers,
)

PAYLOAD = bytes(16)


async def _pair() -> tuple[RTCPeerConnection, RTCPeerConnection, RTCDataChannel]:
    """A connected pair; the answerer's (server's) unordered frames channel."""
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    viewer.createDataChannel("frames", ordered=False, maxRetransmits=0)
    opened: asyncio.Future[RTCDataChannel] = asyncio.get_running_loop().create_future()
    server.on("datachannel", opened.set_result)
    await viewer.setLocalDescription(await viewer.createOffer())
    await server.setRemoteDescription(viewer.localDescription)
    await server.setLocalDescription(await server.createAnswer())
    await viewer.setRemoteDescription(server.localDescription)
    channel = await asyncio.wait_for(opened, 15)
    while channel.readyState != "open":
        await asyncio.sleep(0.01)
    return viewer, server, channel


async def _passes(frames: int, send: Callable[[], None]) -> float:
    """CPU seconds of ``frames`` calls of ``send``, the loop running 5 ms between them."""
    total = 0.0
    for _ in range(frames):
        t = time.process_time()
        send()
        total += time.process_time() - t
        await asyncio.sleep(0.005)
    return total


def _part(n: int, step: Callable[[], object]) -> float:
    t = time.process_time()
    for _ in range(n):
        step()
    return (time.process_time() - t) / n * 1e6


async def run(peers: int, frames: int) -> dict[str, float]:
    """The figures (us per peer per frame); see the module docstring."""
    pairs = [await _pair() for _ in range(peers)]
    got = [0]
    receivers = []
    senders = []
    for viewer, server, channel in pairs:
        assert viewer.sctp is not None and server.sctp is not None
        receivers.append(
            LeanReceiver(viewer.sctp, lambda sid, data: got.__setitem__(0, got[0] + 1))
        )
        LeanReceiver(server.sctp, None)
        senders.append(FastSender(channel))
    out: dict[str, float] = {}
    for sender in senders:
        sender.send(PAYLOAD)  # opens each sender's fast path
    await asyncio.sleep(0.05)
    n = peers * frames

    def python_pass() -> None:
        for sender in senders:
            sender.send(PAYLOAD)

    out["python pass"] = await _passes(frames, python_pass) / n * 1e6
    if native_ok():
        out["native pass"] = (
            await _passes(frames, lambda: send_to_peers(senders, PAYLOAD)) / n * 1e6
        )
    # Parts, on the first peer (nothing of these reaches the viewer).
    one = senders[0]
    path = one._path
    assert path is not None
    sctp = one._sctp
    chunk = bytes(32)
    out["booking"] = _part(1000, lambda: (one.book(PAYLOAD, time.time()), sctp._sent_queue.pop()))
    sctp._flight_size = 0
    out["packet + crc (python)"] = _part(10000, lambda: sctp_packet(sctp, chunk))
    packet = sctp_packet(sctp, chunk)
    out["pyOpenSSL send + bio_read"] = _part(
        10000, lambda: (path.ssl.send(packet), path.ssl.bio_read(2048))
    )
    record = bytes(len(packet) + 29)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    addr = sink.getsockname()
    transport = path.protocol.transport
    out["transport.sendto"] = _part(5000, lambda: transport.sendto(record, addr))
    raw = socket.fromfd(transport.get_extra_info("socket").fileno(), sink.family, sink.type)
    out["socket.sendto"] = _part(5000, lambda: raw.sendto(record, addr))
    raw.close()
    sink.close()
    out["frames received"] = got[0]
    for viewer, server, _ in pairs:
        await viewer.close()
        await server.close()
    return out


def gil_wait(calls: int = 100) -> dict[str, float]:
    """Mean and worst wall ms of a 2 ms GIL-releasing call, without and with a busy thread."""
    out: dict[str, float] = {}
    busy = threading.Event()

    def spin() -> None:
        while busy.is_set():
            pass

    for label in ("alone", "beside a busy thread"):
        walls = []
        for _ in range(calls):
            t = time.perf_counter()
            time.sleep(0.002)
            walls.append((time.perf_counter() - t) * 1e3)
        out[f"2 ms without GIL, {label} (mean ms)"] = sum(walls) / calls
        out[f"2 ms without GIL, {label} (worst ms)"] = max(walls)
        busy.set()
        threading.Thread(target=spin, daemon=True).start()
    busy.clear()
    return out


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=int, default=20)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    for name, value in (asyncio.run(run(args.peers, args.frames)) | gil_wait()).items():
        print(f"{name:44s} {value:10.2f}")


if __name__ == "__main__":
    main()
