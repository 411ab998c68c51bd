"""Failover and late-join timings of cluster mode, with real processes on loopback.

Starts a ``redis-server`` and three ``avatar-engine serve --redis`` nodes (the integration
tests' helpers: tests/test_cluster_nodes.py), then ``--rounds`` times: a WebSocket publisher on
the owner, a viewer on another node, a late joiner (another LOD) on that node, then SIGKILL of
the owner. Prints per round: subscribe-to-first-frame of the late joiner (and that it was a
keyframe), kill-to-``degraded`` and kill-to-keyframe seen by the relayed viewer. A replacement
node joins after each round so three stay up. Run::

    .venv/bin/python benchmarks/cluster_failover.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from server_process import ServerProcess
from test_cluster_nodes import (
    Publisher,
    RedisProcess,
    Viewer,
    known_everywhere,
    start_nodes,
    stop_all,
)


async def _round(nodes: list[ServerProcess], i: int) -> dict[str, object]:
    alive = [n for n in nodes if n.proc.poll() is None]
    owner, viewer_node = alive[0], alive[1]
    session = f"failover{i}"
    publisher = Publisher(owner.ws_url, session)
    await publisher.start()
    known_everywhere(alive, session)
    viewer = Viewer(viewer_node.ws_url, session)
    await viewer.start()
    await viewer.wait_frames(30)
    late = Viewer(viewer_node.ws_url, session, lod=1)
    joined = time.monotonic()
    await late.start()
    await late.wait_frames(1)
    first, _, first_t = late.frames[0]
    owner.proc.kill()
    killed = time.monotonic()
    await publisher.stop()
    degraded = await viewer.wait_state("degraded", killed, 10)
    deadline = killed + 10
    while not any(f.keyframe and t > killed for f, _, t in viewer.frames):
        if time.monotonic() > deadline:
            raise TimeoutError("no keyframe after the takeover")
        await asyncio.sleep(0.01)
    keyframe = next(t for f, _, t in viewer.frames if f.keyframe and t > killed)
    await viewer.stop()
    await late.stop()
    return {
        "round": i,
        "late_join_first_frame_ms": round((first_t - joined) * 1000, 1),
        "late_join_first_is_keyframe": first.keyframe,
        "kill_to_degraded_s": round(degraded - killed, 2),
        "kill_to_keyframe_s": round(keyframe - killed, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    redis = RedisProcess()
    nodes = start_nodes(redis, 3)
    try:
        for i in range(args.rounds):
            print(json.dumps(asyncio.run(_round(nodes, i))), flush=True)
            nodes.append(
                ServerProcess("--redis", redis.url, "--node-id", f"joiner{i}").wait_ready(60)
            )
    finally:
        stop_all(nodes)
        redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
