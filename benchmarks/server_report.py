"""Server figures for docs/performance.md, against real `avatar-engine serve` processes.

    python benchmarks/server_report.py [--quick]

Runs, each on a fresh server on free loopback ports:
  1. WebSocket fan-out: S sessions x subscribers at 60 fps (simulate, Live Link publishers);
  2. WebRTC subscribers (aiortc peers in worker processes);
  3. many Live Link publishers at 60 fps;
  4. capture -> frame latency at 100 sessions;
  5. POST /speak -> first frame with speech; subscribe -> first frame;
  6. one stalled subscriber among many: the others' latency and the server's RSS growth.
Every load is bounded in time and sent only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from avatar_engine.client.subscriber import DecodedFrame, subscribe_ws
from server_process import ServerProcess


def simulate(server: ServerProcess, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "avatar_engine.cli", "simulate", "--url", server.url,
         "--livelink-port", str(server.livelink_port), "--json", *args],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def summary(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name}: {r['connected']}/{r['subscribers']} connected, "
        f"{r['frames_per_subscriber_per_s']} frames/s per subscriber, gaps {r['gaps']}, "
        f"server skipped {r['server_skipped']}, {r['bytes_per_frame']} B/frame, "
        f"tick->receive ms {r['tick_to_receive_ms']}, publish->receive ms "
        f"{r['publish_to_receive_ms']}, server CPU {r['server_cpu_percent']} %, "
        f"RSS MiB {r['server_rss_mib']}, ticks {r['server_tick']}"
    )


async def first_frames(server: ServerProcess) -> tuple[float, float]:
    """(subscribe -> first frame, POST /speak -> first frame with a lip viseme) in ms."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        await client.post("/sessions", json={"id": "first"})
        t0 = time.monotonic()
        agen = subscribe_ws(f"{server.ws_url}/sessions/first/stream")
        first = None
        speak_sent = None
        async for item in agen:
            if isinstance(item, DecodedFrame):
                if first is None:
                    first = (item.received - t0) * 1e3
                    await asyncio.sleep(0.3)
                    speak_sent = time.monotonic()
                    await client.post("/sessions/first/speak", json={"text": "Ah, papa."})
                elif (
                    speak_sent
                    and max(item.morphs.get(k, 0) for k in ("V_Open", "V_Explosive")) > 0.01
                ):
                    await agen.aclose()
                    return first, (item.received - speak_sent) * 1e3
    raise RuntimeError("stream ended")


async def stalled_among(server: ServerProcess, n: int, seconds: float) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        await client.post("/sessions", json={"id": "crowd"})
        stats0 = (await client.get("/stats")).json()
    pid = stats0["pid"]

    def rss() -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
        return float("nan")

    stalled = await websockets.connect(f"{server.ws_url}/sessions/crowd/stream")
    stalled.transport.pause_reading()  # type: ignore[attr-defined]
    rss0 = rss()
    healthy = [await websockets.connect(f"{server.ws_url}/sessions/crowd/stream") for _ in range(n)]
    received = [0] * n
    end = time.monotonic() + seconds

    async def drain(i: int, ws: websockets.ClientConnection) -> None:
        while time.monotonic() < end:
            try:
                await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic()))
                received[i] += 1
            except TimeoutError:
                return

    await asyncio.gather(*(drain(i, ws) for i, ws in enumerate(healthy)))
    rss1 = rss()
    for ws in healthy:
        await ws.close()
    stalled.transport.abort()  # type: ignore[attr-defined]
    return {"healthy_messages_min": min(received), "rss_growth_mib": round(rss1 - rss0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, smaller loads")
    args = parser.parse_args()
    d = "3" if args.quick else "8"
    scale = 0.25 if args.quick else 1.0

    server = ServerProcess("--log-level", "warning").wait_ready()
    try:
        subs = str(int(1000 * scale))
        summary(
            f"ws fan-out 10 sessions x {subs} subscribers",
            simulate(server, "--sessions", "10", "--subscribers", subs, "--duration", d),
        )
        summary(
            "capture latency, 100 sessions, 100 subscribers",
            simulate(server, "--sessions", "100", "--subscribers", "100", "--duration", d),
        )
        pubs = str(int(200 * scale))
        summary(
            f"{pubs} Live Link publishers, 20 subscribers",
            simulate(server, "--sessions", pubs, "--subscribers", "20", "--duration", d),
        )
        rtc = str(int(40 * scale))
        summary(
            f"webrtc {rtc} subscribers",
            simulate(
                server,
                "--sessions",
                "4",
                "--subscribers",
                rtc,
                "--transport",
                "webrtc",
                "--duration",
                d,
            ),
        )
        subscribe_ms, speak_ms = asyncio.run(first_frames(server))
        print(f"subscribe -> first frame: {subscribe_ms:.1f} ms; "
              f"POST /speak -> first speech frame: {speak_ms:.1f} ms")  # fmt: skip
        n = int(500 * scale)
        print(f"one stalled among {n}:", asyncio.run(stalled_among(server, n, float(d))))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
