"""Cluster mode with real processes: a real ``redis-server`` on a free loopback port and real
``avatar-engine serve --redis`` nodes (issue 10).

Three nodes relay one publisher's frames byte for byte; killing the owner moves the session and
its viewers recover from a keyframe; stopping Redis leaves local service running and heals;
quotas hold across nodes. Every wait is bounded; no assertion is about wall-clock speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import signal
import subprocess
import time
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from avatar_engine.cluster.quotas import PUBLISH_FLUSH_S
from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import (
    Event,
    Frame,
    Hello,
    NeedKeyframe,
    encode_capture,
    encode_control,
    encode_publish_hello,
)
from avatar_engine.codec.wire import ControlOp
from server_process import ServerProcess, free_port

REDIS_SKIP = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not on PATH (Debian: apt-get install redis-server; CI installs it)",
)
pytestmark = REDIS_SKIP

STATE = 0  # EVENT kind


class RedisProcess:
    """``redis-server`` on a free loopback port, no persistence (tests own its whole life)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        """Start (or restart, empty, on the same port) and wait until it answers."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.wait_ready()

    def wait_ready(self, timeout: float = 10.0) -> None:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    client.close()
                    return
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_nodes(redis: RedisProcess, count: int, *extra: str) -> list[ServerProcess]:
    nodes = [
        ServerProcess("--redis", redis.url, "--node-id", f"node{i}", *extra) for i in range(count)
    ]
    try:
        for node in nodes:
            node.wait_ready(60)
    except BaseException:
        stop_all(nodes)
        raise
    return nodes


def stop_all(nodes: list[ServerProcess]) -> None:
    for node in nodes:
        with contextlib.suppress(Exception):
            if node.proc.poll() is None:
                node.stop()
            else:
                node._log.close()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if predicate():
                return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def stats(node: ServerProcess) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(node.url + "/stats", timeout=2).json()
    return body


def known_everywhere(nodes: list[ServerProcess], session: str) -> None:
    """Every node has the session in its registry cache (GET is proxied to the owner)."""
    wait_for(
        lambda: all(
            httpx.get(f"{n.url}/sessions/{session}", timeout=2).status_code == 200 for n in nodes
        ),
        10,
        f"session {session} on every node",
    )


class Publisher:
    """A WebSocket publisher sending a moving jaw at about 60 fps until stopped."""

    def __init__(self, ws_url: str, session: str, fps: float = 60.0) -> None:
        self.url = f"{ws_url}/sessions/{session}/publish"
        self.fps = fps
        self.jaw = 0.0
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        deadline = time.monotonic() + 5
        while self.sent < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        with contextlib.suppress(OSError, websockets.WebSocketException):
            async with websockets.connect(self.url) as ws:
                await ws.send(encode_publish_hello(1, ["jawOpen"], [], 60))
                seq = 0
                while True:
                    # A triangle wave: the jaw moves every frame, so every frame is sent.
                    phase = (seq % 120) / 60
                    self.jaw = 0.1 + 0.8 * (phase if phase <= 1 else 2 - phase)
                    values = np.array([self.jaw], np.float32)
                    await ws.send(encode_capture(1, seq & 0xFFFF, seq * 16, values))
                    self.sent += 1
                    seq += 1
                    await asyncio.sleep(1 / self.fps)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Viewer:
    """A WebSocket subscriber that keeps every decoded message with its raw bytes."""

    def __init__(self, ws_url: str, session: str, lod: int = 0) -> None:
        self.url = f"{ws_url}/sessions/{session}/stream?lod={lod}"
        self.decoder = Decoder()
        self.hello: Hello | None = None
        self.frames: list[tuple[Frame, bytes, float]] = []
        self.states: list[tuple[str, float]] = []
        self.need_keyframe = 0
        self.closed: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async with websockets.connect(self.url) as ws:
                async for data in ws:
                    assert isinstance(data, bytes)
                    message = self.decoder.feed(data)
                    now = time.monotonic()
                    if isinstance(message, Hello):
                        self.hello = message
                    elif isinstance(message, Frame):
                        self.frames.append((message, data, now))
                    elif isinstance(message, Event) and message.kind == STATE:
                        self.states.append((str(message.value), now))
                    elif isinstance(message, NeedKeyframe):
                        self.need_keyframe += 1
                        await ws.send(
                            encode_control(ControlOp.REQUEST_KEYFRAME, message.sid, message.lod)
                        )
        except websockets.ConnectionClosed as exc:
            self.closed = exc.rcvd.code if exc.rcvd else 1006
        except OSError:
            self.closed = 1006

    def jaw(self) -> float:
        assert self.hello is not None
        names = self.hello.schema.morph_names
        return float(self.decoder.stream(self.hello.sid).morphs[names.index("Jaw_Open")])

    async def wait_frames(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            if time.monotonic() > deadline or (self._task is not None and self._task.done()):
                raise TimeoutError(f"{len(self.frames)} of {count} frames (closed={self.closed})")
            await asyncio.sleep(0.02)

    async def wait_state(self, state: str, after: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, t in self.states:
                if name == state and t >= after:
                    return t
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no {state!r} state event (saw {self.states})")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def test_subscribers_on_other_nodes_receive_the_owners_bytes(redis_server: RedisProcess) -> None:
    nodes = start_nodes(redis_server, 3)
    a, b, c = nodes

    async def scenario() -> None:
        publisher = Publisher(a.ws_url, "relay1")
        await publisher.start()
        known_everywhere(nodes, "relay1")
        viewers = [Viewer(n.ws_url, "relay1") for n in nodes]
        for v in viewers:
            await v.start()
        for v in viewers:
            await v.wait_frames(60)
        await asyncio.sleep(0.5)
        direct, on_b, on_c = viewers
        # One sid everywhere: hellos agree, so the owner's frames decode on every node.
        assert direct.hello and on_b.hello and on_c.hello
        assert direct.hello.sid == on_b.hello.sid == on_c.hello.sid
        by_seq = [{f.seq: raw for f, raw, _ in v.frames if not f.keyframe} for v in viewers]
        common = set(by_seq[0]) & set(by_seq[1]) & set(by_seq[2])
        assert len(common) >= 30
        for seq in common:
            assert by_seq[0][seq] == by_seq[1][seq] == by_seq[2][seq]
        # Relayed viewers track the publisher like the direct one.
        for v in viewers:
            assert abs(v.jaw() - direct.jaw()) < 0.1
            assert v.need_keyframe == 0
        # A late joiner on a non-owner starts from a keyframe (asked of the owner).
        late = Viewer(c.ws_url, "relay1", lod=1)
        await late.start()
        await late.wait_frames(5)
        assert late.frames[0][0].keyframe
        assert late.need_keyframe == 0
        # REST inputs reaching a non-owner are answered by the owner.
        reply = httpx.post(f"{b.url}/sessions/relay1/emotion", json={"emotion": "happy"})
        assert reply.status_code == 202, reply.text
        reply = httpx.post(f"{c.url}/sessions/relay1/emotion", json={"emotion": "nope!"})
        assert reply.status_code in (400, 422), reply.text
        assert stats(b)["cluster"]["counters"]["proxied"] >= 1
        # Listing from any node shows the cluster's sessions (each node asked once).
        listed = httpx.get(f"{c.url}/sessions").json()
        assert [s["id"] for s in listed["sessions"]] == ["relay1"]
        assert "partial" not in listed
        for v in [*viewers, late]:
            await v.stop()
        await publisher.stop()

    try:
        asyncio.run(scenario())
        assert all(n.proc.poll() is None for n in nodes)
    finally:
        stop_all(nodes)


def test_publisher_on_a_non_owner_is_forwarded(redis_server: RedisProcess) -> None:
    nodes = start_nodes(redis_server, 2)
    a, b = nodes

    async def scenario() -> None:
        assert httpx.post(f"{a.url}/sessions", json={"id": "fwd1"}).status_code == 201
        known_everywhere(nodes, "fwd1")
        viewer = Viewer(a.ws_url, "fwd1")
        await viewer.start()
        await viewer.wait_frames(5)
        publisher = Publisher(b.ws_url, "fwd1")  # capture arrives at B, A animates
        await publisher.start()
        await viewer.wait_state("active", 0.0, 10)
        await asyncio.sleep(0.5)
        assert abs(viewer.jaw() - publisher.jaw) < 0.2
        assert stats(b)["cluster"]["counters"]["captures_forwarded"] > 10
        assert stats(b)["sessions"] == 0  # B never animated it
        # A WebRTC viewer on the non-owner is relayed too (keyframe-relative deltas).
        from avatar_engine.client.subscriber import DecodedFrame, subscribe_rtc

        rtc_frames: list[DecodedFrame] = []
        agen = subscribe_rtc(b.url, "fwd1", names=True, timeout=10)
        try:
            deadline = time.monotonic() + 15
            while len(rtc_frames) < 30 and time.monotonic() < deadline:
                item = await asyncio.wait_for(anext(agen), 10)
                if isinstance(item, DecodedFrame):
                    rtc_frames.append(item)
        finally:
            await agen.aclose()
        assert len(rtc_frames) == 30
        assert abs(rtc_frames[-1].morphs["Jaw_Open"] - viewer.jaw()) < 0.2
        await publisher.stop()
        await viewer.stop()

    try:
        asyncio.run(scenario())
    finally:
        stop_all(nodes)


def test_killed_owner_sessions_move_and_viewers_recover(redis_server: RedisProcess) -> None:
    nodes = start_nodes(redis_server, 3)
    a, b, c = nodes

    async def scenario() -> None:
        publisher = Publisher(a.ws_url, "move1")
        await publisher.start()
        known_everywhere(nodes, "move1")
        viewers = [Viewer(b.ws_url, "move1"), Viewer(c.ws_url, "move1")]
        for v in viewers:
            await v.start()
            await v.wait_frames(30)
        a.proc.kill()  # SIGKILL: no goodbye, the lease just stops being renewed
        killed = time.monotonic()
        await publisher.stop()
        for v in viewers:
            await v.wait_state("degraded", killed, 10)
        # A new owner took over: a keyframe (the new stream's first frame) reaches both.
        for v in viewers:
            deadline = time.monotonic() + 10
            while not any(f.keyframe and t > killed for f, _, t in v.frames):
                assert time.monotonic() < deadline, "no keyframe after the takeover"
                await asyncio.sleep(0.05)
        owners = [stats(n)["cluster"]["owned"] for n in (b, c)]
        assert sorted(owners) == [0, 1]
        new_owner = b if owners[0] else c
        # The publisher comes back through the other node; frames flow again, state active.
        other = c if new_owner is b else b
        publisher = Publisher(other.ws_url, "move1")
        await publisher.start()
        for v in viewers:
            await v.wait_state("active", killed, 10)
        before = [len(v.frames) for v in viewers]
        await asyncio.sleep(1.0)
        for v, n in zip(viewers, before, strict=True):
            assert len(v.frames) > n + 20
            assert abs(v.jaw() - publisher.jaw) < 0.2
            assert v.closed is None
        await publisher.stop()
        for v in viewers:
            await v.stop()

    try:
        asyncio.run(scenario())
    finally:
        stop_all(nodes)


def test_a_stopping_node_hands_its_sessions_over(redis_server: RedisProcess) -> None:
    """SIGTERM: the node releases its leases on the way out, so another node takes the session
    over at its next scan instead of waiting for the lease to lapse."""
    nodes = start_nodes(redis_server, 2)
    a, b = nodes

    async def scenario() -> None:
        assert httpx.post(f"{a.url}/sessions", json={"id": "bye1"}).status_code == 201
        known_everywhere(nodes, "bye1")
        viewer = Viewer(b.ws_url, "bye1")
        await viewer.start()
        await viewer.wait_frames(10)
        await asyncio.to_thread(a.stop)
        stopped = time.monotonic()
        await asyncio.to_thread(
            wait_for, lambda: stats(b)["cluster"]["owned"] == 1, 10, "B to take over"
        )
        deadline = time.monotonic() + 10
        while not any(f.keyframe and t > stopped for f, _, t in viewer.frames):
            assert time.monotonic() < deadline, "no keyframe from the new owner"
            await asyncio.sleep(0.05)
        assert viewer.closed is None and viewer.need_keyframe == 0
        await viewer.stop()

    try:
        asyncio.run(scenario())
    finally:
        stop_all(nodes)


def test_a_frozen_owner_loses_its_session_and_relays_it_after(redis_server: RedisProcess) -> None:
    """A partition, made with SIGSTOP: the others take the session over; when the old owner
    wakes up its lease is gone, so it stops animating and relays the new owner's stream to its
    own viewer (new hello, keyframe) and forwards its publisher's frames."""
    nodes = start_nodes(redis_server, 3)
    a, b, _ = nodes

    async def scenario() -> None:
        publisher = Publisher(a.ws_url, "split1")
        await publisher.start()
        known_everywhere(nodes, "split1")
        on_a, on_b = Viewer(a.ws_url, "split1"), Viewer(b.ws_url, "split1")
        for v in (on_a, on_b):
            await v.start()
            await v.wait_frames(20)
        a.proc.send_signal(signal.SIGSTOP)
        try:
            frozen = time.monotonic()
            await on_b.wait_state("degraded", frozen, 10)
            deadline = time.monotonic() + 10
            while not any(f.keyframe and t > frozen for f, _, t in on_b.frames):
                assert time.monotonic() < deadline, "no takeover while A was frozen"
                await asyncio.sleep(0.05)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        await asyncio.to_thread(
            wait_for, lambda: stats(a)["cluster"]["owned"] == 0, 10, "A to give the session up"
        )
        gave_up = time.monotonic()
        assert stats(a)["cluster"]["counters"]["lost_leases"] == 1
        # A's own viewer now gets the new owner's stream (after a new hello: a keyframe), and
        # A's publisher drives it through the new owner. (Frame counts are not compared: the
        # publisher's backlog from the freeze is rate-limited away, and a still face sends
        # nothing on a chained stream.)
        deadline = time.monotonic() + 10
        while not (
            any(f.keyframe and t > gave_up for f, _, t in on_a.frames)
            and sum(t > gave_up for _, _, t in on_a.frames) > 30
            and abs(on_a.jaw() - publisher.jaw) < 0.2
        ):
            assert time.monotonic() < deadline, "A's viewer did not follow the new owner"
            await asyncio.sleep(0.05)
        assert on_a.need_keyframe == 0
        assert abs(on_b.jaw() - publisher.jaw) < 0.2
        owned = [stats(n)["cluster"]["owned"] for n in nodes]
        assert sorted(owned) == [0, 0, 1]
        assert httpx.get(a.url + "/metrics", timeout=2).status_code == 200
        for v in (on_a, on_b):
            assert v.closed is None
            await v.stop()
        await publisher.stop()

    try:
        asyncio.run(scenario())
    finally:
        stop_all(nodes)


