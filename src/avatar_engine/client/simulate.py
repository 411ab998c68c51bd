"""``avatar-engine simulate``: a real load against a running server, from other processes.

Publishers (Live Link UDP packets or WebSocket publish) drive ``--sessions`` sessions at 60 fps
with a jaw that flips between two values every 250 ms on a shared schedule. Subscriber worker
processes open ``--subscribers`` streams (WebSocket or WebRTC) and measure, on this machine's
monotonic clock (shared by every process):

- publish-to-receive: when a subscriber sees the jaw flip, minus when the Live Link publisher
  sent that session's flip packet (``schedule_to_receive`` beside it: minus the flip's scheduled
  time, which adds the publisher's own lateness and its serial sends; with ``--publish ws``
  only that one is known, and ``publish_to_receive`` is timed from the schedule too);
- tick-to-receive: arrival minus the server's encode time (``/stats`` gives the server's
  monotonic start, frames carry milliseconds since then);
- frames, bytes per frame, sequence gaps (skipped or lost frames).

It also samples the server's CPU time and RSS from ``/proc`` (same machine). Loops are bounded
by ``--duration``; traffic goes only to the URL given (loopback by default).

WebSocket viewers and Live Link publishers are the lean ones of :mod:`avatar_engine.client.lean`
(raw sockets, one ``epoll`` loop per process, header-only parsing, prebuilt packets), and every
load process reports its own CPU, so the report shows whether the generator or the server was
the limit. WebRTC viewers are real aiortc peers whose frames take the lean receive path of
:mod:`avatar_engine.client.rtc_lean` (many per process, their CPU reported likewise).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import numpy.typing as npt
import websockets

from avatar_engine.client.lean import (
    LiveLinkPublisher,
    jaw_at,
    run_viewers,
    tick_latencies,
)
from avatar_engine.client.rtc_lean import run_rtc_viewers
from avatar_engine.codec.messages import encode_capture, encode_publish_hello

SendLag = Callable[[str, int], float | None]
"""How long after flip ``k``'s scheduled time a session's packet was sent (ms), if known."""

LINGER_S = 2.0
"""Viewers stay connected this long after the window, while /stats is read (its frame counters
sum over connected viewers)."""


@dataclass
class NodeResult:
    """What the viewers of one node saw (merged over the load processes)."""

    frames: int = 0
    bytes: int = 0
    audio: int = 0
    gaps: int = 0
    viewers_with_gaps: int = 0
    connected: int = 0
    failed: int = 0
    closed: int = 0
    bad: int = 0
    tick_to_receive_ms: list[npt.NDArray[np.float64]] = field(default_factory=list)
    flip_receipts: list[tuple[str, int, float]] = field(default_factory=list)
    """Each probe's first frame after a flip: (session, flip number, ms after its schedule),
    as the viewer processes report them (``ViewerTotals.flip_receipts``)."""

    COUNTS = ("frames", "bytes", "audio", "gaps", "viewers_with_gaps", "connected", "failed",
              "closed", "bad")  # fmt: skip

    def add(self, r: dict[str, Any]) -> None:
        """Merge one load process's result for this node: counters summed, latencies kept."""
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + int(r.get(name, 0)))
        self.tick_to_receive_ms.append(tick_latencies([r]))
        self.flip_receipts += [tuple(x) for x in r["flip_receipts"]]

    def ticks(self) -> npt.NDArray[np.float64]:
        """Every tick-to-receive latency (ms) the merged processes measured, as one array."""
        return np.concatenate(self.tick_to_receive_ms) if self.tick_to_receive_ms else np.zeros(0)


def flip_latencies(receipts: list[tuple[str, int, float]], send_lag: SendLag | None,
                   ) -> tuple[dict[str, float], dict[str, float], int]:  # fmt: skip
    """Percentiles of publish-to-receive (from each flip packet's send) and of
    schedule-to-receive (from the flip's scheduled time), and how many receipts were timed from
    the schedule for want of a send time (all of them without ``send_lag``)."""
    schedule = [ms for _, _, ms in receipts]
    publish = []
    unknown = 0
    for session, k, ms in receipts:
        lag = send_lag(session, k) if send_lag is not None else None
        unknown += lag is None
        publish.append(ms - (lag or 0.0))
    return _percentiles(publish), _percentiles(schedule), unknown


