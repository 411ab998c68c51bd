"""asv: the engine's whole step for capture-only sessions, per backend (issue 16, item 8).

One timed call is what a tick of an iPhone-driven server does before encoding: a Live Link
frame for every session stored in one call (:meth:`Engine.push_captures`), then
:meth:`Engine.step` (capture retarget, the speech stage with nobody speaking, the animate
step). At 100 sessions this is the engine's share of capture-to-frame latency.

Run with ``asv run --config benchmarks/asv.conf.json`` (``-E existing`` for the current
environment), or print a table directly::

    python benchmarks/benchmarks/bench_engine.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

from avatar_engine.engine.engine import Engine
from avatar_engine.kernels.backends import available_backends
from avatar_engine.rigs.arkit import ARKIT_COUNT, ROTATION_COUNT

SESSIONS = (100, 1000)
FPS = 60.0
FRAMES = 60


class CaptureOnlyStep:
    params = (list(available_backends()), list(SESSIONS))
    param_names = ("backend", "sessions")

    def setup(self, backend: str, sessions: int) -> None:
        self.engine = Engine(backend=backend)
        self.ids = [f"phone-{i}" for i in range(sessions)]
        for sid in self.ids:
            self.engine.create_session(sid, t=0.0)
        g = np.random.default_rng(0)
        self.arkit = g.uniform(0.0, 1.0, (FRAMES, sessions, ARKIT_COUNT)).astype(np.float32)
        self.rotations = np.zeros((sessions, ROTATION_COUNT), np.float32)
        self.tick = 0
        for _ in range(30):  # JIT warm-up and envelopes settled, outside the timing
            self.time_capture_step(backend, sessions)

    def time_capture_step(self, backend: str, sessions: int) -> None:
        self.tick += 1
        t = 1.0 + self.tick / FPS
        frame = self.arkit[self.tick % FRAMES]
        self.engine.push_captures(self.ids, frame, self.rotations, t, source="livelink")
        self.engine.step(t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15, help="runs of 100 ticks; best kept")
    args = parser.parse_args()
    print("capture-only engine step (push_captures + step), best of the runs")
    print(f"{'backend':<10}{'S':>6}{'us/tick':>12}{'us/session-frame':>20}")
    for backend in available_backends():
        for s in SESSIONS:
            case = CaptureOnlyStep()
            case.setup(backend, s)
            runs = timeit.repeat(lambda c=case, b=backend, s=s: c.time_capture_step(b, s),
                                 repeat=args.repeat, number=100)  # fmt: skip
            per = min(runs) / 100
            print(f"{backend:<10}{s:>6}{per * 1e6:>12.1f}{per / s * 1e6:>20.3f}")


if __name__ == "__main__":
    main()
