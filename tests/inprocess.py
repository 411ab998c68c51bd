"""The server in process, on a fake clock: a :class:`Runtime`, its ASGI app over httpx, and
viewers that decode what the runtime queues for them.

No sockets, no subprocess, no wall time: a test moves the clock and calls the tick itself, as
websockets' ``test_protocol.py`` drives its protocol. The app runs without its lifespan, so no
scheduler ticks behind the test's back; an input route's "kick" runs its tick at the current
fake time on the harness's event loop, as it would in the server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from avatar_engine.client.subscriber import DecodedEvent, DecodedFrame
from avatar_engine.client.subscriber import _Session as StreamDecoder
from avatar_engine.codec.wire import AudioCodec, DeltaMode
from avatar_engine.server.app import create_app
from avatar_engine.server.auth import ANONYMOUS, Principal
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.runtime import Runtime
from avatar_engine.server.streams import Subscriber

PASSES = 8
"""Loop iterations given to pending tasks before a delivery (a WebSocket route's reader and
writer take a few hops per message)."""

OPEN_TIMEOUT_S = 30.0
"""Bound on a WebSocket handshake in process (a worker thread on a loaded machine)."""


class FakeClock:
    """The server's clock, moved only by the test (``sleep`` advances it)."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


@dataclass(eq=False)
class Received:
    """Everything a client decoded so far, in the order a transport delivered it."""

    decoder: StreamDecoder = field(default_factory=lambda: StreamDecoder(names=True))
    frames: list[DecodedFrame] = field(default_factory=list)
    events: list[DecodedEvent] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    """Every message in the order a transport would have sent them."""

    def feed(self, message: bytes, received: float) -> None:
        self.messages.append(message)
        item = self.decoder.feed(message, received)
        if isinstance(item, DecodedFrame):
            self.frames.append(item)
        elif isinstance(item, DecodedEvent):
            self.events.append(item)

    def said(self, kind: str) -> list[Any]:
        """The values of the events of one kind, in order."""
        return [e.value for e in self.events if e.kind == kind]

    def peak(self, morph: str) -> float:
        return max((f.morphs.get(morph, 0.0) for f in self.frames), default=0.0)


@dataclass(eq=False)
class Viewer(Received):
    """One in-memory subscriber: what the runtime queued in its outbox, decoded."""

    sub: Subscriber = field(kw_only=True)


class InProcessSocket(Received):
    """A WebSocket client of the app, spoken to over ASGI on the harness's loop: the route's
    reader and writer tasks run beside the test's ticks, never in another thread."""

    def __init__(self, server: InProcessServer, path: str, query: str = "") -> None:
        super().__init__()
        self._server = server
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._incoming.put_nowait({"type": "websocket.connect"})
        self.close_code: int | None = None
        self.close_reason = ""
        self.accepted = False
        self._sent = asyncio.Event()
        scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": path,
            "raw_path": path.encode(), "query_string": query.encode(), "headers": [],
            "server": ("in-process", 80), "client": ("127.0.0.1", 50000), "subprotocols": [],
            "root_path": "",
        }  # fmt: skip
        self.task = server.loop.create_task(server.app(scope, self._incoming.get, self._send))
        server.sockets.append(self)

    async def _send(self, message: dict[str, Any]) -> None:
        self._sent.set()
        if message["type"] == "websocket.accept":
            self.accepted = True
        elif message["type"] == "websocket.send" and message.get("bytes") is not None:
            self.feed(message["bytes"], self._server.clock.t)
        elif message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            self.close_reason = message.get("reason") or ""

    async def opened(self) -> None:
        """Wait until the route answered the handshake (accepted, closed or gone). The route's
        dependencies run in a worker thread, so this can take a real moment; what follows the
        accept runs on the loop and is delivered by the passes of ``deliver``."""
        while not (self.accepted or self.close_code is not None or self.task.done()):
            self._sent.clear()
            await asyncio.wait_for(self._sent.wait(), OPEN_TIMEOUT_S)

    def send(self, data: bytes | str) -> None:
        """A client message (bytes, or text, which the stream route refuses)."""
        key = "bytes" if isinstance(data, bytes) else "text"
        self._incoming.put_nowait({"type": "websocket.receive", key: data})
        self._server.deliver()

    def disconnect(self) -> None:
        """The client goes away (the route's reader sees ``websocket.disconnect``)."""
        self._incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})


class InProcessServer:
    """A runtime and its app on a fake clock; ``advance`` ticks and delivers to viewers."""

    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.runtime = Runtime(
            ServerOptions(livelink_port=0, vmc_port=0, **options), clock=self.clock
        )
        self.app = create_app(self.runtime)
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://in-process"
        )
        self.viewers: list[Viewer] = []
        self.sockets: list[InProcessSocket] = []

    def close(self) -> None:
        for sock in self.sockets:
            sock.disconnect()
        self.deliver()
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()

    # -- HTTP ------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.loop.run_until_complete(self.http.request(method, path, **kwargs))
        self.deliver()
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    # -- viewers and time ------------------------------------------------------------------

    def connect(self, path: str, query: str = "") -> InProcessSocket:
        """Open a WebSocket route (e.g. ``/sessions/a/stream``) in process."""
        sock = InProcessSocket(self, path, query)
        self.loop.run_until_complete(sock.opened())
        self.deliver()
        return sock

    def watch(
        self,
        session: str,
        *,
        lod: int = 0,
        mode: DeltaMode = DeltaMode.CHAINED,
        bits: int | None = None,
        audio: AudioCodec = AudioCodec.OFF,
        principal: Principal = ANONYMOUS,
    ) -> Viewer:
        """Subscribe an in-memory viewer as the WebSocket stream route does."""
        sub = self.runtime.subscribe(
            principal, session, lod=lod, mode=mode,
            bits=self.runtime.options.quant_bits if bits is None else bits,
            transport="test", audio=audio,
        )  # fmt: skip
        viewer = Viewer(sub=sub)
        self.viewers.append(viewer)
        self.deliver()
        return viewer

    def advance(self, seconds: float, fps: float = 60.0) -> None:
        """Move the clock ``seconds`` ahead, ticking at ``fps`` as the scheduler would."""
        end = self.clock.t + seconds
        while self.clock.t + 1e-9 < end:
            self.clock.t = min(end, self.clock.t + 1 / fps)
            self.runtime.tick(self.clock.t)
            self.deliver()

    def deliver(self) -> None:
        """Hand every viewer what its outbox holds (what its writer task would send)."""
        self.loop.run_until_complete(self._deliver())

    async def _deliver(self) -> None:
        for _ in range(PASSES):  # let kicks, and the routes' socket tasks, run first
            await asyncio.sleep(0)
        for viewer in self.viewers:
            while True:
                taking = asyncio.ensure_future(viewer.sub.outbox.next_messages())
                await asyncio.sleep(0)  # done at once if anything is pending
                if not taking.done():
                    taking.cancel()
                    break
                controls, frame = taking.result()
                if not controls and frame is None:
                    break  # closed
                for message in controls + ([frame] if frame is not None else []):
                    viewer.feed(message, self.clock.t)
