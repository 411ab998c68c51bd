"""Fan-out at the socket floor (issue 16): frames framed once and written straight to the
stream sockets, the outbox still in charge whenever anything waits, and the lean load
generator that measures it, against a real ``avatar-engine serve``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn
import websockets
from uvicorn.server import ServerState
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode

from avatar_engine.client.lean import LiveLinkPublisher, run_viewers, tick_latencies
from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Frame, Hello, NeedKeyframe
from avatar_engine.codec.wire import DeltaMode
from avatar_engine.kernels.backends import available_backends
from avatar_engine.server import fanout
from avatar_engine.server.fanout import (
    BLOCKED_OUTBOX,
    BLOCKED_PAUSED,
    LINKS,
    STREAM_PATH,
    DirectLink,
    GroupTable,
    LinkTable,
    SendGroup,
    StreamProtocol,
    ViewerSet,
    frame_header,
    group_backend,
    groups_backend,
    offer_to_all,
    send_backend,
    send_group_reference,
    send_groups_reference,
    send_to_all_reference,
)
from avatar_engine.server.streams import StreamKey, Subscriber
from avatar_engine.transport.outbox import Outbox
from server_process import ServerProcess


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().wait_ready()
    yield proc
    proc.stop()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_one_header_frames_a_message_as_websockets_does(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = WsFrame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
    assert frame_header(size) + payload == expected


def test_only_stream_urls_get_a_direct_link() -> None:
    assert STREAM_PATH.match("/sessions/abc/stream")
    for path in ("/sessions/abc/publish", "/sessions/abc/voice", "/sessions/a/b/stream", "/"):
        assert not STREAM_PATH.match(path)


def test_a_frame_bypasses_the_outbox_only_when_nothing_waits_there() -> None:
    outbox = Outbox()
    assert outbox.take_direct()
    assert (outbox.frames_offered, outbox.frames_sent) == (1, 1)  # counted like any frame
    outbox.put_control(b"hello")
    assert not outbox.take_direct()  # the hello goes first, through the writer
    outbox = Outbox()
    outbox.offer_frame(b"k", keyframe=True)
    assert not outbox.take_direct()  # a pending frame: latest wins in the outbox
    outbox = Outbox()
    outbox.awaiting_keyframe = True
    assert not outbox.take_direct()  # after a loss only a keyframe may follow
    outbox = Outbox()
    outbox.close()
    assert not outbox.take_direct()
    assert outbox.frames_sent == 0


def test_websockets_viewer_decodes_every_frame_and_deflate_is_not_negotiated(
    server: ServerProcess,
) -> None:
    assert httpx.post(server.url + "/sessions", json={"id": "fan1"}).status_code == 201
    publisher = LiveLinkPublisher("127.0.0.1", server.livelink_port, ["fan1"], time.monotonic())

    async def scenario() -> tuple[list[object], list[str], int]:
        decoder = Decoder()
        seen: list[object] = []
        # The websockets client offers permessage-deflate; stream frames are shared bytes.
        async with websockets.connect(f"{server.ws_url}/sessions/fan1/stream?lod=1") as ws:
            extensions = [type(e).__name__ for e in ws.protocol.extensions]
            deadline = time.monotonic() + 15
            while sum(isinstance(m, Frame) for m in seen) < 60 and time.monotonic() < deadline:
                publisher.run(time.monotonic() + 0.02)
                try:
                    data = await asyncio.wait_for(ws.recv(), 0.02)
                except TimeoutError:
                    continue
                assert isinstance(data, bytes)
                seen.append(decoder.feed(data))
            async with httpx.AsyncClient() as client:  # while connected: /stats sums live ones
                sent = (await client.get(server.url + "/stats")).json()["frames"]["sent"]
        return seen, extensions, sent

    seen, extensions, sent = asyncio.run(scenario())
    publisher.close()
    assert extensions == []
    assert isinstance(seen[0], Hello)  # the hello (an ASGI send) before any direct frame
    frames = [m for m in seen if isinstance(m, Frame)]
    assert len(frames) >= 60 and all(f.lod == 1 for f in frames)
    assert not any(isinstance(m, NeedKeyframe) for m in seen)  # every delta applied
    assert sent >= 60  # direct writes are counted as sent


def test_a_viewer_that_stops_reading_falls_back_to_the_outbox_and_others_stream_on(
    server: ServerProcess,
) -> None:
    assert httpx.post(server.url + "/sessions", json={"id": "fan2"}).status_code == 201
    path = "/sessions/fan2/stream?mode=keyframe"  # keyframe-relative deltas: bigger frames
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    stalled.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )  # and never reads again
    stats0 = httpx.get(server.url + "/stats").json()
    t0 = time.monotonic()
    publisher = LiveLinkPublisher("127.0.0.1", server.livelink_port, ["fan2"], t0)
    sending = threading.Thread(target=publisher.run, args=(t0 + 10.0,))
    sending.start()
    spec = {"host": "127.0.0.1", "port": server.port, "t0": t0, "start": t0 + 1.0,
            "end": t0 + 9.0, "server_t0": stats0["clock"]["monotonic_t0"],
            "paths": [[path, True, False], [path, False, False]],
            "sessions": ["fan2", "fan2"]}  # fmt: skip
    result = run_viewers(spec)
    sending.join()
    publisher.close()
    stats = httpx.get(server.url + "/stats").json()
    stalled.close()
    assert result["connected"] == 2 and result["failed"] == 0 and result["closed"] == 0
    assert result["frames"] > 2 * 60  # both readers kept streaming
    receipts = result["flip_receipts"]  # the probe decoded every frame it needed
    assert receipts and all(session == "fan2" for session, _, _ in receipts)
    for _, flip, ms in receipts:  # the publisher knows when each seen flip left
        lag = publisher.send_lag_ms("fan2", flip)
        assert lag is not None and 0.0 <= lag < ms
    assert len(tick_latencies([result])) > 0
    assert stats["tick"]["errors"] == 0 and stats["subscribers"] >= 1  # the stalled one stays


def _small_buffered_pair() -> tuple[socket.socket, socket.socket]:
    """A loopback TCP connection ``(ours, peer)`` with 4 KiB buffers on the sending and the
    receiving side, so a few frames fill it; ``ours`` is non-blocking, as a transport's is."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        peer = socket.socket()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.connect(listener.getsockname())
        ours, _ = listener.accept()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    return ours, peer


