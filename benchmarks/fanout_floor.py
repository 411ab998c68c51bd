"""Fan-out against the socket floor, measured in the same run (issue 16), on loopback only.

    .venv/bin/python benchmarks/fanout_floor.py [--viewers 500 1000 2000] [--duration 10]
        [--only floor,cfloor,server,server-threads,server-pysend,asgi,stall,capture,webrtc,
        webrtc-aiortc] [--send-threads 2] [--repeat 2] [--viewer-pass native|numpy]
        [--viewer-wake-ms 1] [--pin off|on|both] [--json]

For each viewer count N (spread over ``--sessions`` sessions, lean viewers in ``--workers``
processes, :mod:`avatar_engine.client.lean`, reading with the native receive pass of
:mod:`avatar_engine.client.ws_receive` unless ``--viewer-pass numpy`` asks for the Python
reference, and waking at most once per ``--viewer-wake-ms``, default ``lean.WAKE_S``: a stamp
is up to that late; every case, passed to ``simulate`` for the server ones); every row prints
the viewers' CPU per received frame; with ``--pin on`` the server runs on a CPU of its own and
the load on the others, ``--pin both`` runs every server and capture case both ways):

- **floor**: a process that accepts N WebSocket connections and, 60 times a second, writes one
  pre-framed ~18-byte message per group to every socket with a plain ``socket.send()`` loop:
  its CPU per delivered frame is the floor the kernel sets for Python;
- **cfloor**: the same with the C++ send loop the server's fan-out calls (``_core.send_to_all``,
  one call per group per tick): the floor of the system calls themselves;
- **server**: a real ``avatar-engine serve`` (its CPU from ``/proc/<pid>/stat`` over the
  window) with one prebuilt Live Link publisher per session, the same N viewers: CPU per
  delivered frame, its ratio to each floor, viewers per core at 60 fps, delivered frames per
  viewer per second, p99 tick-to-receive, gaps (skipped frames seen by viewers);

optionally **server-threads**: the same server writing each tick's frames with
``--send-threads`` threads (``avatar-engine serve --send-threads``: the CPU per frame should
not move, the last viewer's wait should shrink); **server-pysend**: the same server with the
Python reference send loop (one ``os.write`` per viewer, as before the native loop);
**asgi**: the same server with uvicorn's own WebSocket protocol, so every frame goes through a
writer task and an ASGI send per viewer (the path before issue 16); then
**stall**: N = the largest count, ``--repeat`` times without and then with one more viewer
that never reads, each run on a fresh server (per pair the change of the others' p99, its
median, the healthy-to-healthy change beside it as the noise, and the server's RSS growth of
each kind); **capture**: 100 publishing sessions with
one viewer each (publish-to-receive p50/p99 over ``--probes`` sessions spread over the
burst, from each flip packet's send, and schedule-to-receive beside it, from the flip's
scheduled time; the server's tick errors), ``--repeat`` times, on a fresh server each;
**webrtc**: ``--webrtc`` lean WebRTC viewers
(real aiortc peers, :mod:`avatar_engine.client.rtc_lean`) on a fresh server, ``--repeat``
times, alternating with **webrtc-aiortc** if asked (the server sending frames through aiortc's
own ``RTCDataChannel.send``: the path before issue 16). Every load process reports its own
CPU; the load average is printed with each row.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import itertools
import json
import math
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from avatar_engine.client.lean import WAKE_S, run_viewers, tick_latencies
from avatar_engine.client.simulate import proc_sample, run_simulation
from avatar_engine.server.fanout import frame_header, group_backend, send_backend
from server_process import ServerProcess

FPS = 60
ASGI_HOOK = """import avatar_engine.server.serve as serve
serve.StreamProtocol = "websockets-sansio"  # uvicorn's own protocol: every frame an ASGI send
"""
"""Loaded by the ``asgi`` case's server (a ``sitecustomize`` on its PYTHONPATH): the path
before issue 16, where each viewer's writer task sends each frame through the ASGI app."""
PYSEND_HOOK = """import avatar_engine.server.fanout as fanout
fanout.group_backend = lambda name=None: fanout.send_group_reference  # Python, per viewer
"""
"""Loaded by the ``server-pysend`` case's server: the fan-out pass with the Python reference
(one check and one ``os.write`` per viewer) instead of the native one, for comparison."""
AIORTC_SEND_HOOK = """import avatar_engine.transport.rtc_datapath as datapath
datapath.internals_ok = lambda: False  # every frame through aiortc's RTCDataChannel.send
"""
"""Loaded by the ``webrtc-aiortc`` case's server: WebRTC frames sent the way they were before
issue 16 (aiortc's queue and task per message), for comparison with ``webrtc``."""
HOOKS = {"asgi": ASGI_HOOK, "server-pysend": PYSEND_HOOK, "webrtc-aiortc": AIORTC_SEND_HOOK}
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BODY = bytes(9)
"""A delta body of the size the real server sends for a moving face at LOD 0 (~16 B messages)."""


