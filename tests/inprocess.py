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
class Viewer:
    """One in-memory subscriber and everything decoded from its outbox so far."""

    sub: Subscriber
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

    def close(self) -> None:
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
        viewer = Viewer(sub)
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
        await asyncio.sleep(0)  # let kicks scheduled by a route run first
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