def test_a_socket_that_stops_draining_pauses_its_link_and_the_outbox_keeps_the_latest() -> None:
    """The real protocol class on a real loopback socket whose peer never reads."""
    message = bytes(200)

    async def scenario() -> tuple[Subscriber, StreamProtocol, bool]:
        loop = asyncio.get_running_loop()
        conn, peer = _small_buffered_pair()
        protocol = StreamProtocol(uvicorn.Config(_unused_app), ServerState(), {}, _loop=loop)
        await loop.connect_accepted_socket(lambda: protocol, conn)
        sub = Subscriber("s", "t", "websocket", StreamKey("s", 0, DeltaMode.CHAINED, 8), 1, 0.0)
        sub.direct = protocol.open_link()
        for i in range(2000):
            offer_to_all([sub], message, keyframe=i % 100 == 0)
        paused = sub.direct.paused
        peer.setblocking(False)
        deadline = time.monotonic() + 10
        while sub.direct.paused and time.monotonic() < deadline:  # the peer reads again
            with contextlib.suppress(BlockingIOError):
                peer.recv(1 << 20)
            await asyncio.sleep(0.005)
        peer.close()
        return sub, protocol, paused

    sub, protocol, paused = asyncio.run(scenario())
    outbox = sub.outbox
    assert paused  # the kernel buffers filled: nothing more was written directly
    assert outbox.frames_skipped > 1000  # latest wins in the outbox from then on
    assert outbox.frames_offered == 2000
    assert outbox.frames_sent + outbox.frames_skipped + 1 >= 2000  # one frame still pending
    assert protocol.link is not None and not protocol.link.paused  # drained: direct writes resume
    assert protocol.transport.get_write_buffer_size() == 0


