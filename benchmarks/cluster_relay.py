"""Redis pub/sub against Redis streams for the cluster's frame relay, at our message sizes.

Starts its own ``redis-server`` on a free loopback port (no persistence), then for each
transport runs one publisher process and one reader process:

- **paced**: ``--groups`` streams at 60 frames/s (one pipeline per tick, like a node's publish
  loop), deltas of ``--delta-bytes`` with a keyframe of ``--keyframe-bytes`` every 30th frame;
  the reader reports one-way latency percentiles (send time is in the payload; one machine's
  monotonic clock) and its own CPU per message.
- **flat out**: the publisher sends as fast as pipelines of 512 allow; the reader reports the
  messages per second it received.

Streams are written with ``XADD ... MAXLEN ~ 1000`` (a bound is needed: nobody acknowledges
frames) and read with ``XREAD BLOCK`` over every stream key. Run::

    .venv/bin/python benchmarks/cluster_relay.py [--groups 100 --seconds 5]

and it prints one JSON object per (transport, mode). No assertion; figures go to docs/deploy.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import socket
import struct
import subprocess
import sys
import time
from typing import Any

import numpy as np
import redis
import redis.asyncio as aioredis

STAMP = struct.Struct("<q")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _payload(size: int) -> bytes:
    return STAMP.pack(time.monotonic_ns()) + b"\x00" * max(0, size - STAMP.size)


async def _publish(url: str, kind: str, groups: int, seconds: float, paced: bool,
                   delta: int, keyframe: int, tag: str) -> int:  # fmt: skip
    client = aioredis.Redis.from_url(url)
    names = [f"bench:{tag}:{g}" for g in range(groups)]
    sent = 0
    tick = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        pipe = client.pipeline(transaction=False)
        batch = groups if paced else 512
        for i in range(batch):
            name = names[(sent + i) % groups] if not paced else names[i]
            size = keyframe if tick % 30 == 0 else delta
            if kind == "pubsub":
                pipe.publish(name, _payload(size))
            else:
                pipe.xadd(name, {b"m": _payload(size)}, maxlen=1000, approximate=True)
        await pipe.execute()
        sent += batch
        tick += 1
        if paced:
            await asyncio.sleep(max(0.0, start + tick / 60 - time.monotonic()))
    await client.aclose()
    return sent


async def _read(url: str, kind: str, groups: int, seconds: float, ready: Any,
                tag: str) -> dict[str, Any]:  # fmt: skip
    client = aioredis.Redis.from_url(url)
    names = [f"bench:{tag}:{g}" for g in range(groups)]
    latencies: list[float] = []
    received = 0
    first = last = 0.0
    cpu0 = time.process_time()
    end = time.monotonic() + seconds + 3
    if kind == "pubsub":
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(*names)
        ready.set()
        while time.monotonic() < end:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                if received:
                    break
                continue
            now = time.monotonic_ns()
            received += 1
            last = now / 1e9
            first = first or last
            latencies.append((now - STAMP.unpack_from(message["data"])[0]) / 1e6)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    else:
        ids = dict.fromkeys(names, "0-0")  # fresh keys per run: read from the start
        ready.set()
        while time.monotonic() < end:
            reply = await client.xread(ids, block=1000, count=1000)  # type: ignore[arg-type]
            if not reply:
                if received:
                    break
                continue
            now = time.monotonic_ns()
            for name, entries in reply:
                for entry_id, fields in entries:
                    ids[name.decode()] = entry_id
                    received += 1
                    latencies.append((now - STAMP.unpack_from(fields[b"m"])[0]) / 1e6)
            last = now / 1e9
            first = first or last
    cpu = time.process_time() - cpu0
    await client.aclose()
    arr = np.asarray(latencies or [np.nan])
    return {
        "received": received,
        "per_s": round(received / max(1e-9, last - first), 0),
        "latency_ms": {f"p{p}": round(float(np.percentile(arr, p)), 3) for p in (50, 99)},
        "reader_cpu_us_per_message": round(1e6 * cpu / max(1, received), 1),
    }


def _reader_proc(url: str, kind: str, groups: int, seconds: float, ready: Any, out: Any,
                 tag: str) -> None:  # fmt: skip
    out.put(asyncio.run(_read(url, kind, groups, seconds, ready, tag)))


def run(url: str, kind: str, args: argparse.Namespace, paced: bool) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    tag = f"{kind}-{'paced' if paced else 'flat'}"
    reader = ctx.Process(target=_reader_proc, args=(url, kind, args.groups, args.seconds,
                                                    ready, out, tag))  # fmt: skip
    reader.start()
    ready.wait(10)
    time.sleep(0.2)
    sent = asyncio.run(_publish(url, kind, args.groups, args.seconds, paced, args.delta_bytes,
                                args.keyframe_bytes, tag))  # fmt: skip
    result: dict[str, Any] = out.get(timeout=args.seconds + 30)
    reader.join(10)
    return {"transport": kind, "mode": "paced 60 fps" if paced else "flat out",
            "groups": args.groups, "sent": sent, **result}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--delta-bytes", type=int, default=24)
    parser.add_argument("--keyframe-bytes", type=int, default=120)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not on PATH (apt-get install redis-server)", file=sys.stderr)
        return 2
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        for kind in ("pubsub", "streams"):
            for paced in (True, False):
                print(json.dumps(run(url, kind, args, paced)), flush=True)
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