def _handshake(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    key = next(line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))  # fmt: skip
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def _floor_server(listener: socket.socket, n: int, groups: int, t0: float, shared: Any,
                  queue: Any, native: bool) -> None:  # fmt: skip
    """Accept n viewers, then send each group's framed message to its sockets 60 times a second
    with one socket.send() per socket (``native``: one call of the C++ send loop per group,
    the loop the server's fan-out uses); report CPU over the window the coordinator sets."""
    socks: list[list[socket.socket]] = [[] for _ in range(groups)]
    for i in range(n):
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _handshake(conn)
        conn.setblocking(False)
        socks[i % groups].append(conn)
    fds = [np.array([s.fileno() for s in group], np.int32) for group in socks]
    send_to_all = send_backend("native")
    last_t = [-1] * groups
    seq = [0] * groups
    k = math.ceil((time.monotonic() - t0) * FPS)  # the 60 Hz schedule, from now on
    sends = errors = 0
    cpu0 = cpu1 = math.nan
    while True:
        start, end = shared[0], shared[1]
        now = time.monotonic()
        if end > 0 and now >= end:
            break
        if end > 0 and now >= start and math.isnan(cpu0):
            cpu0, sends = time.process_time(), 0
        t_ms = int((now - t0) * 1000)
        for g in range(groups):
            if last_t[g] < 0:
                message = msgpack.packb([1, g, 0, seq[g], t_ms, BODY])
            else:
                message = msgpack.packb([2, g, 0, seq[g], 1, t_ms - last_t[g], BODY])
            wire = frame_header(len(message)) + message
            if native:
                sent = send_to_all(wire, fds[g])
                ok = int(np.count_nonzero(sent == len(wire)))
                sends, errors = sends + ok, errors + len(sent) - ok
            else:
                for s in socks[g]:
                    try:
                        s.send(wire)
                        sends += 1
                    except OSError:
                        errors += 1
            last_t[g], seq[g] = t_ms, (seq[g] + 1) & 0xFFFF
        k = max(k + 1, math.floor((time.monotonic() - t0) * FPS))  # late: skip, never burst
        time.sleep(max(0.0, t0 + k / FPS - time.monotonic()))
    cpu1 = time.process_time()
    queue.put({"cpu_s": cpu1 - cpu0, "sends": sends, "errors": errors})
    for group in socks:
        for s in group:
            s.close()


