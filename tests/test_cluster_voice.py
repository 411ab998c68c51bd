"""The voice in cluster mode with real processes: a real ``redis-server`` and two real
``avatar-engine serve --redis`` nodes. A viewer on the node that does not own the session hears
the owner's voice through the relay: its hello names the codec, and the AUDIO messages (and a
barge-in's VOICE_CUT) are the very bytes a viewer on the owner gets, ahead of their frames.
Every wait is bounded; no assertion is about wall-clock speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import httpx
import websockets

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Audio, Event, Frame, Hello
from avatar_engine.codec.wire import AudioCodec, EventKind
from avatar_engine.engine.voice_track import PACKET_MS
from test_cluster_nodes import (
    REDIS_SKIP,
    RedisProcess,
    known_everywhere,
    start_nodes,
    stats,
    stop_all,
    wait_for,
)

pytestmark = REDIS_SKIP

SENTENCE = "Hello there, this sentence is long enough to be cut in the middle of it."


class Listener:
    """A WebSocket viewer with ``audio=pcm`` that keeps every decoded message and its bytes,
    in arrival order."""

    def __init__(self, ws_url: str, session: str) -> None:
        self.url = f"{ws_url}/sessions/{session}/stream?audio=pcm"
        self.decoder = Decoder()
        self.messages: list[tuple[object, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(OSError, websockets.ConnectionClosed):
            async with websockets.connect(self.url) as ws:
                async for data in ws:
                    assert isinstance(data, bytes)
                    self.messages.append((self.decoder.feed(data), data))

    def audio(self) -> list[tuple[Audio, bytes]]:
        """AUDIO messages with their bytes."""
        return [(m, raw) for m, raw in self.messages if isinstance(m, Audio)]

    def frames(self) -> int:
        """Frames received."""
        return sum(isinstance(m, Frame) for m, _ in self.messages)

    def cut_at(self) -> int | None:
        """Index of the first VOICE_CUT event, if one came."""
        for i, (m, _) in enumerate(self.messages):
            if isinstance(m, Event) and m.kind == EventKind.VOICE_CUT:
                return i
        return None

    async def wait(self, predicate: object, what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            if time.monotonic() > deadline or (self._task is not None and self._task.done()):
                raise TimeoutError(f"{what} ({len(self.messages)} messages)")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def check_voice(messages: list[tuple[object, bytes]]) -> dict[int, bytes]:
    """The hello names PCM16; packets are in sequence, PACKET_MS apart on the stream clock,
    never after the frame of their time. Returns the AUDIO bytes by seq."""
    hellos = [m for m, _ in messages if isinstance(m, Hello)]
    assert hellos and all(h.audio is AudioCodec.PCM16 for h in hellos)
    audio: list[Audio] = []
    by_seq: dict[int, bytes] = {}
    frame_t = -1
    for message, raw in messages:
        if isinstance(message, Frame):
            frame_t = message.t_ms
        elif isinstance(message, Audio):
            assert message.codec is AudioCodec.PCM16
            assert message.t_ms >= frame_t  # an AUDIO message precedes the frame of its t
            audio.append(message)
            by_seq[message.seq] = raw
    assert len(audio) >= 40
    assert [a.seq for a in audio] == list(range(audio[0].seq, audio[0].seq + len(audio)))
    assert all(b.t_ms - a.t_ms == PACKET_MS for a, b in itertools.pairwise(audio))
    return by_seq


def test_a_relayed_viewer_hears_the_owners_voice_bytes(redis_server: RedisProcess) -> None:
    nodes = start_nodes(redis_server, 2)
    a, b = nodes

    async def scenario() -> None:
        created = httpx.post(f"{a.url}/sessions", json={"id": "voice1"}, timeout=5)
        assert created.status_code == 201, created.text
        known_everywhere(nodes, "voice1")
        # B relays the voice only from owners known to carry it (the registry's voice nodes).
        wait_for(lambda: stats(b)["cluster"]["voice_nodes"] == 2, 10, "node0 as a voice node")
        on_a, on_b = Listener(a.ws_url, "voice1"), Listener(b.ws_url, "voice1")
        for listener in (on_a, on_b):
            await listener.start()
            await listener.wait(lambda li=listener: li.frames() >= 10, "frames")
        assert stats(b)["cluster"]["relayed_subscribers"] == 1
        spoken = httpx.post(f"{a.url}/sessions/voice1/speak", json={"text": SENTENCE}, timeout=15)
        assert spoken.status_code == 202, spoken.text
        for listener in (on_a, on_b):
            await listener.wait(lambda li=listener: len(li.audio()) >= 50, "a second of voice")
        # A barge-in cuts the voice for both, with the same VOICE_CUT bytes.
        cut = {"text": "Stop.", "interrupt": True}
        assert httpx.post(f"{a.url}/sessions/voice1/speak", json=cut, timeout=15).status_code == 202
        for listener in (on_a, on_b):
            await listener.wait(lambda li=listener: li.cut_at() is not None, "VOICE_CUT")
        frames_then = on_b.frames()
        await on_b.wait(lambda: on_b.frames() >= frames_then + 10, "frames after the cut")
        for listener in (on_a, on_b):
            await listener.stop()
        cut_a, cut_b = on_a.cut_at(), on_b.cut_at()
        assert cut_a is not None and cut_b is not None
        assert on_a.messages[cut_a][1] == on_b.messages[cut_b][1]
        # The same AUDIO bytes on both nodes: encoded once on the owner, relayed unchanged.
        raw_a = check_voice(on_a.messages[:cut_a])
        raw_b = check_voice(on_b.messages[:cut_b])
        common = set(raw_a) & set(raw_b)
        assert len(common) >= 40
        assert all(raw_a[seq] == raw_b[seq] for seq in common)

    try:
        asyncio.run(scenario())
        assert all(n.proc.poll() is None for n in nodes)
    finally:
        stop_all(nodes)
