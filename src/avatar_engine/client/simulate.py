"""``avatar-engine simulate``: a real load against a running server, from other processes.

Publishers (Live Link UDP packets or WebSocket publish) drive ``--sessions`` sessions at 60 fps
with a jaw that flips between two values every 250 ms on a shared schedule. Subscriber worker
processes open ``--subscribers`` streams (WebSocket or WebRTC) and measure, on this machine's
monotonic clock (shared by every process):

- publish-to-receive: when a subscriber sees the jaw flip, minus the scheduled flip time;
- tick-to-receive: arrival minus the server's encode time (``/stats`` gives the server's
  monotonic start, frames carry milliseconds since then);
- frames, bytes per frame, sequence gaps (skipped or lost frames).

It also samples the server's CPU time and RSS from ``/proc`` (same machine). Loops are bounded
by ``--duration``; traffic goes only to the URL given (loopback by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import websockets

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import (
    Frame,
    Hello,
    NeedKeyframe,
    encode_capture,
    encode_control,
    encode_publish_hello,
)
from avatar_engine.codec.wire import ControlOp
from avatar_engine.formats.livelink import build_packet
from avatar_engine.rigs.arkit import ARKIT_NAMES

FLIP_S = 0.25
LOW, HIGH = 0.1, 0.8
JAW = ARKIT_NAMES.index("jawOpen")
BROW = ARKIT_NAMES.index("browInnerUp")


def jaw_at(t: float, t0: float) -> float:
    return HIGH if int((t - t0) / FLIP_S) % 2 else LOW


class FlipDetector:
    """Publish-to-receive latency: the first frame after a scheduled jaw flip that has moved
    towards the new value (by ``MOVED``), minus the flip time. Smoothing in the animate step
    does not count as delay: the response has started once the jaw moves."""

    MOVED = 0.02

    __slots__ = ("_base", "_detected", "_last_jaw", "_last_k", "t0")

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self._last_k = -1
        self._detected = -1
        self._last_jaw: float | None = None
        self._base = 0.0

    def observe(self, jaw: float, now: float) -> float | None:
        k = int((now - self.t0) / FLIP_S)
        if k != self._last_k:
            self._base = jaw if self._last_jaw is None else self._last_jaw
            self._last_k = k
        self._last_jaw = jaw
        target = HIGH if k % 2 else LOW
        direction = 1.0 if target > self._base else -1.0
        if k > self._detected and (jaw - self._base) * direction >= self.MOVED and k > 0:
            self._detected = k
            return (now - (self.t0 + k * FLIP_S)) * 1e3
        return None


@dataclass
class WorkerResult:
    frames: int = 0
    bytes: int = 0
    gaps: int = 0
    connected: int = 0
    failed: int = 0
    tick_to_receive_ms: list[float] = field(default_factory=list)
    publish_to_receive_ms: list[float] = field(default_factory=list)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values)
    return {f"p{p}": round(float(np.percentile(arr, p)), 3) for p in (50, 90, 99)} | {
        "max": round(float(arr.max()), 3)
    }


async def _ws_subscriber(url: str, end: float, t0: float, server_t0: float, out: WorkerResult,
                         jaw_index: list[int]) -> None:  # fmt: skip
    decoder = Decoder()
    hello: Hello | None = None
    last_seq: int | None = None
    flips = FlipDetector(t0)
    try:
        async with websockets.connect(url, max_size=1 << 20) as ws:
            out.connected += 1
            while (remaining := end - time.monotonic()) > 0:
                try:
                    data = await asyncio.wait_for(ws.recv(), remaining)
                except TimeoutError:
                    break
                now = time.monotonic()
                assert isinstance(data, bytes)
                message = decoder.feed(data)
                if isinstance(message, Hello):
                    hello = message
                    if not jaw_index:
                        jaw_index.append(hello.schema.morph_names.index("Jaw_Open"))
                elif isinstance(message, NeedKeyframe):
                    await ws.send(
                        encode_control(ControlOp.REQUEST_KEYFRAME, message.sid, message.lod)
                    )
                elif isinstance(message, Frame) and hello is not None:
                    out.frames += 1
                    out.bytes += len(data)
                    if last_seq is not None and (message.seq - last_seq) % 65536 > 1:
                        out.gaps += (message.seq - last_seq) % 65536 - 1
                    last_seq = message.seq
                    out.tick_to_receive_ms.append((now - (server_t0 + message.t_ms / 1e3)) * 1e3)
                    jaw = float(decoder.stream(message.sid).morphs[jaw_index[0]])
                    if (latency := flips.observe(jaw, now)) is not None:
                        out.publish_to_receive_ms.append(latency)
    except (OSError, websockets.WebSocketException):
        out.failed += 1


async def _rtc_subscriber(base: str, session: str, end: float, t0: float, server_t0: float,
                          out: WorkerResult) -> None:  # fmt: skip
    from avatar_engine.client.subscriber import DecodedFrame, subscribe_rtc

    last_seq: int | None = None
    flips = FlipDetector(t0)
    try:
        agen = subscribe_rtc(base, session, names=True)
        connected = False
        while (remaining := end - time.monotonic()) > 0:
            try:
                item = await asyncio.wait_for(anext(agen), remaining)
            except (TimeoutError, StopAsyncIteration):
                break
            if not connected:
                out.connected += 1
                connected = True
            if not isinstance(item, DecodedFrame):
                continue
            out.frames += 1
            out.bytes += item.size
            if last_seq is not None and (item.seq - last_seq) % 65536 > 1:
                out.gaps += (item.seq - last_seq) % 65536 - 1
            last_seq = item.seq
            out.tick_to_receive_ms.append((item.received - (server_t0 + item.t_ms / 1e3)) * 1e3)
            jaw = item.morphs.get("Jaw_Open", 0.0)
            if (latency := flips.observe(jaw, item.received)) is not None:
                out.publish_to_receive_ms.append(latency)
        await agen.aclose()
    except Exception:
        out.failed += 1


def _worker(args: dict[str, Any], pairs: list[tuple[str, str]], queue: mp.Queue) -> None:  # type: ignore[type-arg]
    """Subscribe to each (session, node URL) pair; results are reported per node URL."""

    async def run() -> dict[str, WorkerResult]:
        results: dict[str, WorkerResult] = {}
        end = args["start"] + args["duration"]
        jaw_index: list[int] = []
        tasks = []
        for session, base in pairs:
            out = results.setdefault(base, WorkerResult())
            ws_base = base.replace("http://", "ws://").replace("https://", "wss://")
            if args["transport"] == "webrtc":
                coro = _rtc_subscriber(base, session, end, args["t0"], args["server_t0"], out)
            else:
                url = f"{ws_base}/sessions/{session}/stream?lod={args['lod']}"
                coro = _ws_subscriber(url, end, args["t0"], args["server_t0"], out, jaw_index)
            tasks.append(asyncio.create_task(coro))
        await asyncio.gather(*tasks)
        return results

    queue.put({url: asdict(r) for url, r in asyncio.run(run()).items()})


async def _publish_livelink(
    host: str, port: int, subjects: list[str], t0: float, end: float
) -> int:
    """One UDP socket per subject, like one phone per face (receivers rate-limit per sender)."""
    socks = []
    for _ in subjects:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        socks.append(sock)
    values = np.zeros(61, np.float32)
    sent = 0
    frame = 0
    while time.monotonic() < end:
        now = time.monotonic()
        values[JAW] = jaw_at(now, t0)
        values[BROW] = 0.5 + 0.4 * math.sin(2 * math.pi * (now - t0))  # always moving
        for sock, subject in zip(socks, subjects, strict=True):
            try:
                sock.sendto(build_packet("sim", subject, values, frame_number=frame), (host, port))
                sent += 1
            except BlockingIOError:
                pass
        frame += 1
        await asyncio.sleep(max(0.0, t0 + frame / 60 - time.monotonic()))
    for sock in socks:
        sock.close()
    return sent


async def _publish_ws(ws_base: str, sessions: list[str], t0: float, end: float) -> int:
    conns = [await websockets.connect(f"{ws_base}/sessions/{s}/publish") for s in sessions]
    for ws in conns:
        await ws.send(encode_publish_hello(1, ["jawOpen", "browInnerUp"], [], 60))
    sent = 0
    seq = 0
    while time.monotonic() < end:
        now = time.monotonic()
        payload = encode_capture(1, seq & 0xFFFF, int((now - t0) * 1000) & 0xFFFFFFFF,
                                 np.array([jaw_at(now, t0),
                                           0.5 + 0.4 * math.sin(2 * math.pi * (now - t0))],
                                          np.float32))  # fmt: skip
        for ws in conns:
            await ws.send(payload)
            sent += 1
        seq += 1
        await asyncio.sleep(max(0.0, t0 + seq / 60 - time.monotonic()))
    for ws in conns:
        await ws.close()
    return sent


def _proc_sample(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of a local process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        with open(f"/proc/{pid}/status") as fh:
            rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
        return cpu, rss
    except (OSError, StopIteration, IndexError, ValueError):
        return math.nan, math.nan


def run_simulation(args: argparse.Namespace) -> dict[str, Any]:
    base = args.url.rstrip("/")
    host = urlsplit(base).hostname or "127.0.0.1"
    stats = httpx.get(base + "/stats", timeout=10).json()
    server_t0, pid = float(stats["clock"]["monotonic_t0"]), int(stats["pid"])
    sessions = [f"sim-{i}" for i in range(args.sessions)]
    with httpx.Client(base_url=base, timeout=10) as client:
        for s in sessions:
            client.delete(f"/sessions/{s}")
            client.post("/sessions", json={"id": s}).raise_for_status()
    t0 = time.monotonic()
    start = t0 + 1.0  # subscribers connect during the first second
    end = start + args.duration
    # Subscribers go round-robin to --subscribe-url nodes (cluster mode), else to --url.
    sub_urls = [u.rstrip("/") for u in (args.subscribe_url or [base])]
    pairs = [(sessions[i % len(sessions)], sub_urls[i % len(sub_urls)])
             for i in range(args.subscribers)]  # fmt: skip
    node_pids = {url: int(httpx.get(url + "/stats", timeout=10).json()["pid"])
                 for url in dict.fromkeys([base, *sub_urls])}  # fmt: skip
    workers = max(1, min(args.workers, args.subscribers))
    queue: mp.Queue = mp.get_context("spawn").Queue()  # type: ignore[type-arg]
    common = {"url": base, "transport": args.transport, "lod": args.lod, "t0": t0,
              "server_t0": server_t0, "start": start, "duration": args.duration}  # fmt: skip
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(common, pairs[w::workers], queue), daemon=True)
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    cpu0, rss0 = _proc_sample(pid)
    node_cpu0 = {url: _proc_sample(p) for url, p in node_pids.items()}
    wall0 = time.monotonic()
    if args.publish == "livelink":
        sent = asyncio.run(_publish_livelink(host, args.livelink_port, sessions, t0, end))
    elif args.publish == "ws":
        ws_base = base.replace("http://", "ws://").replace("https://", "wss://")
        sent = asyncio.run(_publish_ws(ws_base, sessions, t0, end))
    else:
        time.sleep(max(0.0, end - time.monotonic()))
        sent = 0
    cpu1, rss1 = _proc_sample(pid)
    node_cpu1 = {url: _proc_sample(p) for url, p in node_pids.items()}
    wall1 = time.monotonic()
    per_worker = [queue.get(timeout=args.duration + 60) for _ in procs]
    for proc in procs:
        proc.join(timeout=10)
    by_url: dict[str, WorkerResult] = {}
    for worker in per_worker:
        for url, r in worker.items():
            into = by_url.setdefault(url, WorkerResult())
            for name in ("frames", "bytes", "gaps", "connected", "failed"):
                setattr(into, name, getattr(into, name) + r[name])
            into.tick_to_receive_ms += r["tick_to_receive_ms"]
            into.publish_to_receive_ms += r["publish_to_receive_ms"]
    results = [asdict(r) for r in by_url.values()]
    total = WorkerResult()
    for r in results:
        total.frames += r["frames"]
        total.bytes += r["bytes"]
        total.gaps += r["gaps"]
        total.connected += r["connected"]
        total.failed += r["failed"]
        total.tick_to_receive_ms += r["tick_to_receive_ms"]
        total.publish_to_receive_ms += r["publish_to_receive_ms"]
    server_stats = httpx.get(base + "/stats", timeout=10).json()
    return {
        "sessions": args.sessions,
        "subscribers": args.subscribers,
        "connected": total.connected,
        "failed": total.failed,
        "transport": args.transport,
        "publish": args.publish,
        "duration_s": args.duration,
        "published": sent,
        "frames_received": total.frames,
        "frames_per_s": round(total.frames / args.duration, 1),
        "frames_per_subscriber_per_s": round(
            total.frames / args.duration / max(1, args.subscribers), 2
        ),
        "gaps": total.gaps,
        "server_skipped": server_stats["frames"]["skipped"],
        "bytes_per_frame": round(total.bytes / max(1, total.frames), 1),
        "tick_to_receive_ms": _percentiles(total.tick_to_receive_ms),
        "publish_to_receive_ms": _percentiles(total.publish_to_receive_ms),
        "server_cpu_percent": round(100 * (cpu1 - cpu0) / max(1e-9, wall1 - wall0), 1),
        "server_rss_mib": {"start": round(rss0, 1), "end": round(rss1, 1)},
        "server_tick": server_stats["tick"],
        **({"nodes": _node_report(by_url, node_cpu0, node_cpu1, wall1 - wall0, args)}
           if args.subscribe_url else {}),
    }  # fmt: skip


def _node_report(
    by_url: dict[str, WorkerResult],
    cpu0: dict[str, tuple[float, float]],
    cpu1: dict[str, tuple[float, float]],
    wall: float,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Per node (cluster mode): its subscribers' latency and frames, and its CPU and RSS."""
    report: dict[str, dict[str, Any]] = {}
    for url in cpu0:
        r = by_url.get(url, WorkerResult())
        report[url] = {
            "subscribers": r.connected,
            "frames_per_s": round(r.frames / args.duration, 1),
            "gaps": r.gaps,
            "tick_to_receive_ms": _percentiles(r.tick_to_receive_ms),
            "publish_to_receive_ms": _percentiles(r.publish_to_receive_ms),
            "cpu_percent": round(100 * (cpu1[url][0] - cpu0[url][0]) / max(1e-9, wall), 1),
            "rss_mib": round(cpu1[url][1], 1),
        }
    return report


def _cmd_simulate(args: argparse.Namespace) -> int:
    try:
        report = run_simulation(args)
    except httpx.HTTPError as exc:
        print(f"avatar-engine: error: {args.url}: {exc}")
        return 2
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>30}: {value}")
    return 0


def add_simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="run a real load against a running server and measure it")
    p.add_argument("--url", default="http://127.0.0.1:8766", help="the server (loopback)")
    p.add_argument(
        "--subscribe-url",
        action="append",
        help="cluster mode: a node to subscribe through (repeat to spread subscribers "
        "round-robin; sessions and publishers stay on --url)",
    )
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--subscribers", type=int, default=100, help="total, spread over sessions")
    p.add_argument("--transport", choices=["ws", "webrtc"], default="ws")
    p.add_argument("--publish", choices=["livelink", "ws", "none"], default="livelink")
    p.add_argument("--livelink-port", type=int, default=11111)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of measurement")
    p.add_argument("--lod", type=int, choices=range(4), default=0)
    p.add_argument("--workers", type=int, default=2, help="subscriber processes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_simulate)