def floor(n: int, args: argparse.Namespace, *, native: bool = False) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    t0 = time.monotonic()
    shared, queue, ready, results = ctx.Array("d", 2), ctx.Queue(), ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_floor_server, args=(listener, n, args.sessions, t0, shared, queue,
                                                        native))  # fmt: skip
    server.start()
    specs = _specs(n, port, t0, args, [f"/floor/{i % args.sessions}" for i in range(n)])
    viewers = [ctx.Process(target=_viewer_process, args=(s, ready, shared, results))
               for s in specs]  # fmt: skip
    for p in viewers:
        p.start()
    for _ in viewers:
        ready.get(timeout=120)
    start = time.monotonic() + 0.5
    shared[0], shared[1] = start, start + args.duration
    got = [results.get(timeout=args.duration + 120) for _ in viewers]
    sent = queue.get(timeout=30)
    for p in [server, *viewers]:
        p.join(timeout=10)
    listener.close()
    frames = sum(r["frames"] for r in got)
    ticks = tick_latencies(got)
    return {
        "viewers": n,
        "frames_per_viewer_per_s": round(frames / args.duration / n, 2),
        "cpu_us_per_frame": round(1e6 * sent["cpu_s"] / max(1, frames), 2),
        "cpu_us_per_send": round(1e6 * sent["cpu_s"] / max(1, sent["sends"]), 2),
        "p99_ms": round(float(_pct(ticks, 99)), 2),
        "gaps": sum(r["gaps"] for r in got),
        "load_cpu_percent": [round(100 * r["cpu_s"] / max(1e-9, r["wall_s"]), 1) for r in got],
        "viewer_cpu_us_per_frame": round(1e6 * sum(r["cpu_s"] for r in got) / max(1, frames), 2),
        "viewer_frames_per_wakeup": round(frames / max(1, sum(r["wakeups"] for r in got)), 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def _pct(values: Any, p: float) -> float:
    return float(np.percentile(values, p)) if len(values) else math.nan


def _specs(n: int, port: int, t0: float, args: argparse.Namespace,
           paths: list[str]) -> list[dict[str, Any]]:  # fmt: skip
    parts = max(1, args.workers)
    return [
        {"host": "127.0.0.1", "port": port, "t0": t0, "server_t0": t0,
         "limit_s": args.duration + 120, "paths": [[p, False, False] for p in paths[w::parts]],
         "receive": args.viewer_pass, "wake_ms": args.viewer_wake_ms}
        for w in range(parts)
    ]  # fmt: skip


def _viewer_process(spec: dict[str, Any], ready: Any, shared: Any, results: Any) -> None:
    def window_of() -> tuple[float, float] | None:
        return (shared[0], shared[1]) if shared[1] > 0 else None

    results.put(run_viewers(spec, on_ready=lambda: ready.put(1), window_of=window_of))


def add_viewer_options(parser: argparse.ArgumentParser, *, compare_pins: bool = False) -> None:
    """The load's options (``--viewer-pass``, ``--viewer-wake-ms`` as ``simulate`` takes them,
    and ``--pin``); :func:`_sim` applies them (the trace scripts use it too). With
    ``compare_pins``, ``--pin both`` is offered too."""
    both = "; both: every server and capture run unpinned, then pinned (stall, webrtc: unpinned)"
    parser.add_argument("--pin", choices=["off", "on", "both"] if compare_pins else ["off", "on"],
                        default="off",
                        help="on: the server on the first CPU alone, the load generators on the "
                        "others" + (both if compare_pins else ""))  # fmt: skip
    parser.add_argument("--viewer-pass", choices=["native", "numpy"], default=None,
                        help="the lean viewers read with the native receive pass "
                        "or the Python reference (numpy); default: the fastest")  # fmt: skip
    parser.add_argument("--viewer-wake-ms", type=float, default=WAKE_S * 1e3,
                        help="the viewer processes wake at most once per this "
                        "(lean.WAKE_S; 0: at every arriving frame)")  # fmt: skip


def _pins(args: argparse.Namespace) -> list[bool]:
    """Whether each run of a server case is pinned (``--pin``)."""
    return {"off": [False], "on": [True], "both": [False, True]}[args.pin]


@contextlib.contextmanager
def _pinned(pid: int, on: bool) -> Iterator[None]:
    """With ``on``, the server (every thread of ``pid``) on the first CPU of this process's set
    and this process, with the load processes it starts, on the rest; restored on the way out.
    On a 2-core machine the viewers' wake-ups otherwise queue behind the server's tick on its
    core, or take it from the server mid-tick (docs/performance.md, "The load on its own
    core"); a deployment's viewers are on other machines."""
    if not on:
        yield
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least two CPUs")
    tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    for tid in tasks:
        os.sched_setaffinity(tid, {cpus[0]})
    os.sched_setaffinity(0, set(cpus[1:]))
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(cpus))
        for tid in tasks:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, set(cpus))


def _sim(server: ServerProcess, args: argparse.Namespace, *, pin: bool | None = None,
         **over: Any) -> dict[str, Any]:  # fmt: skip
    """One ``simulate`` run against ``server`` with ``over`` set on its options, pinned as
    ``pin`` says (default: ``--pin on``)."""
    ns = argparse.Namespace(
        url=server.url, subscribe_url=None, sessions=args.sessions, subscribers=100, stalled=0,
        transport="ws", publish="livelink", livelink_port=server.livelink_port,
        duration=args.duration, connect_s=2.0, lod=0, workers=args.workers, json=True, probes=0,
        viewer_pass=args.viewer_pass, viewer_wake_ms=args.viewer_wake_ms,
    )  # fmt: skip
    for key, value in over.items():
        setattr(ns, key, value)
    rss0 = proc_sample(server.proc.pid)[1]
    tick0 = httpx.get(server.url + "/stats", timeout=10).json()["tick"]
    with _pinned(server.proc.pid, args.pin == "on" if pin is None else pin):
        report = run_simulation(ns)
    report["pinned"] = args.pin == "on" if pin is None else pin
    report["rss_growth_mib"] = round(proc_sample(server.proc.pid)[1] - rss0, 1)
    for key in ("late", "skipped"):  # this run's, not since the server started
        report["server_tick"][key] -= tick0[key]  # (connecting the viewers included)
    return report