BACKENDS = ["native", "numpy"] if "native" in available_backends() else ["numpy"]


def _send_cases(wire: bytes) -> tuple[list[socket.socket], list[int]]:
    """Unix stream socket pairs (deterministic buffer accounting) in every state the send loop
    meets: draining, with room for only part of ``wire``, full, broken; and a closed fd.
    Returns (sockets to close, server-side fds in that order)."""
    keep: list[socket.socket] = []
    fds: list[int] = []
    for state in ("open", "part", "full", "broken"):
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        keep += [ours, peer]
        fds.append(ours.fileno())
        if state == "broken":
            peer.close()
        elif state in ("part", "full"):
            chunk = bytes(1024 if state == "part" else 1)
            with contextlib.suppress(BlockingIOError):
                while True:
                    ours.send(chunk)  # fill the buffers
            if state == "part":
                peer.recv(2048)  # room for part of a large wire, not all of it
    closed = socket.socket()
    fds.append(closed.fileno())
    closed.close()  # EBADF: nothing else opens a descriptor in between
    return keep, fds


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_send_loop_reports_per_socket_what_the_reference_reports(backend: str) -> None:
    """One reference, many backends: the native loop's per-fd result (bytes taken or -errno)
    equals the Python reference's on sockets in the same states."""
    wire = frame_header(60000) + bytes(60000)
    got = []
    for send in (send_to_all_reference, send_backend(backend)):
        keep, fds = _send_cases(wire)
        got.append(send(wire, np.array(fds, np.int32)).tolist())
        for s in keep:
            s.close()
    reference, result = got
    assert result == reference
    taken_all, part, full, broken, closed = reference
    assert taken_all == len(wire) and 0 < part < len(wire)
    assert full == -errno.EAGAIN
    assert broken in (-errno.EPIPE, -errno.ECONNRESET)
    assert closed == -errno.EBADF


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_writes_finish_through_the_transport_and_the_byte_stream_stays_whole(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames larger than the socket buffers: the kernel takes part of each direct write, the
    transport sends the rest before anything else, so the reader sees whole frames in order."""
    chosen: SendGroup = group_backend(backend)
    monkeypatch.setattr(fanout, "group_backend", lambda name=None: chosen)
    messages = [bytes([i]) * 100_000 for i in range(1, 40)]

    async def scenario() -> tuple[bytes, Subscriber, int]:
        loop = asyncio.get_running_loop()
        conn, peer = _small_buffered_pair()
        peer.setblocking(False)
        protocol = StreamProtocol(uvicorn.Config(_unused_app), ServerState(), {}, _loop=loop)
        await loop.connect_accepted_socket(lambda: protocol, conn)
        sub = Subscriber("s", "t", "websocket", StreamKey("s", 0, DeltaMode.CHAINED, 8), 1, 0.0)
        link = protocol.open_link()
        sub.direct = link
        received = bytearray()
        short = target = 0
        for message in messages:
            offer_to_all([sub], message, keyframe=True)
            short += link.paused  # the kernel took part: the transport holds the rest
            target += len(frame_header(len(message))) + len(message)
            deadline = time.monotonic() + 10
            while (link.paused or len(received) < target) and time.monotonic() < deadline:
                with contextlib.suppress(BlockingIOError):
                    received += peer.recv(1 << 20)
                await asyncio.sleep(0)
        peer.close()
        return bytes(received), sub, short

    received, sub, short = asyncio.run(scenario())
    expected = b"".join(frame_header(len(m)) + m for m in messages)
    assert short > 0  # the case under test happened
    assert received == expected  # every frame whole, in order
    assert sub.outbox.frames_sent == len(messages)  # each one a direct write


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_group_pass_reports_what_the_reference_reports(backend: str) -> None:
    """One group's pass over a link table: rows with no blocked bit are written (and counted),
    blocked rows and viewers without a link come back untouched, short and failed writes come
    back with what the kernel did; the native pass equals the Python reference."""
    wire = frame_header(60000) + bytes(60000)
    got = []
    for send in (send_group_reference, group_backend(backend)):
        extra = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)  # before the closed fd
        keep, fds = _send_cases(wire)  # open, part, full, broken, closed
        table_fds = np.array([*fds, extra[0].fileno(), -1], np.int32)
        blocked = np.array([0, 0, 0, 0, 0, BLOCKED_PAUSED, 0], np.uint8)
        sent = np.full(len(table_fds), 7, np.int64)
        members = np.array([5, 0, -1, 1, 2, 3, 4], np.int32)  # table rows; -1: no link
        skip, fail, result = send(wire, members, table_fds, blocked, sent)
        got.append((skip.tolist(), fail.tolist(), result.tolist(), sent.tolist()))
        for s in [*keep, *extra]:
            s.close()
    reference, result = got
    assert result == reference
    skip, fail, codes, sent = reference
    assert skip == [0, 2]  # the blocked row and the viewer without a link
    assert fail == [3, 4, 5, 6]  # part, full, broken, closed (the first member wrote it all)
    assert 0 < codes[0] < len(wire) and codes[1] == -errno.EAGAIN
    assert codes[3] == -errno.EBADF
    assert sent == [8, 8, 8, 8, 8, 7, 7]  # every row written to counts the frame as its own


def _links(fds: np.ndarray, blocked: np.ndarray, sent: np.ndarray, threads: int = 1) -> LinkTable:
    """A link table holding exactly these columns (the pass reads it by field name)."""
    links = LinkTable(1)
    links.fd, links.blocked, links.sent = fds, blocked, sent
    links.send_threads = threads
    return links


def _tick_buffer(messages: list[bytes]) -> tuple[bytes, np.ndarray]:
    """Unframed messages laid out as an encoder's tick buffer: (payload, bounds)."""
    bounds = np.zeros(len(messages) + 1, np.int64)
    np.cumsum([len(m) for m in messages], out=bounds[1:])
    return b"".join(messages), bounds


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_group_of_a_tick_in_one_pass_reports_what_the_reference_reports(
    backend: str,
) -> None:
    """All groups' passes in one call, from a tick buffer: message k (framed once) goes to its
    slice of members for each k in order (an empty group and a message not in order
    included), positions come back into the whole member array; the native pass equals the
    Python reference, which is send_group's contract per group."""
    messages = [bytes(60000), b"hello", b"abc", b"not sent"]
    payload, bounds = _tick_buffer(messages)
    order = np.array([0, 1, 2], np.int64)  # message 3 is not due: its viewer gets nothing
    got = []
    for send in (send_groups_reference, groups_backend(backend)):
        extra = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)  # before the closed fd
        keep, fds = _send_cases(frame_header(60000) + messages[0])  # open, part, full, ...
        table_fds = np.array([*fds, extra[0].fileno(), -1], np.int32)
        blocked = np.array([0, 0, 0, 0, 0, BLOCKED_PAUSED, 0], np.uint8)
        sent = np.full(len(table_fds), 7, np.int64)
        members = np.array([5, 0, -1, 1, 2, 3, 4, 0, 6, 0], np.int32)  # table rows; -1: no link
        starts = np.array([0, 4, 4, 9, 10], np.int64)  # the second group is empty
        links = _links(table_fds, blocked, sent)
        skip, fail, result = send(memoryview(bytearray(payload)), bounds, order, starts,
                                  members, links)  # fmt: skip
        got.append((skip.tolist(), fail.tolist(), result.tolist(), sent.tolist()))
        for s in [*keep, *extra]:
            s.close()
    reference, result = got
    assert result == reference
    skip, fail, codes, sent = reference
    assert skip == [0, 2]  # the blocked row and the viewer without a link
    assert fail == [3, 4, 5, 6, 8]  # part (large wire), full, broken, closed, no descriptor
    assert 0 < codes[0] < len(messages[0]) and codes[1] == -errno.EAGAIN
    assert codes[3] == codes[4] == -errno.EBADF
    assert sent == [9, 8, 8, 8, 8, 7, 8]  # the open row is in two groups; blocked not counted
    for bad in (
        dict(order=np.array([1, 0], np.int64)),  # not ascending
        dict(order=np.array([4], np.int64)),  # no such message
        dict(bounds=bounds + 1),  # past the payload
        dict(starts=np.array([0, 4, 4, 9], np.int64)),  # one entry short
        dict(starts=np.array([0, 5, 4, 9, 10], np.int64)),  # decreasing
    ):
        args = dict(bounds=bounds, order=order, starts=starts) | bad
        with pytest.raises(ValueError):
            send(payload, args["bounds"], args["order"], args["starts"], members, links)


