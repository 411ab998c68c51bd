"""asv: fan-out of one group's frame to N WebSocket viewers, beside the socket floor.

Run with ``asv run --config benchmarks/asv.conf.json`` (or ``-E existing``);
``python benchmarks/fanout_floor.py`` measures the same against a real server under load.

Both cases write an 18-byte frame to N loopback TCP sockets and then drain the receiving ends
(the same draining cost in both, so the difference is the fan-out's own overhead):

- ``floor``: a plain ``socket.send()`` loop over the server-side sockets;
- ``send_to_all``: the fan-out's send loop alone (:func:`~avatar_engine.server.fanout.send_backend`:
  the C++ loop when the native module is built), over the same sockets' descriptors;
- ``send_groups_2_threads``: the tick's pass (``_core.send_groups`` when built) over the same
  sockets split over two threads (``serve --send-threads 2``): the same sends, the wall time
  shorter where a second core is free;
- ``offer_to_all``: :func:`avatar_engine.server.fanout.offer_to_all` over a group's
  :class:`~avatar_engine.server.fanout.ViewerSet` of N subscribers whose direct links are
  uvicorn transports of the real :class:`StreamProtocol` (framing once, then one native pass
  that checks each link's blocked bits in the link table and sends: no Python per viewer).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, ClassVar

import numpy as np
import uvicorn
from uvicorn.server import ServerState

from avatar_engine.codec.wire import DeltaMode
from avatar_engine.server.fanout import (
    LinkTable,
    StreamProtocol,
    ViewerSet,
    frame_header,
    groups_backend,
    offer_to_all,
    send_backend,
)
from avatar_engine.server.streams import StreamKey, Subscriber

MESSAGE = bytes(16)
KEY = StreamKey("s", 0, DeltaMode.CHAINED, 8)


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called: no handshake
    raise RuntimeError("unused")


class FanOut:
    """Time to hand one frame to N viewers (and drain them)."""

    params = ([100, 1000], ["floor", "send_to_all", "send_groups_2_threads", "offer_to_all"])
    param_names: ClassVar[list[str]] = ["viewers", "path"]

    def setup(self, viewers: int, path: str) -> None:
        self.loop = asyncio.new_event_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(viewers)
        self.readers: list[socket.socket] = []
        server_side: list[socket.socket] = []
        for _ in range(viewers):
            client = socket.create_connection(listener.getsockname())
            conn, _ = listener.accept()
            client.setblocking(False)
            conn.setblocking(False)
            self.readers.append(client)
            server_side.append(conn)
        listener.close()
        self.socks = server_side
        self.fds = np.array([s.fileno() for s in server_side], np.int32)
        self.send = send_backend()
        self.wire = frame_header(len(MESSAGE)) + MESSAGE
        self.links = LinkTable(1)  # the pass's link table: these sockets, two send threads
        self.links.fd, self.links.sent = self.fds, np.zeros(viewers, np.int64)
        self.links.blocked, self.links.send_threads = np.zeros(viewers, np.uint8), 2
        self.subs: ViewerSet[Subscriber] = ViewerSet()
        if path == "offer_to_all":
            config = uvicorn.Config(_app)
            state = ServerState()
            for conn in server_side:
                protocol = StreamProtocol(config, state, {}, _loop=self.loop)
                self.loop.run_until_complete(
                    self.loop.connect_accepted_socket(lambda p=protocol: p, conn)
                )
                sub = Subscriber("s", "t", "websocket", KEY, 1, 0.0)
                sub.direct = protocol.open_link()
                self.subs.add(sub)

    def teardown(self, viewers: int, path: str) -> None:
        self.subs.clear()
        for s in self.readers + self.socks:
            s.close()
        self.loop.close()

    def _drain(self) -> None:
        for r in self.readers:
            with contextlib.suppress(BlockingIOError):
                r.recv(65536)

    def time_fan_out(self, viewers: int, path: str) -> None:
        if path == "floor":
            wire = self.wire
            for s in self.socks:
                s.send(wire)
        elif path == "send_to_all":
            self.send(self.wire, self.fds)
        elif path == "send_groups_2_threads":
            rows = np.arange(viewers, dtype=np.int32)
            starts = np.array([0, viewers], np.int64)
            bounds, order = np.array([0, len(MESSAGE)], np.int64), np.zeros(1, np.int64)
            groups_backend()(MESSAGE, bounds, order, starts, rows, self.links)
        else:
            offer_to_all(self.subs, MESSAGE, keyframe=False)
        self._drain()