def test_redis_outage_keeps_local_service_and_heals(redis_server: RedisProcess) -> None:
    nodes = start_nodes(redis_server, 2)
    a, b = nodes

    def health(node: ServerProcess) -> str:
        return str(httpx.get(node.url + "/health", timeout=2).json()["status"])

    async def scenario() -> None:
        publisher = Publisher(a.ws_url, "calm1")
        await publisher.start()
        known_everywhere(nodes, "calm1")
        local, relayed = Viewer(a.ws_url, "calm1"), Viewer(b.ws_url, "calm1")
        for v in (local, relayed):
            await v.start()
            await v.wait_frames(20)

        # 1. Redis frozen for ~5 s (SIGSTOP): A keeps animating for its local viewer.
        redis_server.pause()
        try:
            await asyncio.to_thread(wait_for, lambda: health(a) == "degraded", 5, "degraded")
            during = len(local.frames)
            await asyncio.sleep(4.5)
            assert len(local.frames) > during + 100  # ~60 fps of local service
            assert abs(local.jaw() - publisher.jaw) < 0.2
        finally:
            redis_server.resume()
        await asyncio.to_thread(
            wait_for, lambda: health(a) == health(b) == "ok", 10, "healthy again"
        )
        # Still one owner (A re-claimed its lease; B waited), and the relay resumes.
        await asyncio.sleep(1.0)
        assert stats(a)["cluster"]["owned"] == 1 and stats(b)["cluster"]["owned"] == 0
        resumed = len(relayed.frames)
        await asyncio.sleep(1.0)
        assert len(relayed.frames) > resumed + 20
        assert abs(relayed.jaw() - publisher.jaw) < 0.2

        # 2. Redis killed and restarted empty on the same port: nodes re-register.
        redis_server.stop()
        await asyncio.sleep(2.0)
        during = len(local.frames)
        await asyncio.sleep(1.0)
        assert len(local.frames) > during + 30
        redis_server.start()  # same port, empty data
        await asyncio.to_thread(
            wait_for, lambda: health(a) == health(b) == "ok", 10, "healthy after restart"
        )
        await asyncio.to_thread(known_everywhere, nodes, "calm1")
        resumed = len(relayed.frames)
        late = Viewer(b.ws_url, "calm1")
        await late.start()
        await late.wait_frames(10)
        await asyncio.sleep(1.0)
        assert len(relayed.frames) > resumed + 20
        assert stats(a)["cluster"]["owned"] == 1 and stats(b)["cluster"]["owned"] == 0
        for v in (local, relayed, late):
            assert v.closed is None
            await v.stop()
        await publisher.stop()

    try:
        asyncio.run(scenario())
        assert all(n.proc.poll() is None for n in nodes)
    finally:
        stop_all(nodes)


