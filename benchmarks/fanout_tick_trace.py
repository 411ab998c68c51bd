"""Where the fan-out's ticks go, inside the server, with N lean WebSocket viewers (issue 16).

    .venv/bin/python benchmarks/fanout_tick_trace.py [--viewers 500] [--stalled 0] [--duration 4]

Runs a real ``avatar-engine serve`` with a ``sitecustomize`` that records, in the server, every
tick (start, duration, lateness behind its slot, kicked by input or scheduled), every garbage
collection (``gc.callbacks``: start, duration, generation), every capture frame's arrival and
every group's pass (``offer_to_groups``: one call per tick and rig, its duration split
evenly over its groups; viewers, session); then the load of
``fanout_floor.py --only server`` (10 sessions, the lean Live Link publisher, N viewers).
Printed, for the connect phase and for the measured window apart: ticks of each kind, tick
durations, scheduled ticks' lateness and those late by more than a period, collections per
generation; for the window also the fan-out's cost per viewer, and per session the capture
frames that arrived against the frames sent, with the times of the gaps (a frame interval over
25 ms) relative to the window's start. The trace adds a few microseconds per tick and group;
its absolute costs are a little above the untraced server's. The load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fanout_floor import _sim, add_viewer_options
from server_process import ServerProcess

TRACE_HOOK = """import gc, json, os, time
import uvicorn
import avatar_engine.server.runtime as rt
import avatar_engine.server.streams as streams
rec = {"gc": [], "tick": [], "offer": [], "frame": []}
kicked, started = [False], [0.0]
def on_gc(phase, info):
    if phase == "start":
        started[0] = time.monotonic()
    else:
        rec["gc"].append((started[0], time.monotonic() - started[0], info["generation"]))
gc.callbacks.append(on_gc)
_tick, _kick, _on_frame = rt.Runtime.tick, rt.Runtime._kick, rt.Runtime.on_frame
_on_frames = rt.Runtime.on_frames
_offer = streams.offer_to_groups
def tick(self, t):
    start = time.monotonic()
    _tick(self, t)
    rec["tick"].append((start, time.monotonic() - start, start - t, int(kicked[0])))
def kick(self):
    kicked[0] = True
    try:
        _kick(self)
    finally:
        kicked[0] = False
def session_no(session):
    return int(session.rsplit("-", 1)[1]) if session.startswith("sim-") else -1
def on_frame(self, session_id, arkit, rotations, t_arrival, source):
    rec["frame"].append((t_arrival, session_no(session_id)))
    return _on_frame(self, session_id, arkit, rotations, t_arrival, source)
def on_frames(self, session_ids, arkit, rotations, t_arrival, sources):
    rec["frame"].extend((t_arrival, session_no(s)) for s in session_ids)
    return _on_frames(self, session_ids, arkit, rotations, t_arrival, sources)
def offer_to_groups(table, payload, bounds, order, keyframes):
    start = time.monotonic()
    _offer(table, payload, bounds, order, keyframes)
    share = (time.monotonic() - start) / max(1, len(order))  # one call: its time split evenly
    for group in (table.sets[k] for k in order.tolist()):
        first = next(iter(group), None)
        rec["offer"].append((start, share, len(group),
                             session_no(first.session) if first is not None else -1))
rt.Runtime.tick, rt.Runtime._kick, rt.Runtime.on_frame = tick, kick, on_frame
rt.Runtime.on_frames = on_frames
streams.offer_to_groups = offer_to_groups
_shutdown = uvicorn.Server.shutdown
async def shutdown(self, *args, **kwargs):  # uvicorn re-raises SIGTERM after serve(): dump here
    with open(os.environ["AVATAR_ENGINE_TRACE"], "w") as f:
        json.dump(rec, f)
    await _shutdown(self, *args, **kwargs)
uvicorn.Server.shutdown = shutdown
"""
"""The server's side of the trace (a ``sitecustomize``): dumped to a JSON file at shutdown."""