def test_the_native_pass_frames_each_message_as_the_python_header_does() -> None:
    """The native pass frames a message itself: its bytes on the socket are frame_header(n) +
    the message, for each header size (7-bit, 16-bit and 64-bit lengths)."""
    if "native" not in BACKENDS:
        pytest.skip("the native pass is not built")
    for size in (0, 125, 126, 65535, 65536):
        message = bytes(range(256)) * (size // 256) + bytes(size % 256)
        payload, bounds = _tick_buffer([message])
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        fds = np.array([a.fileno()], np.int32)
        skip, fail, _ = groups_backend("native")(
            payload, bounds, np.array([0], np.int64), np.array([0, 1], np.int64),
            np.array([0], np.int32), _links(fds, np.zeros(1, np.uint8), np.zeros(1, np.int64)),
        )  # fmt: skip
        wire = frame_header(size) + message
        received = b""
        while len(received) < len(wire) and not len(fail):
            received += b.recv(1 << 20)
        a.close()
        b.close()
        assert not len(skip) and not len(fail) and received == wire


@pytest.mark.skipif("native" not in BACKENDS, reason="the threaded pass is native")
@pytest.mark.parametrize("threads", [2, 3])
def test_a_pass_split_over_threads_reports_what_one_thread_does_and_keeps_each_links_order(
    threads: int,
) -> None:
    """``threads`` > 1 (``--send-threads``): the outcome is the reference's (positions
    ascending, counts), and every link receives its groups' frames whole and in group order
    (a link is written by one thread only), though each link is in every group."""
    n = 200
    messages = [bytes([g]) * 4 for g in range(4)]
    payload, bounds = _tick_buffer(messages)
    order = np.random.default_rng(5).permutation(n).astype(np.int32)
    members = np.concatenate([order, order[::-1], order, order[::-1]])
    members[[7, 450]] = -1  # viewers without a link
    starts = np.array([0, n, 2 * n, 3 * n, 4 * n], np.int64)
    every = np.arange(4, dtype=np.int64)
    got = []
    for send, k in ((send_groups_reference, 1), (groups_backend("native"), threads)):
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(n)]
        fds = np.array([a.fileno() for a, _ in pairs], np.int32)
        blocked = np.zeros(n, np.uint8)
        blocked[[3, 99]] = BLOCKED_PAUSED
        sent = np.zeros(n, np.int64)
        links = _links(fds, blocked, sent, k)
        skip, fail, result = send(payload, bounds, every, starts, members, links)
        streams = [b.recv(4096) if not blocked[i] else b"" for i, (_, b) in enumerate(pairs)]
        got.append((skip.tolist(), fail.tolist(), result.tolist(), sent.tolist(), streams))
        for a, b in pairs:
            a.close()
            b.close()
    reference, split = got
    assert split == reference
    skip, fail, _, sent, streams = reference
    assert fail == [] and skip == sorted(skip) and len(skip) == 2 + 2 * 4
    row = int(order[0])  # listed in all four groups, never skipped
    assert sent[row] == 4 and streams[row] == b"".join(frame_header(4) + m for m in messages)
    counts = np.zeros(n, np.int64)
    with pytest.raises(ValueError):  # no thread to write with
        groups_backend("native")(payload, bounds, every, starts, members,
                                 _links(fds, blocked, counts, 0))  # fmt: skip
    with pytest.raises(TypeError):  # a column of the wrong dtype is refused, never copied
        groups_backend("native")(payload, bounds, every, starts, members,
                                 _links(fds, blocked, counts.astype(np.int32)))  # fmt: skip
    assert not counts.any()  # nothing was written


