"""Cluster relay cost and added latency, measured with ``avatar-engine simulate`` on loopback.

Starts a ``redis-server`` (free port, no persistence) and three ``avatar-engine serve --redis``
nodes A, B, C, plus one single-process server for the baseline, then runs the simulator
(Live Link publishers into the owner A, WebSocket subscribers) in four layouts:

1. ``single``: the embedded single-process server, subscribers on it (the baseline);
2. ``cluster-idle``: sessions on A, no subscribers (A's animation cost alone);
3. ``cluster-direct``: every subscriber on A (owner fan-out, no relay);
4. ``cluster-relayed``: subscribers spread over B and C (every frame crosses Redis).

and prints one JSON line per layout, then a summary: frames/s relayed, p50/p99 of
tick-to-receive and publish-to-receive per layout, the p99 added by the relay, and CPU per
subscriber on the owner (direct) and on a relaying node. Run::

    .venv/bin/python benchmarks/cluster_simulate.py [--sessions 10 --subscribers 60 --duration 8]
"""

from __future__ import annotations

import argparse
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

from avatar_engine.client.lean import WAKE_S
from avatar_engine.client.simulate import run_simulation

SRC_HOOK = """import sys  # the nodes load avatar_engine from another source tree
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path.insert(0, {src!r})
"""
"""A ``sitecustomize`` prefix for ``--src``: drops the editable install's finder, puts ``src``
first (its ``avatar_engine`` needs the built ``_core`` module beside it: link it)."""


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.livelink_port = _free_port(socket.SOCK_DGRAM)
        exe = str(Path(sys.executable).parent / "avatar-engine")
        self.log = open(f"/tmp/cluster-bench-{self.port}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [exe, "serve", "--port", str(self.port), "--livelink-port", str(self.livelink_port),
             "--vmc-port", "0", "--log-level", "warning", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 60) -> Node:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(self.url)

    def stop(self, timeout: float = 10) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _sim(url: str, livelink_port: int, args: argparse.Namespace, subscribers: int,
         subscribe_urls: list[str] | None) -> dict[str, Any]:  # fmt: skip
    ns = argparse.Namespace(
        url=url, sessions=args.sessions, subscribers=subscribers, transport="ws",
        publish="livelink", livelink_port=livelink_port, duration=args.duration, lod=0,
        workers=args.workers, json=True, subscribe_url=subscribe_urls, stalled=0, connect_s=2.0,
        probes=0, viewer_pass=None, viewer_wake_ms=WAKE_S * 1e3,
    )  # fmt: skip
    for _ in range(10):
        try:
            return run_simulation(ns)
        except httpx.HTTPStatusError as exc:
            # 409: a session of the last layout moved to another node under load (its lease
            # lapsed) and its deletion has not reached this node's registry yet: wait for it.
            if exc.response.status_code != 409:
                raise
            time.sleep(1.0)
    return run_simulation(ns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--subscribers", type=int, default=60)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--src", help="run the cluster nodes on this source tree (a 'before')")
    parser.add_argument("--lease-ms", type=int, default=2000,
                        help="the nodes' cluster_lease_ms (longer: ownership stays put while an "
                             "overloaded owner's renewals come late)")  # fmt: skip
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not on PATH", file=sys.stderr)
        return 2
    rport = _free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    redis_url = f"redis://127.0.0.1:{rport}/0"
    nodes: list[Node] = []
    results: dict[str, dict[str, Any]] = {}
    hook = tempfile.TemporaryDirectory()
    (Path(hook.name) / "sitecustomize.py").write_text(SRC_HOOK.format(src=args.src))
    env = {"PYTHONPATH": hook.name} if args.src else None
    try:
        single = Node().wait()
        nodes.append(single)
        results["single"] = _sim(single.url, single.livelink_port, args, args.subscribers, None)
        single.stop()
        nodes.remove(single)
        lease = ("--cluster-lease-ms", str(args.lease_ms))
        a, b, c = (Node("--redis", redis_url, "--node-id", f"bench-{n}", *lease, env=env)
                   for n in "abc")  # fmt: skip
        nodes += [a, b, c]
        for node in nodes:
            node.wait()
        results["cluster-idle"] = _sim(a.url, a.livelink_port, args, 0, [a.url])
        results["cluster-direct"] = _sim(a.url, a.livelink_port, args, args.subscribers, [a.url])
        results["cluster-relayed"] = _sim(
            a.url, a.livelink_port, args, args.subscribers, [b.url, c.url]
        )
    finally:
        for node in nodes:
            node.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
        hook.cleanup()
    for name, report in results.items():
        print(json.dumps({"layout": name, **report}))
    n = args.subscribers
    idle = results["cluster-idle"]["nodes"]
    direct = results["cluster-direct"]["nodes"]
    relayed = results["cluster-relayed"]["nodes"]
    a_url = next(iter(idle))
    relay_nodes = [u for u in relayed if u != a_url]
    relay_cpu = sum(relayed[u]["cpu_percent"] for u in relay_nodes)
    summary = {
        "load_average": os.getloadavg(),
        "sessions": args.sessions,
        "src": args.src or "installed",
        "lease_ms": args.lease_ms,
        "subscribers": n,
        "relayed_frames_per_s": results["cluster-relayed"]["frames_per_s"],
        "tick_to_receive_ms": {k: results[k]["tick_to_receive_ms"]
                               for k in ("single", "cluster-direct", "cluster-relayed")},
        "publish_to_receive_ms": {k: results[k]["publish_to_receive_ms"]
                                  for k in ("single", "cluster-direct", "cluster-relayed")},
        "p99_added_by_relay_ms": round(
            results["cluster-relayed"]["tick_to_receive_ms"]["p99"]
            - results["cluster-direct"]["tick_to_receive_ms"]["p99"], 3),
        "p50_added_by_relay_ms": round(
            results["cluster-relayed"]["tick_to_receive_ms"]["p50"]
            - results["cluster-direct"]["tick_to_receive_ms"]["p50"], 3),
        "owner_cpu_percent": {"idle": idle[a_url]["cpu_percent"],
                              "direct": direct[a_url]["cpu_percent"],
                              "relaying": relayed[a_url]["cpu_percent"]},
        "relay_node_cpu_percent": {u: relayed[u]["cpu_percent"] for u in relay_nodes},
        "cpu_percent_per_subscriber": {
            "owner_direct": round((direct[a_url]["cpu_percent"] - idle[a_url]["cpu_percent"])
                                  / n, 3),
            "relaying_node": round(relay_cpu / n, 3),
        },
    }  # fmt: skip
    print(json.dumps({"summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
