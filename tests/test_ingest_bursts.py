"""Capture bursts on real loopback sockets: a receiver reads every datagram waiting in one call,
and a tick carries a whole burst that waited in the kernel (issue 16, capture to frame)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import numpy as np
import pytest

from avatar_engine.formats.livelink import build_packet
from avatar_engine.ingest import CollectingSink, LiveLinkReceiver, ReceiverConfig
from avatar_engine.ingest.recv_batch import (
    MAX_BATCH,
    batch_rows,
    recv_batch_native,
    recv_batch_reference,
)
from avatar_engine.kernels.backends import native_module
from avatar_engine.rigs.arkit import ARKIT_NAMES
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.runtime import Runtime

LOOPBACK = "127.0.0.1"
JAW = ARKIT_NAMES.index("jawOpen")


def packet(subject: str, jaw: float) -> bytes:
    values = np.zeros(61, np.float32)
    values[JAW] = jaw
    return build_packet("dev", subject, values)


def senders(n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LOOPBACK, 0))
        out.append(s)
    return out


def test_a_burst_waiting_in_the_kernel_is_read_by_one_drain() -> None:
    """100 phones' packets of one instant: one drain takes them all (asyncio's transport would
    take one per pass of the event loop); a too-large datagram in the burst is still counted."""

    async def scenario() -> tuple[int, CollectingSink, LiveLinkReceiver]:
        sink = CollectingSink()
        rx = LiveLinkReceiver(sink, config=ReceiverConfig(host=LOOPBACK, port=0, max_datagram=512))
        address = await rx.start()
        phones = senders(101)
        for i, phone in enumerate(phones[:100]):  # no await: the loop cannot read behind our back
            phone.sendto(packet(f"s{i}", 0.5), address)
        phones[100].sendto(bytes(600), address)
        read = rx.drain()
        rx.close()
        for phone in phones:
            phone.close()
        return read, sink, rx

    read, sink, rx = asyncio.run(scenario())
    assert read == 101
    assert sorted(sink.sessions) == sorted(f"s{i}" for i in range(100))
    assert rx.totals.drops == {"too_large": 1}
    assert rx.drain() == 0  # closed: nothing, no error


def test_the_reader_drains_when_the_socket_becomes_readable() -> None:
    """Without anyone calling drain, the event loop's reader delivers a burst."""

    async def scenario() -> int:
        sink = CollectingSink()
        rx = LiveLinkReceiver(sink, config=ReceiverConfig(host=LOOPBACK, port=0))
        address = await rx.start()
        phones = senders(20)
        for i, phone in enumerate(phones):
            phone.sendto(packet(f"s{i}", 0.5), address)
        for _ in range(200):
            if len(sink) == 20:
                break
            await asyncio.sleep(0.005)
        rx.close()
        for phone in phones:
            phone.close()
        return len(sink)

    assert asyncio.run(scenario()) == 20


def _queued(n: int, size: int = 40) -> tuple[socket.socket, list[socket.socket], list[bytes]]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((LOOPBACK, 0))
    rx.setblocking(False)
    phones = senders(n)
    sent = [bytes([i % 256]) * (size + i) for i in range(n)]
    for phone, data in zip(phones, sent, strict=True):
        phone.sendto(data, rx.getsockname())
    return rx, phones, sent


@pytest.mark.parametrize("reader", ["reference", "native"])
def test_recv_batch_contract(reader: str) -> None:
    """Rows, sizes, sender addresses as Python gives them, a cut datagram, a bounded batch, an
    empty socket, and an error raised only as the first result."""
    if reader == "native" and not hasattr(native_module(), "recv_batch"):
        pytest.skip("no native recv_batch here (not built, or not Linux)")
    recv = recv_batch_native if reader == "native" else recv_batch_reference
    rx, phones, sent = _queued(12)
    buf = np.zeros((8, 48), np.uint8)  # 8 rows: the batch is bounded; 48 bytes: the last ones cut
    sizes = np.zeros(8, np.int64)
    got: list[tuple[bytes, Any]] = []
    for _ in range(3):
        addresses = recv(rx, buf, sizes)
        got += [(buf[i, : sizes[i]].tobytes(), a) for i, a in enumerate(addresses)]
    assert len(got) == 12
    for (data, address), phone, expected in zip(got, phones, sent, strict=True):
        assert data == expected[:48]
        assert address == phone.getsockname()
    assert recv(rx, buf, sizes) == []  # nothing waiting: no error
    rx.close()
    with pytest.raises(OSError):
        recv(rx, buf, sizes)  # a closed socket: the error is the first result
    for phone in phones:
        phone.close()


def test_recv_batch_native_matches_the_reference() -> None:
    """The same queued datagrams read by both: the same rows, sizes and addresses."""
    if not hasattr(native_module(), "recv_batch"):
        pytest.skip("no native recv_batch here (not built, or not Linux)")
    results = []
    for recv in (recv_batch_reference, recv_batch_native):
        rx, phones, _ = _queued(30, size=100)
        buf = np.zeros((batch_rows(120), 120), np.uint8)
        sizes = np.zeros(len(buf), np.int64)
        addresses = recv(rx, buf, sizes)
        results.append((buf[: len(addresses)].copy(), sizes[: len(addresses)].copy(),
                        [a[1] - phones[0].getsockname()[1] for a in addresses]))  # fmt: skip
        rx.close()
        for phone in phones:
            phone.close()
    (b0, s0, a0), (b1, s1, a1) = results
    np.testing.assert_array_equal(b0, b1)
    np.testing.assert_array_equal(s0, s1)
    assert len(a0) == 30 and len(a1) == 30
    assert batch_rows(1) == MAX_BATCH and batch_rows(65508) >= 1


def test_a_tick_carries_the_burst_waiting_in_the_kernel() -> None:
    """A tick reads the capture sockets first: every session of a burst that waited while the
    loop was busy is fresh in that one tick, and reading it kicks no further tick."""

    async def scenario() -> tuple[list[bool], bool]:
        port = _free_udp_port()
        runtime = Runtime(ServerOptions(livelink_port=port, vmc_port=0, auto_create_sessions=True))
        await runtime.ingest.start()
        phones = senders(50)
        for i, phone in enumerate(phones):
            phone.sendto(packet(f"s{i}", 0.9), (LOOPBACK, port))
        runtime.tick(runtime.now())  # no await: the loop has not read one of them
        fresh = [runtime.engine.get(f"s{i}").last_capture_t is not None for i in range(50)]
        kicked = runtime._kick_pending
        runtime.ingest.close()
        for phone in phones:
            phone.close()
        return fresh, kicked

    fresh, kicked = asyncio.run(scenario())
    assert fresh == [True] * 50
    assert not kicked


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])
