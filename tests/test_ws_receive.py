"""The lean viewers' receive pass (client/ws_receive.py): the native pass counts exactly what the
Python reference counts, on real sockets carrying frames recorded from a real server, however
the bytes are cut into receives, with control frames, gaps, malformed messages, fragments and
frames no server sends."""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest

from avatar_engine.client.lean import (
    LiveLinkPublisher,
    ReferenceReceivePass,
    ViewerTotals,
    _Viewer,
    client_frame,
    receive_pass,
)
from avatar_engine.client.ws_receive import MAX_FRAME, NativeReceivePass, native_receive_available
from avatar_engine.server.fanout import frame_header
from server_process import ServerProcess

native = pytest.mark.skipif(not native_receive_available(), reason="native pass not built here")
WINDOW = (0.0, 1e9, 50.0)
"""Every frame counted; latencies relative to a server started at monotonic 50 s."""
Pass = ReferenceReceivePass | NativeReceivePass


def _head(stream: bytes, pos: int) -> tuple[int, int]:
    """(payload length, header length) of the unmasked frame at ``stream[pos]``."""
    length = stream[pos + 1] & 0x7F
    if length == 126:
        return int.from_bytes(stream[pos + 2 : pos + 4], "big"), 4
    if length == 127:
        return int.from_bytes(stream[pos + 2 : pos + 10], "big"), 10
    return length, 2


def _frames(stream: bytes) -> list[bytes]:
    """A server's byte stream cut into whole WebSocket frames (header included)."""
    out, pos = [], 0
    while pos < len(stream):
        length, head = _head(stream, pos)
        out.append(stream[pos : pos + head + length])
        pos += head + length
    return out


def _kind(frame: bytes) -> int:
    """The message type of a server frame carrying a stream message."""
    return frame[_head(frame, 0)[1] + 1]


@pytest.fixture(scope="module")
def recorded(server: ServerProcess) -> list[bytes]:
    """About a second of one viewer's stream from a real server with a publishing face: the
    HELLO, a keyframe and deltas, as frames."""
    assert httpx.post(server.url + "/sessions", json={"id": "rec"}).status_code == 201
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        b"GET /sessions/rec/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    t0 = time.monotonic()
    publisher = LiveLinkPublisher("127.0.0.1", server.livelink_port, ["rec"], t0)
    sending = threading.Thread(target=publisher.run, args=(t0 + 1.5,))
    sending.start()
    data = b""
    sock.settimeout(0.2)
    while time.monotonic() < t0 + 1.7:
        with contextlib.suppress(TimeoutError):
            data += sock.recv(1 << 16)
    sending.join()
    publisher.close()
    sock.close()
    frames = _frames(data[data.index(b"\r\n\r\n") + 4 :])
    kinds = [_kind(f) for f in frames]
    assert kinds[0] == 0 and 1 in kinds and kinds.count(2) > 30  # HELLO, KEYFRAME, DELTAs
    return frames


def _loopback() -> tuple[socket.socket, socket.socket]:
    """A loopback TCP connection: (the viewer's non-blocking end, the server's end)."""
    listener = socket.create_server(("127.0.0.1", 0))
    ours = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    listener.close()
    ours.setblocking(False)
    return ours, peer


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback TCP connection, closed after the test."""
    ours, peer = _loopback()
    yield ours, peer
    ours.close()
    peer.close()


def _replay(make: Callable[[select.epoll], Pass], chunks: list[bytes]) -> dict[str, Any]:
    """``chunks`` sent one at a time to a fresh viewer served by the pass ``make`` builds, each
    read by one poll stamped 100 s + 1 ms per chunk; what it counted and the pongs it sent."""
    ours, peer = _loopback()
    ep = select.epoll()
    viewer = _Viewer(ours, b"", ViewerTotals(), probe=False, t0=0.0, stall=False, session="")
    viewer.state = 1  # open: the handshake is not this test's business
    ep.register(ours.fileno(), select.EPOLLIN)
    receive = make(ep)
    receive.add(viewer)
    try:
        for k, chunk in enumerate(chunks):
            if receive.counters()["closed"]:
                break
            peer.sendall(chunk)
            _, foreign = receive.poll(2.0, WINDOW, now=100.0 + k / 1000)
            assert foreign == []
        peer.settimeout(0.2)
        replies = b""
        with pytest.raises(TimeoutError):
            while chunk := peer.recv(1 << 16):
                replies += chunk
    finally:
        ep.close()
        ours.close()
        peer.close()
    return {"counters": receive.counters(), "latencies": receive.take_latencies().tolist(),
            "pongs": _unmasked(replies)}  # fmt: skip


def _unmasked(stream: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each masked client frame in ``stream``."""
    out, pos = [], 0
    while pos < len(stream):
        length, head = stream[pos + 1] & 0x7F, 2
        if length == 126:
            length, head = int.from_bytes(stream[pos + 2 : pos + 4], "big"), 4
        assert stream[pos + 1] & 0x80  # clients mask
        key = stream[pos + head : pos + head + 4]
        body = stream[pos + head + 4 : pos + head + 4 + length]
        out.append((stream[pos] & 0x0F, bytes(b ^ key[i & 3] for i, b in enumerate(body))))
        pos += head + 4 + length
    return out


def _server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    head = frame_header(len(payload))
    return bytes(((0x80 if fin else 0) | opcode,)) + head[1:] + payload