def test_quotas_hold_across_nodes(redis_server: RedisProcess) -> None:
    nodes = start_nodes(redis_server, 3, "--max-sessions", "2", "--max-subscribers", "3")
    a, b, c = nodes

    async def scenario() -> None:
        assert httpx.post(f"{a.url}/sessions", json={"id": "q1"}).status_code == 201
        assert httpx.post(f"{b.url}/sessions", json={"id": "q2"}).status_code == 201
        refused = httpx.post(f"{c.url}/sessions", json={"id": "q3"})
        assert refused.status_code == 429, refused.text
        assert "cluster-wide" in refused.json()["detail"]
        known_everywhere(nodes, "q1")
        viewers = [Viewer(n.ws_url, "q1") for n in nodes]
        for v in viewers:
            await v.start()
            await v.wait_frames(3)
        extra = Viewer(b.ws_url, "q2")
        await extra.start()
        deadline = time.monotonic() + 10
        while extra.closed is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert extra.closed == 4429
        # Deleting a session (from any node) frees its slot everywhere.
        assert httpx.delete(f"{c.url}/sessions/q2").status_code == 204
        assert httpx.post(f"{c.url}/sessions", json={"id": "q3"}).status_code == 201
        for v in viewers:
            await v.stop()

    try:
        asyncio.run(scenario())
    finally:
        stop_all(nodes)


