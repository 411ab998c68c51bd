"""Where capture-to-frame time goes inside the server at 100 publishing sessions (issue 16).

    .venv/bin/python benchmarks/fanout_capture_trace.py [--duration 5]

Runs a real ``avatar-engine serve`` with a ``sitecustomize`` that records, in the server, when
each capture frame reached ``Runtime.on_frame`` or ``on_frames`` (a burst), with its jaw value,
and when every tick started and ended; then the same load as ``fanout_floor.py --only capture``
(100 sessions, the lean Live Link publisher, one viewer each). Printed: how far apart the
arrivals of one published instant (a jaw flip of all 100 sessions, sent within about a
millisecond) are spread inside the server, how many ticks carry one burst, how many datagrams
one read of the capture socket takes and how long reading and storing them lasts per datagram
(wall time of the reader's ``drain``, the engine's ``push_captures`` included), how long an
arrival waits for the end of the tick that carries it (the first to end after it: a tick reads
the capture sockets first), and each part of a tick (capture read, engine step,
events/egress/voice, encode and fan-out) in wall time and in the server thread's CPU time: wall
minus CPU is time the tick waited for a core. Beside them the viewers' tick -> receive: what it
adds to the tick is the wait after the fan-out (the last group's frame leaves at the tick's end)
and the viewers' wake-up. The load average is printed; the trace adds a few microseconds per
frame and tick, and its thread writes once a second only what is new (writing the whole trace
each second held the GIL ever longer: viewers saw p99 about 60 ms and 55 frames/s).
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

TRACE_HOOK = """import json, os, threading, time
import avatar_engine.server.runtime as rt
from avatar_engine.rigs.arkit import ARKIT_NAMES
JAW = ARKIT_NAMES.index("jawOpen")
frames, ticks = [], []
_on_frame, _tick = rt.Runtime.on_frame, rt.Runtime.tick
def on_frame(self, session_id, arkit, rotations, t_arrival, source):
    frames.append((time.monotonic(), session_id, float(arkit[JAW])))
    return _on_frame(self, session_id, arkit, rotations, t_arrival, source)
_on_frames = rt.Runtime.on_frames
def on_frames(self, session_ids, arkit, rotations, t_arrival, sources):
    now = time.monotonic()
    frames.extend((now, s, float(a[JAW])) for s, a in zip(session_ids, arkit))
    return _on_frames(self, session_ids, arkit, rotations, t_arrival, sources)
import avatar_engine.engine.engine as en
import avatar_engine.server.streams as st
_marks = []
def mark():
    _marks.append((time.monotonic(), time.thread_time()))
def tick(self, t):
    _marks.clear()
    mark()
    try:
        return _tick(self, t)
    finally:
        mark()
        if len(_marks) == 5:  # a tick that ran: start, read, step, fan-out start, end
            ticks.append([x for m in _marks for x in m])
def phase(fn, before):
    def wrapped(*args, **kwargs):
        if before:
            mark()
        try:
            return fn(*args, **kwargs)
        finally:
            if not before:
                mark()
    return wrapped
rt.Runtime._read_capture = phase(rt.Runtime._read_capture, False)
en.Engine.step = phase(en.Engine.step, False)
st.RigStreams.encode_and_fan_out = phase(st.RigStreams.encode_and_fan_out, True)
rt.Runtime.on_frame, rt.Runtime.on_frames, rt.Runtime.tick = on_frame, on_frames, tick
import avatar_engine.ingest.receivers as rc
drains = []
_drain = rc.DatagramReceiver.drain
def drain(self):
    t = time.monotonic()
    n = _drain(self)
    if n:
        drains.append((t, n, time.monotonic()))
    return n
rc.DatagramReceiver.drain = drain
def dump():  # only what is new each second: a whole dump would hold the GIL for ever longer
    out = os.environ["AVATAR_ENGINE_TRACE"]
    done = {"frames": 0, "ticks": 0, "drains": 0}
    while True:
        time.sleep(1.0)
        part = {}
        for name, items in (("frames", frames), ("ticks", ticks), ("drains", drains)):
            end = len(items)
            part[name] = items[done[name]:end]
            done[name] = end
        with open(out, "a") as f:
            f.write(json.dumps(part) + "\\n")
threading.Thread(target=dump, daemon=True).start()
"""
"""The server's side of the trace (a ``sitecustomize``): what is new appended once a second to
a file, one JSON object a line."""


def _read_trace(path: Path) -> dict[str, list[Any]]:
    """The trace file's lines joined: every frame, tick and read in order."""
    trace: dict[str, list[Any]] = {"frames": [], "ticks": [], "drains": []}
    for line in path.read_text().splitlines():
        for name, items in json.loads(line).items():
            trace[name] += items
    return trace