class _Path:
    """A direct path that records what the outbox tells it."""

    def __init__(self) -> None:
        self.busy: list[bool] = []
        self.frames_direct = 0

    def outbox_busy(self, busy: bool) -> None:
        self.busy.append(busy)


def test_the_outbox_tells_its_direct_path_when_anything_waits_and_counts_its_frames() -> None:
    outbox = Outbox()
    path = _Path()
    outbox.attach(path)
    path.frames_direct = 5  # five frames went straight to the socket
    assert (outbox.frames_offered, outbox.frames_sent) == (5, 5)
    outbox.put_control(b"hello")
    outbox.offer_frame(b"k", keyframe=True)
    assert path.busy == [False, True]  # told once when it started holding something

    async def drain() -> None:
        await outbox.next_messages()

    asyncio.run(drain())
    assert path.busy == [False, True, False]
    assert (outbox.frames_offered, outbox.frames_sent) == (6, 6)
    outbox.awaiting_keyframe = True  # a loss: nothing but a keyframe may follow
    assert path.busy[-1]
    outbox.offer_frame(b"k2", keyframe=True)
    asyncio.run(drain())
    assert not path.busy[-1]
    outbox.close()
    assert path.busy[-1]


class _FakeSocket:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


class _FakeTransport:
    def __init__(self, fd: int) -> None:
        self.sock = _FakeSocket(fd)

    def get_extra_info(self, name: str) -> object:
        return self.sock


