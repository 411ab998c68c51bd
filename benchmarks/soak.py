"""Soak: a real ``avatar-engine serve`` under steady load, watched for leaks (docs/reliability.md).

Load, all from this one process (lean: packets are built once, subscribers read without
decoding):

* ``--sessions`` Live Link publishers, one UDP socket each (one phone per session), at
  ``--fps``;
* ``--subscribers`` WebSocket viewers on as many of those sessions;
* churn every ``--churn-s`` seconds: a session created, spoken to, watched, and deleted, and one
  viewer of a capture session reconnected, so the lifecycle paths run thousands of times.

Every ``--sample-s`` seconds the server's RSS (``/proc/PID/status``) and open descriptors
(``/proc/PID/fd``) are sampled with its /stats. The summary compares the first sample after
``--warmup-s`` with the last: RSS growth in percent, descriptor counts, and whether every
publisher's session received capture (``capture_fraction``: frames the server turned into
capture over packets sent; the rest was lost in the kernel's socket buffer while the server
was not scheduled, which a loaded machine shows).

    python benchmarks/soak.py --sessions 200 --minutes 30
    python benchmarks/soak.py --sessions 200 --minutes 10 --fps 30      # what ran here
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

from avatar_engine.formats.livelink import VALUE_COUNT, build_packet


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port, livelink = _free_port(), _free_port(socket.SOCK_DGRAM)
    exe = shutil.which("avatar-engine", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "avatar_engine.cli"]
    args = [*command, "serve", "--port", str(port), "--livelink-port", str(livelink),
            "--vmc-port", "0", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300  # a loaded machine starts it slowly
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port, livelink
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


def _sample(pid: int) -> tuple[int, int]:
    """RSS in KiB and the number of open descriptors of ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def _publish(port: int, sessions: int, fps: float, stop: asyncio.Event) -> int:
    """One socket per phone; each sends a pre-built cycle of 30 frames at ``fps``."""
    rng = np.random.default_rng(3)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sessions)]
    packets = [
        [build_packet("soak", f"phone{i:03d}", rng.random(VALUE_COUNT, np.float32) * 0.5,
                      frame_number=k) for k in range(30)]
        for i in range(sessions)
    ]  # fmt: skip
    sent, k, period = 0, 0, 1.0 / fps
    next_t = time.monotonic()
    try:
        while not stop.is_set():
            for sock, frames in zip(socks, packets, strict=True):
                with contextlib.suppress(BlockingIOError):
                    sock.sendto(frames[k % 30], ("127.0.0.1", port))
                    sent += 1
            k += 1
            next_t += period
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    finally:
        for sock in socks:
            sock.close()
    return sent


async def _view(url: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError, websockets.WebSocketException):
            async with websockets.connect(url, max_size=1 << 20) as ws:
                while not stop.is_set():
                    await asyncio.wait_for(ws.recv(), 10)
                    counts["messages"] += 1
        await asyncio.sleep(0.5)


async def _churn(base: str, ws_base: str, stop: asyncio.Event, every: float,
                 counts: dict[str, int]) -> None:  # fmt: skip
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        n = 0
        while not stop.is_set():
            sid = f"churn{n}"
            n += 1
            created = await client.post("/sessions", json={"id": sid})
            if created.status_code == 201:
                await client.post(
                    f"/sessions/{sid}/speak", json={"text": "soak test", "voice": "none"}
                )
                with contextlib.suppress(OSError, websockets.WebSocketException, TimeoutError):
                    async with websockets.connect(f"{ws_base}/sessions/{sid}/stream") as ws:
                        for _ in range(5):
                            await asyncio.wait_for(ws.recv(), 5)
                await client.delete(f"/sessions/{sid}")
                counts["cycles"] += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


async def _run(args: argparse.Namespace, pid: int, port: int, livelink: int) -> dict[str, Any]:
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    stop = asyncio.Event()
    counts = {"messages": 0, "cycles": 0}
    publisher = asyncio.create_task(_publish(livelink, args.sessions, args.fps, stop))
    await asyncio.sleep(3)  # sessions are created by their first packets
    viewers = [
        asyncio.create_task(_view(f"{ws_base}/sessions/phone{i:03d}/stream", stop, counts))
        for i in range(min(args.subscribers, args.sessions))
    ]
    churn = asyncio.create_task(_churn(base, ws_base, stop, args.churn_s, counts))
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    end = started + args.minutes * 60
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while time.monotonic() < end:
            await asyncio.sleep(min(args.sample_s, max(0.0, end - time.monotonic())))
            stats = (await client.get("/stats")).json()
            rss, fds = _sample(pid)
            frames = stats["sources"]["livelink"]["totals"]["frames"]
            samples.append({"t_s": round(time.monotonic() - started), "rss_kib": rss, "fds": fds,
                            "capture_frames": frames,
                            "sessions": stats["sessions"], "subscribers": stats["subscribers"],
                            "tick_late": stats["tick"].get("late"),
                            "churn_cycles": counts["cycles"]})  # fmt: skip
            print(json.dumps(samples[-1]), flush=True)
        stats = (await client.get("/stats")).json()
    stop.set()
    sent = await publisher
    for task in [*viewers, churn]:
        task.cancel()
    await asyncio.gather(*viewers, churn, return_exceptions=True)
    livelink = stats["sources"]["livelink"]
    fed = sum(1 for s in livelink["sources"].values() if s["rate_hz"] > 0)
    ever = sum(1 for s in livelink["sources"].values() if s["frames"] > 0)
    base_sample = next((s for s in samples if s["t_s"] >= args.warmup_s), samples[0])
    last = samples[-1]
    return {
        "minutes": args.minutes, "sessions": args.sessions, "fps": args.fps,
        "subscribers": args.subscribers, "packets_sent": sent,
        "capture_frames": livelink["totals"]["frames"],
        "capture_fraction": round(livelink["totals"]["frames"] / max(1, sent), 3),
        "publishers_with_frames": ever, "publishers_delivering_at_end": fed,
        "churn_cycles": counts["cycles"],
        "viewer_messages": counts["messages"],
        "rss_mib_after_warmup": round(base_sample["rss_kib"] / 1024, 1),
        "rss_mib_end": round(last["rss_kib"] / 1024, 1),
        "rss_growth_pct": round(100 * (last["rss_kib"] / base_sample["rss_kib"] - 1), 2),
        "fds_after_warmup": base_sample["fds"], "fds_end": last["fds"],
        "fds_min_max": [min(s["fds"] for s in samples), max(s["fds"] for s in samples)],
        "drops": livelink["totals"]["drops"],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--fps", type=float, default=60.0)
    p.add_argument("--subscribers", type=int, default=20)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--warmup-s", type=float, default=60.0)
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--churn-s", type=float, default=1.0)
    args = p.parse_args(argv)
    log = Path(tempfile.gettempdir()) / f"soak-serve-{os.getpid()}.log"
    proc, port, livelink = _start_server(log)
    try:
        summary = asyncio.run(_run(args, proc.pid, port, livelink))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    print("summary", json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