def _phase(rec: dict[str, Any], t0: float, t1: float) -> dict[str, object]:
    """Ticks and collections between ``t0`` and ``t1`` (this machine's monotonic clock)."""
    ticks = np.array(rec["tick"]).reshape(-1, 4)
    ticks = ticks[(ticks[:, 0] >= t0) & (ticks[:, 0] < t1)]
    scheduled = ticks[ticks[:, 3] == 0]
    gcs = np.array(rec["gc"]).reshape(-1, 3)
    gcs = gcs[(gcs[:, 0] >= t0) & (gcs[:, 0] < t1)]
    out: dict[str, object] = {
        "seconds": round(t1 - t0, 2),
        "ticks_scheduled": len(scheduled),
        "ticks_kicked": len(ticks) - len(scheduled),
        "tick_ms_p50_p99_max": _pct(1e3 * ticks[:, 1], [50, 99, 100]),
        "scheduled_lateness_ms_p50_p99_max": _pct(1e3 * scheduled[:, 2], [50, 99, 100]),
        "scheduled_late_by_a_period": int((scheduled[:, 2] > 1 / 60).sum()),
    }
    for gen in range(3):
        g = gcs[gcs[:, 2] == gen]
        total, longest = 1e3 * float(g[:, 1].sum()), 1e3 * float(g[:, 1].max(initial=0))
        out[f"gc{gen}_count_total_ms_max_ms"] = [len(g), round(total, 1), round(longest, 1)]
    return out


def _pct(values: Any, ps: list[float]) -> list[float]:
    return [round(float(x), 2) for x in np.percentile(values, ps)] if len(values) else []


def _sessions(rec: dict[str, Any], t0: float, t1: float, n: int) -> list[dict[str, object]]:
    """Per session: capture frames in, frames sent, and when the sent frames' gaps were."""
    offers = np.array(rec["offer"]).reshape(-1, 4)
    frames = np.array(rec["frame"]).reshape(-1, 2)
    out = []
    for session in range(n):
        sent = offers[(offers[:, 3] == session) & (offers[:, 0] >= t0) & (offers[:, 0] < t1), 0]
        arrived = frames[(frames[:, 1] == session) & (frames[:, 0] >= t0) & (frames[:, 0] < t1)]
        gaps = sent[1:][np.diff(sent) > 0.025]
        out.append({"session": session, "inputs": len(arrived), "frames_sent": len(sent),
                    "gaps_at_ms": [round(1e3 * (g - t0)) for g in gaps]})  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--stalled", type=int, default=0)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--show-sessions", type=int, default=3)
    add_viewer_options(parser)
    args = parser.parse_args()
    args.sessions = 10
    print(f"load average {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    with tempfile.TemporaryDirectory() as hook:
        (Path(hook) / "sitecustomize.py").write_text(TRACE_HOOK)
        out = Path(hook) / "trace.json"
        server = ServerProcess(env={"PYTHONPATH": hook, "AVATAR_ENGINE_TRACE": str(out)})
        try:
            server.wait_ready(60)
            began = time.monotonic()
            r = _sim(server, args, subscribers=args.viewers + args.stalled, stalled=args.stalled)
        finally:
            server.stop()
        rec = json.loads(out.read_text())
    t0, t1 = r["window_monotonic_s"]
    offers = np.array(rec["offer"]).reshape(-1, 4)
    inside = offers[(offers[:, 0] >= t0) & (offers[:, 0] < t1)]
    report = {
        "viewers": args.viewers, "stalled": args.stalled,
        "frames_per_viewer_per_s": r["frames_per_subscriber_per_s"], "gaps": r["gaps"],
        "p99_ms": r["tick_to_receive_ms"].get("p99"), "server_cpu_percent": r["server_cpu_percent"],
        "load_cpu_percent": r["load_cpu_percent"], "load_average": r["load_average"][0],
        "connect_phase": _phase(rec, began, t0), "window": _phase(rec, t0, t1),
        "offers_per_s": round(len(inside) / (t1 - t0), 1),
        "offer_us_per_viewer": round(1e6 * inside[:, 1].sum() / max(1, inside[:, 2].sum()), 2),
        "sessions": _sessions(rec, t0, t1, args.show_sessions),
    }  # fmt: skip
    for key, value in report.items():
        print(f"{key}: {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