def _server_row(n: int, r: dict[str, Any], floors: dict[str, float],
                base_percent: float | None = None) -> dict[str, Any]:  # fmt: skip
    """One row, with its ratio to each floor of the same run (``floor``: Python ``send()``;
    ``cfloor``: the C++ send loop); with ``base_percent`` (the same server's CPU with its
    sessions and publishers but no viewer) also the marginal cost per delivered frame: fan-out
    alone."""
    us = r["server_cpu_us_per_frame"]
    marginal = None
    if base_percent is not None and r["frames_per_s"] > 0:
        extra = (r["server_cpu_percent"] - base_percent) / 100
        marginal = round(1e6 * extra / r["frames_per_s"], 2)
    ratios = {f"ratio_to_{name}": round(us / f, 2) for name, f in floors.items()}
    marginal_ratios = {f"marginal_ratio_to_{name}": round(marginal / f, 2)
                       for name, f in floors.items() if marginal}  # fmt: skip
    return {
        "viewers": n,
        "frames_per_viewer_per_s": r["frames_per_subscriber_per_s"],
        "cpu_us_per_frame": us,
        **ratios,
        "base_cpu_percent": base_percent,
        "marginal_us_per_frame": marginal,
        **marginal_ratios,
        "viewers_per_core_at_60fps": int(1e6 / (us * FPS)) if us > 0 else None,
        "p50_ms": r["tick_to_receive_ms"].get("p50"),
        "p99_ms": r["tick_to_receive_ms"].get("p99"),
        "gaps": r["gaps"],
        "viewers_with_gaps": r["subscribers_with_gaps"],
        "server_skipped": r["server_skipped"],
        "late_ticks": r["server_tick_window"]["late"],  # the window (and 0.5 s before it)
        "skipped_ticks": r["server_tick_window"]["skipped"],
        "skipped_ticks_connecting": r["server_tick"]["skipped"]
        - r["server_tick_window"]["skipped"],
        "server_cpu_percent": r["server_cpu_percent"],
        "rss_growth_mib": r["rss_growth_mib"],
        "load_cpu_percent": r["load_cpu_percent"],
        "viewer_cpu_us_per_frame": round(
            1e4 * sum(r["load_cpu_percent"]["viewer_processes"]) / max(1e-9, r["frames_per_s"]), 2
        ),
        "load_average": r["load_average"][0],
    }


def _webrtc_row(args: argparse.Namespace, case: str) -> dict[str, Any]:
    """``--webrtc`` lean WebRTC viewers (real aiortc peers) on a fresh server, with the
    server's CPU per delivered frame beside its cost with no viewer (``webrtc-aiortc``: the
    server sends frames with aiortc's own ``RTCDataChannel.send``)."""
    with _case_server(case) as server:
        base = _sim(server, args, subscribers=0)["server_cpu_percent"]
        r = _sim(server, args, subscribers=args.webrtc, transport="webrtc")
        return _server_row(args.webrtc, r, {}, base) | {"connected": r["connected"]}


@contextlib.contextmanager
def _case_server(case: str, *flags: str) -> Iterator[ServerProcess]:
    """A fresh, ready server for ``case`` started with ``flags``, with the case's hook
    (:data:`HOOKS`) loaded, if it has one; stopped on the way out."""
    with tempfile.TemporaryDirectory() as hook:
        (Path(hook) / "sitecustomize.py").write_text(HOOKS.get(case, ""))
        server = ServerProcess(*flags, env={"PYTHONPATH": hook} if case in HOOKS else None)
        try:
            yield server.wait_ready(60)
        finally:
            server.stop()


