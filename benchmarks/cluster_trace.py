"""Where relayed frames wait, hop by hop, with three nodes on Redis (issue 16, item 10).

    .venv/bin/python benchmarks/cluster_trace.py [--sessions 10 --subscribers 600 --duration 6]

Starts a ``redis-server`` and three ``avatar-engine serve --redis`` nodes A, B, C, each with a
``sitecustomize`` that stamps, on this machine's monotonic clock (shared by every process):

- on the owner A, every relayed frame as the tick offers it to the group's relay (``offer``,
  with its channel and sequence number) and every pipelined ``PUBLISH`` batch (``execute``:
  start, end, commands);
- on the relaying nodes B and C, every pub/sub message as the listener hands it over
  (``listen``: start and end of its batch, channel, sequence number, the bytes already read
  from Redis but not yet parsed, the batch's size) and every group pass (duration, viewers);
- garbage collections on every node.

Meanwhile it samples Redis's ``CLIENT LIST`` every 50 ms (the bytes Redis holds for each
pub/sub client: ``omem``) and runs the simulator's relayed layout (Live Link publishers into A,
lean viewers spread over B and C). Printed, for the connect phase and the measured window
apart: each hop's delay percentiles for the frames seen on B and C (tick -> publish batch
start, the batch's own time, batch end -> listener, listener's hand-over), the largest Redis
output buffer, and the hop delays by half-second slices, so a reader sees where and when a
backlog forms. The viewers' own tick -> receive and frames/s are printed beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Frame as DecodedFrame
from cluster_simulate import SRC_HOOK, Node, _free_port, _sim

TRACE_HOOK = """import gc, json, os, time
import uvicorn
import avatar_engine.cluster.relay as relay
import avatar_engine.cluster.placement as placement
import redis.asyncio.client as rc
rec = {"gc": [], "offer": [], "execute": [], "listen": [], "pass": [], "channels": {}}
channels = rec["channels"]
started = [0.0]
def on_gc(phase, info):
    if phase == "start":
        started[0] = time.monotonic()
    else:
        rec["gc"].append((started[0], time.monotonic() - started[0], info["generation"]))
gc.callbacks.append(on_gc)
WIDTH = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
def uint(b, i):  # a msgpack unsigned integer: (value, next index)
    if b[i] < 0x80:
        return b[i], i + 1
    w = WIDTH[b[i]]
    return int.from_bytes(b[i + 1 : i + 1 + w], "big"), i + 1 + w
def seq_of(b, i):  # a frame's header: version, kind, sid, lod, seq
    _sid, j = uint(b, i + 2)
    _lod, j = uint(b, j)
    return uint(b, j)[0]
def channel_no(name):
    return channels.setdefault(name, len(channels))
_offer_frame = relay.RelayOutbox.offer_frame
def offer_frame(self, message, *, keyframe):
    rec["offer"].append((time.monotonic(), channel_no(self.channel), seq_of(message, 0)))
    return _offer_frame(self, message, keyframe=keyframe)
relay.RelayOutbox.offer_frame = offer_frame
_execute = rc.Pipeline.execute
async def execute(self, *args, **kwargs):
    n, start = len(self.command_stack), time.monotonic()
    try:
        return await _execute(self, *args, **kwargs)
    finally:
        rec["execute"].append((start, time.monotonic(), n))
rc.Pipeline.execute = execute
def unparsed(self):
    try:  # redis-py's pure-Python parser: its own buffer and its stream's
        p = self.link.pubsub.connection._parser
        return len(p._buffer) - p._pos + len(p._stream._buffer)
    except Exception:
        return -1
def record(self, batch, start, cpu, buffered):
    end, cpu = time.monotonic(), (time.thread_time() - cpu) / len(batch)
    for channel, data in batch:
        name = channel.decode()
        framed = len(data) > 3 and data[0] in (1, 2) and name in self.viewers.groups
        seq = seq_of(data, 1) if framed else -1
        rec["listen"].append((start, end, channel_no(name), seq, buffered, cpu,
                              data[0] if data else -1, len(batch)))
Placement = placement.ClusterPlacement
if hasattr(Placement, "on_messages"):  # a batch per listener iteration
    _on_messages = Placement.on_messages
    def on_messages(self, batch):
        start, cpu, buffered = time.monotonic(), time.thread_time(), unparsed(self)
        done = _on_messages(self, batch)
        record(self, batch[:done], start, cpu, buffered)
        return done
    Placement.on_messages = on_messages
else:  # one message per listener iteration
    _on_message = Placement.on_message
    def on_message(self, channel, data):
        start, cpu, buffered = time.monotonic(), time.thread_time(), unparsed(self)
        _on_message(self, channel, data)
        record(self, [(channel, data)], start, cpu, buffered)
    Placement.on_message = on_message