def _chunked(stream: bytes, how: str) -> list[bytes]:
    if how == "whole":  # several frames per receive
        return [stream]
    if how == "bytes":  # every frame split across receives, headers too
        return [stream[i : i + 1] for i in range(len(stream))]
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(stream)), len(stream) // 12))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def _session(recorded: list[bytes]) -> bytes:
    """The recorded frames with two deltas lost (a gap, and a lost reference), a ping, an
    AUDIO message, a text frame, malformed messages, a fragmented message, then a close."""
    frames = [f for i, f in enumerate(recorded) if i not in (10, 20)]
    audio = _server_frame(0x2, msgpack.packb([10, 1, 0, 5, b"voice"]))
    extra = [
        _server_frame(0x9, b"are you there"),
        audio,
        _server_frame(0x1, b"text is skipped"),
        _server_frame(0x2, b"\x96"),  # too short for a type
        _server_frame(0x2, msgpack.packb([2, 1, 0, 7, 1])),  # DELTA cut short
        _server_frame(0x2, bytes((0x96, 2, 0xC0, 0, 7, 1, 5))),  # sid is nil: not a uint
        _server_frame(0x2, msgpack.packb([1, 9, 0, 1, (1 << 63) + 1, b""])),  # t over int64
        _server_frame(0x2, msgpack.packb([1, 9, 0, 40, 1000]), fin=False),  # fields first
        _server_frame(0x0, b"rest of it"),
    ]
    return b"".join(frames[:30] + extra + frames[30:] + [_server_frame(0x8, b"\x03\xe8")])


@native
@pytest.mark.parametrize("how", ["whole", "random", "bytes"])
def test_native_pass_counts_what_the_reference_counts(recorded: list[bytes], how: str) -> None:
    stream = _session(recorded)
    ref = _replay(ReferenceReceivePass, _chunked(stream, how))
    nat = _replay(NativeReceivePass, _chunked(stream, how))
    assert nat == ref
    counts = ref["counters"]
    frames = sum(_kind(f) in (1, 2) for f in recorded)
    assert counts["frames"] == frames - 2 + 1  # two lost, the fragment's first part counts
    assert counts["gaps"] >= 2 and counts["viewers_with_gaps"] == 1
    assert counts["audio"] == 1 and counts["closed"] == 1 and counts["bad"] == 4
    assert ref["pongs"] == [(0xA, b"are you there")]
    assert 8 <= len(ref["latencies"]) < counts["frames"]  # after a lost reference: no time


@native
@pytest.mark.parametrize(
    "bad",
    [
        bytes((0x82, 127)) + (MAX_FRAME + 1).to_bytes(8, "big"),  # longer than any server's
        bytes((0x82, 0x85)) + bytes(4) + b"hello",  # masked: clients mask, servers never
    ],
    ids=["oversize", "masked"],
)
def test_a_frame_no_server_sends_closes_the_viewer_in_both(recorded: list[bytes],
                                                           bad: bytes) -> None:  # fmt: skip
    chunks = [b"".join(recorded[:5]), bad, b"".join(recorded[5:10])]
    ref = _replay(ReferenceReceivePass, chunks)
    assert _replay(NativeReceivePass, chunks) == ref
    assert ref["counters"]["closed"] == 1 and ref["counters"]["bad"] == 1
    assert ref["counters"]["frames"] == sum(_kind(f) in (1, 2) for f in recorded[:5]) > 0


@native
def test_native_pass_hands_back_descriptors_it_does_not_serve(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    ep = select.epoll()
    ep.register(ours.fileno(), select.EPOLLIN)
    receive = NativeReceivePass(ep)
    peer.sendall(b"x")
    stamp, foreign = receive.poll(2.0, WINDOW)
    assert foreign == [ours.fileno()]
    assert abs(stamp - time.monotonic()) < 1.0  # the clock of time.monotonic()
    assert ours.recv(10) == b"x"  # left unread for its owner
    ep.close()


@native
def test_native_pass_reports_end_of_stream_and_leaves_the_epoll_set(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    ep = select.epoll()
    ep.register(ours.fileno(), select.EPOLLIN)
    receive = NativeReceivePass(ep)
    receive.add(_Viewer(ours, b"", ViewerTotals(), probe=False, t0=0.0, stall=False, session=""))
    peer.close()
    receive.poll(2.0, WINDOW)
    assert receive.counters()["closed"] == 1
    assert receive.poll(0.05, WINDOW)[1] == []  # no longer polled
    with pytest.raises(FileNotFoundError):
        ep.unregister(ours.fileno())  # the pass took it out
    ep.close()


def test_receive_pass_follows_the_kernel_backend() -> None:
    ep = select.epoll()
    assert isinstance(receive_pass(ep, "numpy"), ReferenceReceivePass)
    if native_receive_available():
        assert isinstance(receive_pass(ep, "native"), NativeReceivePass)
    ep.close()


def test_client_frames_unmask_to_their_payload() -> None:
    assert _unmasked(client_frame(0xA, b"abc")) == [(0xA, b"abc")]


def test_latencies_are_handed_over_once() -> None:
    ep = select.epoll()
    receive = ReferenceReceivePass(ep)
    assert receive.take_latencies().dtype == np.float32
    assert len(receive.take_latencies()) == 0
    ep.close()