def analyse(trace: dict[str, Any]) -> dict[str, object]:
    """Arrival spread of each flip burst and each flip arrival's wait for the next tick."""
    last: dict[str, float] = {}
    flips = []
    for now, session, jaw in trace["frames"]:
        if session in last and abs(jaw - last[session]) > 0.3:  # the published jaw flipped
            flips.append(now)
        last[session] = jaw
    ticks = np.array(trace["ticks"])
    arrivals = np.sort(np.array(flips))
    bursts = np.split(arrivals, np.flatnonzero(np.diff(arrivals) > 0.05) + 1)
    spread = [1e3 * (b[-1] - b[0]) for b in bursts if len(b) > 1]
    # The tick that carries an arrival is the first to end after it: a tick reads the capture
    # sockets at its start, so an arrival inside a tick is that tick's.
    end = ticks[:, 8]  # rows: (wall, cpu) at start, read, step, fan-out start, end
    nxt = np.searchsorted(end, arrivals)
    ok = nxt < len(ticks)
    wait_end = 1e3 * (end[nxt[ok]] - arrivals[ok])
    per_burst = [len(np.unique(np.searchsorted(end, b))) for b in bursts if len(b) > 1]

    def pct(v: object) -> list[float]:
        return [round(float(x), 2) for x in np.percentile(np.asarray(v), [50, 99])]

    drains = np.array(trace["drains"]).reshape(-1, 3)  # (start, datagrams, end) of each read
    big = drains[drains[:, 1] >= 10]  # reads of a burst, not of a stray packet
    per_datagram = 1e6 * (big[:, 2] - big[:, 0]) / big[:, 1]
    return {
        "flip_arrivals": len(arrivals),
        "datagrams_per_read_p50_max": [float(np.median(drains[:, 1])), int(drains[:, 1].max())],
        "read_and_store_us_per_datagram_wall_p50_p90": [
            round(float(x), 2) for x in np.percentile(per_datagram, [50, 90])
        ],
        "bursts": len(spread),
        "burst_spread_ms_p50_max": [round(float(np.median(spread)), 2), round(max(spread), 2)],
        "ticks_per_burst_p50_max": [float(np.median(per_burst)), max(per_burst)],
        "arrival_to_tick_end_ms_p50_p99": pct(wait_end),
        "tick_ms_p50_p99": pct(1e3 * (end - ticks[:, 0])),
    } | phases(ticks)


def phases(ticks: np.ndarray) -> dict[str, object]:
    """Each part of a tick, p50 / p99 in ms of wall time and of the server thread's CPU time
    (wall minus CPU: the tick waited for a core, or was preempted)."""
    out: dict[str, object] = {}
    names = ("read_capture", "engine_step", "events_egress_voice", "encode_and_fan_out")
    for k, name in enumerate((*names, "whole_tick")):
        a, b = (0, 4) if name == "whole_tick" else (k, k + 1)
        wall = 1e3 * (ticks[:, 2 * b] - ticks[:, 2 * a])
        cpu = 1e3 * (ticks[:, 2 * b + 1] - ticks[:, 2 * a + 1])
        out[f"{name}_ms_wall_cpu_p50_p99"] = [
            round(float(x), 3)
            for x in (*np.percentile(wall, [50, 99]), *np.percentile(cpu, [50, 99]))
        ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--probes", type=int, default=10,
                        help="sessions whose viewer decodes every frame (0: all)")  # fmt: skip
    add_viewer_options(parser)
    args = parser.parse_args()
    args.sessions = 100
    print(f"load average {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    with tempfile.TemporaryDirectory() as hook:
        (Path(hook) / "sitecustomize.py").write_text(TRACE_HOOK)
        out = str(Path(hook) / "trace.json")
        server = ServerProcess(env={"PYTHONPATH": hook, "AVATAR_ENGINE_TRACE": out})
        try:
            server.wait_ready(60)
            r = _sim(server, args, sessions=100, subscribers=100, probes=args.probes)
            time.sleep(1.5)  # one more dump after the run
            trace = _read_trace(Path(out))
        finally:
            server.stop()
    print(json.dumps({"publish_to_receive_ms": r["publish_to_receive_ms"],
                      "schedule_to_receive_ms": r["schedule_to_receive_ms"],
                      "tick_to_receive_ms": r["tick_to_receive_ms"],
                      "frames_per_viewer_per_s": r["frames_per_subscriber_per_s"],
                      "server_cpu_percent": r["server_cpu_percent"],
                      "load_cpu_percent": r["load_cpu_percent"],
                      "tick_errors": r["server_tick"]["errors"],
                      "load_average": r["load_average"][0]} | analyse(trace)))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