RATE_FPS = 45
"""Each publisher of the global-rate test: under a node's limit of 50/s alone, not together."""


def test_publish_rate_is_global(redis_server: RedisProcess) -> None:
    """Two publishers of one tenant on two nodes, each under the limit alone, together over
    it: the nodes' shared per-second windows in Redis refuse the excess."""
    nodes = start_nodes(redis_server, 2, "--max-publish-rate", "50")

    def accepted() -> int:
        return sum(int(stats(n)["publish"]["messages"]) for n in nodes)

    async def scenario() -> None:
        pubs = [Publisher(n.ws_url, f"rate{i}", fps=RATE_FPS) for i, n in enumerate(nodes)]
        for p in pubs:
            await p.start()
        start = time.monotonic()
        before, sent0 = accepted(), sum(p.sent for p in pubs)
        await asyncio.sleep(3.0)
        taken, sent = accepted() - before, sum(p.sent for p in pubs) - sent0
        elapsed = time.monotonic() - start
        for p in pubs:
            await p.stop()
        rejected = sum(int(stats(n)["publish"]["rejected"]) for n in nodes)
        # Each publisher alone is under a node's limit, so any refusal is the global window's.
        assert rejected > 0
        # Accepted: at most 50/s over the span, one window's worth for its two partial windows,
        # and per window what both publishers send between two flushes of the counts. A bound
        # on what was taken, not a share of what was sent: a loaded machine sends less than
        # 90/s, and as the offer nears 50/s the share refused tends to nothing. Unloaded, the
        # offer (about 270) is above the bound, so a node counting only its own is caught.
        per_window = 2 * RATE_FPS * PUBLISH_FLUSH_S
        bound = 50 * elapsed + 50 + per_window * (math.ceil(elapsed) + 1)
        assert taken <= bound, (taken, sent, bound)

    try:
        asyncio.run(scenario())
    finally:
        stop_all(nodes)


def test_single_process_mode_is_unchanged_without_redis() -> None:
    node = ServerProcess().wait_ready()
    try:
        body = httpx.get(node.url + "/health", timeout=2).json()
        assert body["status"] == "ok" and "cluster" not in body
        assert "cluster" not in stats(node)
    finally:
        node.stop()