def _percentiles(values: Any) -> dict[str, float]:
    arr = np.asarray(values, np.float64)
    if not arr.size:
        return {}
    return {f"p{p}": round(float(np.percentile(arr, p)), 3) for p in (50, 90, 99)} | {
        "max": round(float(arr.max()), 3)
    }


def _load_process(kind: str, spec: dict[str, Any], ready: Any, shared: Any, queue: Any) -> None:
    """A viewer process: connects, says it is ready, then measures the window the coordinator
    sets in ``shared`` (start, end; zeros until known)."""

    def window_of() -> tuple[float, float] | None:
        return (shared[0], shared[1]) if shared[1] > 0 else None

    run = run_viewers if kind == "ws" else run_rtc_viewers
    result = run(spec, on_ready=lambda: ready.put(1), window_of=window_of)
    queue.put((spec["base"], result))


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


def proc_sample(pid: int) -> tuple[float, float]:
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


def _viewer_specs(args: argparse.Namespace, sessions: list[str], sub_urls: list[str],
                  common: dict[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
    """Viewers round-robin over sessions and nodes, each node's viewers split over its share of
    the load processes. The first viewer of each probed session on a node is a probe (full
    decode, publish-to-receive): every session, or ``--probes`` of them spread evenly (a
    probe's decode costs the generator about 0.1 ms a frame, and a hundred of them delay each
    other's reading); the first ``--stalled`` viewers never read."""
    per_node: dict[str, list[list[Any]]] = {u: [] for u in sub_urls}
    probed: set[tuple[str, str]] = set()
    every = max(1, len(sessions) // args.probes) if args.probes else 1
    for i in range(args.subscribers):
        session, base = sessions[i % len(sessions)], sub_urls[i % len(sub_urls)]
        stall = i < args.stalled
        probe = not stall and (i % len(sessions)) % every == 0 and (session, base) not in probed
        if probe:
            probed.add((session, base))
        path = f"/sessions/{session}/stream?lod={args.lod}"
        per_node[base].append([path, probe, stall, session])
    specs = []
    share = max(1, args.workers // len(sub_urls))
    for base, viewers in per_node.items():
        parts = max(1, min(share, len(viewers)))
        for w in range(parts):
            mine = viewers[w::parts]
            if not mine:
                continue
            split = urlsplit(base)
            specs.append(common | {
                "base": base, "host": split.hostname or "127.0.0.1", "port": split.port or 80,
                "paths": [v[:3] for v in mine], "sessions": [v[3] for v in mine],
            })  # fmt: skip
    return specs


def run_simulation(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load the ``simulate`` flags in ``args`` describe against a running server and
    return its report (the module docstring lists what is measured).

    The server's sessions ``sim-0..`` are re-created, viewer processes connect while capture
    already flows, then publishing and measuring run for ``--duration`` seconds.
    """
    base = args.url.rstrip("/")
    stats = httpx.get(base + "/stats", timeout=10).json()
    server_t0, pid = float(stats["clock"]["monotonic_t0"]), int(stats["pid"])
    sessions = _fresh_sessions(base, args.sessions)
    # Subscribers go round-robin to --subscribe-url nodes (cluster mode), else to --url.
    sub_urls = [u.rstrip("/") for u in (args.subscribe_url or [base])]
    node_pids = {url: int(httpx.get(url + "/stats", timeout=10).json()["pid"])
                 for url in dict.fromkeys([base, *sub_urls])}  # fmt: skip
    t0 = time.monotonic()
    common = {"t0": t0, "server_t0": server_t0, "limit_s": args.connect_s + args.duration + 90,
              "linger_s": LINGER_S, "receive": args.viewer_pass,
              "wake_ms": args.viewer_wake_ms}  # fmt: skip
    load = _LoadProcesses.start(args.transport, _viewer_specs(args, sessions, sub_urls, common))
    host = urlsplit(base).hostname or "127.0.0.1"
    publisher = LiveLinkPublisher(host, args.livelink_port, sessions, t0)
    load.wait_connected(args, publisher)
    ticks_before = httpx.get(base + "/stats", timeout=10).json()["tick"]  # connecting is over
    start = time.monotonic() + 0.5
    end = start + args.duration
    load.shared[0], load.shared[1] = start, end
    if args.publish == "livelink":
        publisher.run(start)
    time.sleep(max(0.0, start - time.monotonic()))
    window = _Samples.take(pid, node_pids)
    pub = _publish(args, publisher, base, sessions, t0, end)
    publisher.close()
    window.close(pid, node_pids)
    server_stats = httpx.get(base + "/stats", timeout=10).json()  # viewers still connected
    by_url, load_cpu = load.collect(args, sub_urls)
    total = NodeResult()
    for r in by_url.values():
        for name in NodeResult.COUNTS:
            setattr(total, name, getattr(total, name) + getattr(r, name))
        total.tick_to_receive_ms.append(r.ticks())
        total.flip_receipts += r.flip_receipts
    send_lag = publisher.send_lag_ms if args.publish == "livelink" else None
    report = _report(args, total, pub, server_stats, window, load_cpu, send_lag)
    report["server_tick_window"] = {  # from 0.5 s before the window to its end
        k: server_stats["tick"][k] - ticks_before[k] for k in ("ticks", "errors", "late", "skipped")
    }
    if args.subscribe_url:
        report["nodes"] = _node_report(
            by_url, window.node_cpu0, window.node_cpu1, window.wall, args, send_lag
        )
    return report


def _fresh_sessions(base: str, n: int) -> list[str]:
    """Sessions ``sim-0 .. sim-{n-1}``, deleted first so every run starts from new ones."""
    sessions = [f"sim-{i}" for i in range(n)]
    with httpx.Client(base_url=base, timeout=10) as client:
        for s in sessions:
            client.delete(f"/sessions/{s}")
            client.post("/sessions", json={"id": s}).raise_for_status()
    return sessions


@dataclass
class _LoadProcesses:
    """The viewer processes of one run, with the queues they report on and the shared
    measurement window (start, end) they read."""

    procs: list[Any]
    queue: Any
    ready: Any
    shared: Any

    @staticmethod
    def start(transport: str, specs: list[dict[str, Any]]) -> _LoadProcesses:
        ctx = mp.get_context("spawn")
        queue, ready, shared = ctx.Queue(), ctx.Queue(), ctx.Array("d", 2)
        procs = [ctx.Process(target=_load_process, args=(transport, spec, ready, shared, queue),
                             daemon=True) for spec in specs]  # fmt: skip
        for p in procs:
            p.start()
        return _LoadProcesses(procs, queue, ready, shared)

    def wait_connected(self, args: argparse.Namespace, publisher: LiveLinkPublisher) -> None:
        """Until every process says its viewers are connected (bounded), while capture flows."""
        waiting = len(self.procs)
        give_up = time.monotonic() + 60 + args.subscribers / 50  # handshakes under load
        while waiting and time.monotonic() < give_up:  # viewers connect while capture flows
            if args.publish == "livelink":
                publisher.run(time.monotonic() + 0.1)
            else:
                time.sleep(0.1)
            while waiting and not self.ready.empty():
                self.ready.get()
                waiting -= 1

    def collect(
        self, args: argparse.Namespace, sub_urls: list[str]
    ) -> tuple[dict[str, NodeResult], list[float]]:
        """Every process's result merged per node, and each process's CPU percent."""
        by_url: dict[str, NodeResult] = {u: NodeResult() for u in sub_urls}
        load_cpu = []
        for _ in self.procs:
            url, result = self.queue.get(timeout=args.connect_s + 120)
            by_url[url].add(result)
            load_cpu.append(round(100 * result["cpu_s"] / max(1e-9, result["wall_s"]), 1))
        for proc in self.procs:
            proc.join(timeout=10)
        return by_url, load_cpu


@dataclass
class _Samples:
    """The server's (and each node's) CPU time and RSS at the window's start and end."""

    cpu0: float
    rss0: float
    node_cpu0: dict[str, tuple[float, float]]
    wall0: float
    cpu1: float = 0.0
    rss1: float = 0.0
    node_cpu1: dict[str, tuple[float, float]] = field(default_factory=dict)
    wall1: float = 0.0

    @staticmethod
    def take(pid: int, node_pids: dict[str, int]) -> _Samples:
        cpu0, rss0 = proc_sample(pid)
        node_cpu0 = {url: proc_sample(p) for url, p in node_pids.items()}
        return _Samples(cpu0, rss0, node_cpu0, time.monotonic())

    def close(self, pid: int, node_pids: dict[str, int]) -> None:
        self.cpu1, self.rss1 = proc_sample(pid)
        self.node_cpu1 = {url: proc_sample(p) for url, p in node_pids.items()}
        self.wall1 = time.monotonic()

    @property
    def wall(self) -> float:
        return self.wall1 - self.wall0


def _publish(
    args: argparse.Namespace,
    publisher: LiveLinkPublisher,
    base: str,
    sessions: list[str],
    t0: float,
    end: float,
) -> dict[str, float]:
    """Publish until ``end`` the way ``--publish`` says; what was sent and its CPU and wall time."""
    wall0 = time.monotonic()
    if args.publish == "livelink":
        sent0, cpu0, pub_wall0 = publisher.sent, publisher.cpu_s, publisher.wall_s
        publisher.run(end)
        return {"sent": publisher.sent - sent0, "cpu_s": publisher.cpu_s - cpu0,
                "wall_s": publisher.wall_s - pub_wall0}  # fmt: skip
    if args.publish == "ws":
        ws_base = base.replace("http://", "ws://").replace("https://", "wss://")
        cpu_p = time.process_time()
        sent = asyncio.run(_publish_ws(ws_base, sessions, t0, end))
        return {"sent": sent, "cpu_s": time.process_time() - cpu_p,
                "wall_s": time.monotonic() - wall0}  # fmt: skip
    time.sleep(max(0.0, end - time.monotonic()))
    return {}


def _report(
    args: argparse.Namespace,
    total: NodeResult,
    pub: dict[str, float],
    server_stats: dict[str, Any],
    window: _Samples,
    load_cpu: list[float],
    send_lag: SendLag | None,
) -> dict[str, Any]:
    """The run's report, in the order ``simulate`` prints it."""
    healthy = max(1, args.subscribers - args.stalled)
    cpu = window.cpu1 - window.cpu0
    publish, schedule, unknown = flip_latencies(total.flip_receipts, send_lag)
    return {
        "sessions": args.sessions,
        "subscribers": args.subscribers,
        "stalled": args.stalled,
        "connected": total.connected,
        "failed": total.failed,
        "closed_by_server": total.closed,
        "transport": args.transport,
        "publish": args.publish,
        "duration_s": args.duration,
        "published": int(pub.get("sent", 0)),
        "frames_received": total.frames,
        "frames_per_s": round(total.frames / args.duration, 1),
        "frames_per_subscriber_per_s": round(total.frames / args.duration / healthy, 2),
        "audio_messages": total.audio,
        "gaps": total.gaps,
        "subscribers_with_gaps": total.viewers_with_gaps,
        "bad_messages": total.bad,  # malformed, or a frame no server sends (client/ws_receive)
        "server_skipped": server_stats["frames"]["skipped"],  # since each viewer connected
        "bytes_per_frame": round(total.bytes / max(1, total.frames), 1),
        "tick_to_receive_ms": _percentiles(total.ticks()),
        "publish_to_receive_ms": publish,
        "schedule_to_receive_ms": schedule,
        "flips_timed_from_schedule": unknown,
        "server_cpu_percent": round(100 * cpu / max(1e-9, window.wall), 1),
        "server_cpu_us_per_frame": round(1e6 * cpu / max(1, total.frames), 2),
        "server_rss_mib": {"start": round(window.rss0, 1), "end": round(window.rss1, 1)},
        "server_tick": server_stats["tick"],
        "window_monotonic_s": [window.wall0, window.wall1],  # to line up server-side traces
        "load_cpu_percent": {"viewer_processes": load_cpu,
                             "publisher": round(100 * pub.get("cpu_s", 0.0)
                                                / max(1e-9, pub.get("wall_s", 1.0)), 1)},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip


def _node_report(
    by_url: dict[str, NodeResult],
    cpu0: dict[str, tuple[float, float]],
    cpu1: dict[str, tuple[float, float]],
    wall: float,
    args: argparse.Namespace,
    send_lag: SendLag | None,
) -> dict[str, dict[str, Any]]:
    """Per node (cluster mode): its subscribers' latency and frames, and its CPU and RSS."""
    report: dict[str, dict[str, Any]] = {}
    for url in cpu0:
        r = by_url.get(url, NodeResult())
        publish, schedule, _ = flip_latencies(r.flip_receipts, send_lag)
        report[url] = {
            "subscribers": r.connected,
            "frames_per_s": round(r.frames / args.duration, 1),
            "gaps": r.gaps,
            "tick_to_receive_ms": _percentiles(r.ticks()),
            "publish_to_receive_ms": publish,
            "schedule_to_receive_ms": schedule,
            "cpu_percent": round(100 * (cpu1[url][0] - cpu0[url][0]) / max(1e-9, wall), 1),
            "rss_mib": round(cpu1[url][1], 1),
        }
    return report