class _FakeProtocol:
    def __init__(self, fd: int) -> None:
        self.transport = _FakeTransport(fd)


def _viewer(fd: int) -> Subscriber:
    sub = Subscriber("s", "t", "websocket", StreamKey("s", 0, DeltaMode.CHAINED, 8), 1, 0.0)
    sub.direct = DirectLink(_FakeProtocol(fd))  # type: ignore[arg-type]
    return sub


def test_a_group_keeps_its_viewers_rows_in_order_and_a_row_is_never_reused_while_listed() -> None:
    group: ViewerSet[Subscriber] = ViewerSet()
    subs = [_viewer(1000 + i) for i in range(20)]
    for sub in subs:
        group.add(sub)
    for sub in subs[::3]:
        group.discard(sub)
    group.discard(subs[0])  # not there any more: no change
    links = [sub.direct for sub in group.members]
    assert all(type(link) is DirectLink for link in links)
    assert group.rows().tolist() == [link.row for link in links if type(link) is DirectLink]
    assert set(group) == set(subs) - set(subs[::3]) and len(group) == len(group.members)
    kept = group.members[0]
    link = kept.direct
    assert type(link) is DirectLink
    row = link.row
    assert LINKS.blocked[row] == 0  # nothing waits: it may take direct writes
    kept.outbox.put_control(b"event")
    assert LINKS.blocked[row] == BLOCKED_OUTBOX  # the event goes first, through the writer
    link.lost()  # the connection is gone while the group still lists the viewer
    assert link.row == row  # not released: a group may still write to it (it is blocked)
    group.discard(kept)
    assert link.row == -1 and not link.open  # released once no group lists it
    group.clear()
    assert len(group) == 0