entry = "offer_run_to_all" if hasattr(relay, "offer_run_to_all") else "offer_to_all"
_pass = getattr(relay, entry)
def group_pass(subscribers, *args, **kwargs):
    start = time.monotonic()
    need = _pass(subscribers, *args, **kwargs)
    rec["pass"].append((start, time.monotonic() - start, len(subscribers)))
    return need
setattr(relay, entry, group_pass)
_shutdown = uvicorn.Server.shutdown
async def shutdown(self, *args, **kwargs):  # uvicorn re-raises SIGTERM after serve(): dump here
    with open(os.environ["AVATAR_ENGINE_TRACE"], "w") as f:
        json.dump(rec, f)
    await _shutdown(self, *args, **kwargs)
uvicorn.Server.shutdown = shutdown
"""
"""Each node's side of the trace (a ``sitecustomize``): dumped to a JSON file at shutdown."""


class RedisSampler(threading.Thread):
    """``CLIENT LIST`` every 50 ms: (time, largest pub/sub client output buffer in bytes)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            clients = self.client.client_list()
            omem = [int(c["omem"]) for c in clients if int(c.get("sub", 0)) > 0]
            self.samples.append((time.monotonic(), max(omem, default=0)))


class Probe(threading.Thread):
    """One fully decoding viewer of ``sim-0`` on a relaying node: (arrival, tick -> arrival in
    ms, keyframe, seq) per frame, so the latency can be followed over time (the lean viewers report
    only percentiles)."""

    def __init__(self, owner_url: str, url: str) -> None:
        super().__init__(daemon=True)
        self.owner_url, self.url = owner_url, url
        self.frames: list[tuple[float, float, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = float(httpx.get(self.owner_url + "/stats", timeout=10).json()["clock"]["monotonic_t0"])
        ws_url = self.url.replace("http://", "ws://") + "/sessions/sim-0/stream?lod=0"
        while not self.stop.is_set():
            try:
                with ws_connect(ws_url, open_timeout=5) as ws:
                    decoder = Decoder()
                    while not self.stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            data = ws.recv(timeout=0.2)
                            assert isinstance(data, bytes)
                            now = time.monotonic()
                            for out in [decoder.feed(data)]:
                                if isinstance(out, DecodedFrame):
                                    lag = (now - t0) * 1e3 - out.t_ms
                                    self.frames.append((now, lag, int(out.keyframe), out.seq))
            except (OSError, WebSocketException):
                self.stop.wait(0.2)


def _frames(owner: dict[str, Any], relays: list[dict[str, Any]]) -> np.ndarray:
    """Per relayed frame seen on a relaying node: offered, batch start, batch end, listener
    start and end (seconds, this machine's monotonic clock)."""
    names = {v: k for k, v in owner["channels"].items()}
    offered = {(names[c], s): t for t, c, s in owner["offer"]}
    batches = np.array(owner["execute"]).reshape(-1, 3)
    rows = []
    for rec in relays:
        names_here = {v: k for k, v in rec["channels"].items()}
        for start, end, c, seq, *_ in rec["listen"]:
            t = offered.get((names_here[c], seq))
            if seq < 0 or t is None:
                continue
            i = int(np.searchsorted(batches[:, 0], t))  # the first batch started after it
            if i >= len(batches):
                continue
            rows.append((t, batches[i, 0], batches[i, 1], start, end))
    return np.array(rows).reshape(-1, 5)


def _hops(frames: np.ndarray) -> dict[str, list[float]]:
    """p50/p99/max in ms of each hop."""
    if not len(frames):
        return {}
    names = ["tick_to_batch", "batch", "batch_end_to_listener", "listener", "tick_to_handed"]
    cols = [frames[:, 1] - frames[:, 0], frames[:, 2] - frames[:, 1], frames[:, 3] - frames[:, 2],
            frames[:, 4] - frames[:, 3], frames[:, 4] - frames[:, 0]]  # fmt: skip
    return {n: [round(1e3 * float(x), 2) for x in np.percentile(c, [50, 99, 100])]
            for n, c in zip(names, cols, strict=True)}  # fmt: skip


def _slices(frames: np.ndarray, omem: np.ndarray, probe: np.ndarray, t0: float, t1: float,
            ) -> list[dict[str, Any]]:  # fmt: skip
    """Per half second: p99 of tick -> listener and of batch end -> listener, Redis's largest
    pub/sub output buffer, the probe viewer's frames and tick -> arrival (p50, max)."""
    out = []
    for a in np.arange(t0, t1, 0.5):
        f = frames[(frames[:, 0] >= a) & (frames[:, 0] < a + 0.5)]
        m = omem[(omem[:, 0] >= a) & (omem[:, 0] < a + 0.5), 1]
        p = probe[(probe[:, 0] >= a) & (probe[:, 0] < a + 0.5), 1]
        out.append({
            "at_s": round(float(a - t0), 1), "frames": len(f),
            "tick_to_listener_p99_ms": round(1e3 * float(np.percentile(f[:, 3] - f[:, 0], 99)), 1)
            if len(f) else None,
            "redis_to_listener_p99_ms": round(1e3 * float(np.percentile(f[:, 3] - f[:, 2], 99)), 1)
            if len(f) else None,
            "redis_omem_max_kib": round(float(m.max(initial=0)) / 1024, 1),
            "probe_frames": len(p),
            "probe_ms_p50_max": [round(float(np.median(p)), 1), round(float(p.max()), 1)]
            if len(p) else None,
        })  # fmt: skip
    return out


def _buffered(relays: list[dict[str, Any]], t0: float, t1: float) -> list[float]:
    """p50/p99/max of the bytes read from Redis but not yet parsed when a message is handed."""
    b = np.array([r[4] for rec in relays for r in rec["listen"] if t0 <= r[0] < t1 and r[4] >= 0])
    return [round(float(x)) for x in np.percentile(b, [50, 99, 100])] if len(b) else []


def _batches(relays: list[dict[str, Any]], t0: float, t1: float) -> list[float]:
    """p50/max of the messages per listener batch (one, before batches)."""
    b = np.array([r[7] for rec in relays for r in rec["listen"] if t0 <= r[0] < t1])
    return [float(np.median(b)), float(b.max())] if len(b) else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--subscribers", type=int, default=600)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--save", type=Path, help="write the raw traces here (JSON)")
    parser.add_argument("--src", help="run the nodes on this source tree (a 'before')")
    args = parser.parse_args()
    print(f"load average {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    rport = _free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    redis_url = f"redis://127.0.0.1:{rport}/0"
    with tempfile.TemporaryDirectory() as hook:
        prefix = SRC_HOOK.format(src=args.src) if args.src else ""
        (Path(hook) / "sitecustomize.py").write_text(prefix + TRACE_HOOK)
        dumps = [Path(hook) / f"{n}.json" for n in "abc"]
        nodes: list[Node] = []
        sampler = RedisSampler(redis_url)
        probe: Probe | None = None
        try:
            for n, dump in zip("abc", dumps, strict=True):
                env = {"PYTHONPATH": hook, "AVATAR_ENGINE_TRACE": str(dump)}
                nodes.append(Node("--redis", redis_url, "--node-id", f"trace-{n}", env=env))
            for node in nodes:
                node.wait()
            sampler.start()
            began = time.monotonic()
            a, b, c = nodes
            probe = Probe(a.url, b.url)
            probe.start()
            report = _sim(a.url, a.livelink_port, args, args.subscribers, [b.url, c.url])
        finally:
            sampler.stop.set()
            if probe is not None:
                probe.stop.set()
            for node in nodes:
                node.stop(timeout=60)  # each dumps its trace on the way out
            redis_proc.terminate()
            redis_proc.wait(10)
        recs = [json.loads(dump.read_text()) for dump in dumps]
    if args.save:
        raw = {"nodes": recs, "omem": sampler.samples, "began": began,
               "probe": probe.frames if probe else [],
               "window": report["window_monotonic_s"]}  # fmt: skip
        args.save.write_text(json.dumps(raw))
    frames = _frames(recs[0], recs[1:])
    omem = np.array(sampler.samples).reshape(-1, 2)
    t0, t1 = report["window_monotonic_s"]
    phases = {"connect": (began, t0), "window": (t0, t1)}
    out: dict[str, Any] = {
        "src": args.src or "installed",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "viewers_frames_per_s": report["frames_per_subscriber_per_s"],
        "viewers_tick_to_receive_ms": report["tick_to_receive_ms"],
        "viewers_gaps": report["gaps"],
        "load_cpu_percent": report["load_cpu_percent"],
        "nodes": report.get("nodes"),
    }
    for name, (p0, p1) in phases.items():
        f = frames[(frames[:, 0] >= p0) & (frames[:, 0] < p1)]
        m = omem[(omem[:, 0] >= p0) & (omem[:, 0] < p1), 1]
        out[name] = {
            "seconds": round(p1 - p0, 1), "frames": len(f), "hops_ms_p50_p99_max": _hops(f),
            "redis_omem_max_kib": round(float(m.max(initial=0)) / 1024, 1),
            "unparsed_bytes_p50_p99_max": _buffered(recs[1:], p0, p1),
            "batch_messages_p50_max": _batches(recs[1:], p0, p1),
        }  # fmt: skip
    assert probe is not None
    probe_frames = np.array(probe.frames).reshape(-1, 4)
    out["slices"] = _slices(frames, omem, probe_frames, began, t1)
    for key, value in out.items():
        print(f"{key}: {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