def _stall(args: argparse.Namespace, floors: dict[int, dict[str, float]],
           show: Any) -> None:  # fmt: skip
    """N healthy viewers, then the same plus one that never reads, ``--repeat`` times
    alternating, each run on a fresh server (so no run inherits another's state, and drift in
    the load hits both kinds alike). Noise-robust summary: per adjacent pair the stalled run's
    p99 over the healthy run's, and their median, beside the same ratio between consecutive
    healthy runs (what noise alone moves p99 by); the server's RSS growth over each run (its
    N viewers connecting included), so what the stalled viewer adds is the difference of the
    two kinds' medians."""
    n = max(args.viewers)
    p99: dict[str, list[float]] = {"healthy": [], "stalled": []}
    growth: dict[str, list[float]] = {"healthy": [], "stalled": []}
    for _ in range(args.repeat):
        for name, extra in (("healthy", 0), ("stalled", 1)):
            server = ServerProcess().wait_ready(60)
            try:
                r = _sim(server, args, subscribers=n + extra, stalled=extra)
            finally:
                server.stop()
            row = _server_row(n, r, floors.get(n, {}))
            p99[name].append(row["p99_ms"])
            growth[name].append(row["rss_growth_mib"])
            show(name, row)
    healthy, stalled = (float(np.median(p99[k])) for k in ("healthy", "stalled"))
    pairs = [100 * (s / h - 1) for h, s in zip(p99["healthy"], p99["stalled"], strict=True)]
    noise = [100 * (b / a - 1) for a, b in itertools.pairwise(p99["healthy"])]
    rss = [float(np.median(growth[k])) for k in ("healthy", "stalled")]
    show("stall", {"viewers": n, "pairs": args.repeat, "p99_ms_healthy_median": healthy,
                   "p99_ms_stalled_median": stalled,
                   "p99_change_percent": round(100 * (stalled / healthy - 1), 1),
                   "pair_change_percent": [round(x, 1) for x in pairs],
                   "pair_change_percent_median": round(float(np.median(pairs)), 1),
                   "healthy_to_next_healthy_percent": [round(x, 1) for x in noise],
                   "rss_growth_mib_healthy_runs": growth["healthy"],
                   "rss_growth_mib_stalled_runs": growth["stalled"],
                   "stalled_viewer_rss_mib": round(rss[1] - rss[0], 1)})  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--webrtc", type=int, default=100, help="WebRTC viewers (webrtc case)")
    add_viewer_options(parser, compare_pins=True)
    parser.add_argument(
        "--only",
        default="floor,cfloor,server,stall,capture",
        help="comma-separated cases: floor (Python send loop), cfloor (C++ send loop), server, "
        "server-threads (the server with --send-threads), "
        "server-pysend (the server with the Python send loop), "
        "asgi (the ASGI path before issue 16, for comparison), stall, capture, webrtc, "
        "webrtc-aiortc "
        "(the server sending WebRTC frames through aiortc's own send, for comparison)",
    )
    parser.add_argument("--send-threads", type=int, default=2,
                        help="server-threads: the server's --send-threads")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=2,
                        help="healthy/stalled pairs (stall); capture and webrtc runs")  # fmt: skip
    parser.add_argument("--probes", type=int, default=10,
                        help="capture: sessions with a decoding viewer (0: all)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cases = set(args.only.split(","))
    out: dict[str, Any] = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                           "send_loop": group_backend().__name__}  # fmt: skip
    if not args.json:
        print(
            f"load average {out['load_average_at_start']}, fan-out send loop {out['send_loop']}",
            flush=True,
        )

    def show(name: str, row: dict[str, Any]) -> None:
        out.setdefault(name, []).append(row)
        if not args.json:
            print(f"{name:>8}: " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)

    floors: dict[int, dict[str, float]] = {}
    for n in args.viewers:
        floors[n] = {}
        for name in ("floor", "cfloor"):
            if name in cases:
                row = floor(n, args, native=name == "cfloor")
                floors[n][name] = row["cpu_us_per_frame"]
                show(name, row)
        for case, pin in itertools.product(("server", "server-threads", "server-pysend", "asgi"),
                                           _pins(args)):  # fmt: skip
            if case not in cases:
                continue
            flags = ("--send-threads", str(args.send_threads)) if case == "server-threads" else ()
            with _case_server(case, *flags) as server:
                base = _sim(server, args, subscribers=0, pin=pin)["server_cpu_percent"]
                r = _sim(server, args, subscribers=n, pin=pin)
                show(case, _server_row(n, r, floors[n], base) | {"pinned": pin})
    if "stall" in cases:
        _stall(args, floors, show)
    for _, pin in itertools.product(range(args.repeat if "capture" in cases else 0),
                                    _pins(args)):  # fmt: skip
        server = ServerProcess().wait_ready(60)
        try:
            r = _sim(server, args, sessions=100, subscribers=100, probes=args.probes, pin=pin)
            show("capture", {"sessions": 100, "probes": args.probes, "pinned": pin,
                             "publish_to_receive_ms": r["publish_to_receive_ms"],
                             "schedule_to_receive_ms": r["schedule_to_receive_ms"],
                             "tick_to_receive_ms": r["tick_to_receive_ms"],
                             "frames_per_viewer_per_s": r["frames_per_subscriber_per_s"],
                             "server_cpu_percent": r["server_cpu_percent"],
                             "tick_errors": r["server_tick"]["errors"],
                             "load_cpu_percent": r["load_cpu_percent"],
                             "load_average": r["load_average"][0]})  # fmt: skip
        finally:
            server.stop()
    for case in ("webrtc", "webrtc-aiortc") * args.repeat:  # paired, alternating
        if case in cases:
            show(case, _webrtc_row(args, case))
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