def test_a_group_table_lays_out_every_slots_rows_and_a_change_is_announced() -> None:
    """A tick's send pass reads every slot's viewer rows from one table (slot k's at
    members[starts[k]:starts[k + 1]], a free slot empty); a group's set tells its owner of each
    add and removal that changes it, so a stale table is rebuilt."""
    changes: list[int] = []
    first: ViewerSet[Subscriber] = ViewerSet(on_change=lambda: changes.append(1))
    second: ViewerSet[Subscriber] = ViewerSet()
    subs = [_viewer(2000 + i) for i in range(5)]
    for sub in subs[:3]:
        first.add(sub)
    first.add(subs[0])  # already there: no change
    for sub in subs[3:]:
        second.add(sub)
    first.discard(subs[1])
    first.discard(subs[1])  # gone already: no change
    assert changes == [1, 1, 1, 1]  # three adds and one removal
    table = GroupTable([second, None, first])
    assert table.counts.tolist() == [2, 0, 2] and table.starts.tolist() == [0, 2, 2, 4]
    assert table.watched.tolist() == [True, False, True]
    assert table.members.tolist() == [*second.rows().tolist(), *first.rows().tolist()]
    assert table.sets == [second, None, first]
    for group in (first, second):
        group.clear()


async def _unused_app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("no ASGI call is made in this test")


def test_lean_viewers_count_frames_and_see_the_published_flips(server: ServerProcess) -> None:
    """Two processes at once as simulate runs them: the lean publisher here, viewers in
    ``avatar-engine simulate`` (which also checks their counts add up)."""
    out = subprocess.run(
        [sys.executable, "-m", "avatar_engine.cli", "simulate", "--url", server.url,
         "--livelink-port", str(server.livelink_port), "--sessions", "2", "--subscribers", "6",
         "--stalled", "1", "--duration", "3", "--workers", "1", "--json"],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["connected"] == 6 and report["failed"] == 0
    assert report["frames_received"] > 0 and report["bytes_per_frame"] > 2
    assert report["publish_to_receive_ms"]["p50"] > 0  # the probes saw the jaw flip
    # Each flip timed from its packet's send, which is never before the flip's schedule.
    assert report["flips_timed_from_schedule"] == 0
    assert report["schedule_to_receive_ms"]["max"] >= report["publish_to_receive_ms"]["max"]
    assert report["tick_to_receive_ms"]["p50"] > 0
    assert len(report["load_cpu_percent"]["viewer_processes"]) == 1


def test_a_server_with_send_threads_streams_every_frame_to_every_viewer() -> None:
    """``--send-threads 2`` with 150 viewers of one session (a pass over two threads): nobody
    sees a sequence gap and every viewer gets the session's frames (read here by the Python
    receive pass, woken at every frame: ``simulate``'s viewer options reach the viewers)."""
    proc = ServerProcess("--send-threads", "2").wait_ready()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "avatar_engine.cli", "simulate", "--url", proc.url,
             "--livelink-port", str(proc.livelink_port), "--sessions", "1",
             "--subscribers", "150", "--duration", "3", "--workers", "1",
             "--viewer-pass", "numpy", "--viewer-wake-ms", "0", "--json"],
            capture_output=True, text=True, timeout=180, check=True,
        )  # fmt: skip
    finally:
        proc.stop()
    report = json.loads(out.stdout)
    assert report["connected"] == 150 and report["failed"] == 0
    assert report["gaps"] == 0 and report["subscribers_with_gaps"] == 0
    assert report["frames_per_subscriber_per_s"] > 30


def test_simulate_refuses_more_stalled_than_subscribers() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "avatar_engine.cli", "simulate", "--url", "http://127.0.0.1:9",
         "--subscribers", "2", "--stalled", "3"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stdout.strip().splitlines() == [
        "avatar-engine: error: --stalled must be within 0..--subscribers"
    ]


def test_simulate_refuses_a_negative_wake_interval() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "avatar_engine.cli", "simulate", "--url", "http://127.0.0.1:9",
         "--viewer-wake-ms", "-1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stdout.strip().splitlines() == [
        "avatar-engine: error: --viewer-wake-ms must be within 0..1000"
    ]
