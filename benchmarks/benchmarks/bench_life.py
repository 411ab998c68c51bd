"""asv: procedural life's per-tick kernels per backend at S in {100, 1024} sessions.

* ``time_events``: one tick's event draws (blinks, fixations, micro-saccades, stress beats),
  one call of :func:`avatar_engine.kernels.life_events.make_life_events`'s kernel, with the
  clock advancing 1/60 s per call so events fall due at their natural rate (a few rows a tick);
* ``time_breaths``: the breath re-draw after the tick (one row in 240 wrapped, as at 60 fps);
* ``time_update``: the whole :meth:`ProceduralLife.update` (both of the above, the life tick
  kernel and the Python glue around them).

Run with ``asv run --config benchmarks/asv.conf.json`` (``-E existing`` for the current
environment), or print a table directly::

    python benchmarks/benchmarks/bench_life.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

from avatar_engine.animation import LifeParams, ProceduralLife
from avatar_engine.kernels.backends import available_backends

SESSIONS = (100, 1024)
FPS = 60.0


class LifeKernels:
    params = (list(available_backends()), list(SESSIONS))
    param_names = ("backend", "sessions")

    def setup(self, backend: str, sessions: int) -> None:
        n = sessions
        self.life = ProceduralLife(n, LifeParams(), backend)
        for row in range(n):
            self.life.start_row(row, row, 0.0)
        self.speaking = np.where(np.arange(n) % 4 == 0, 1.0, 0.0).astype(np.float32)
        self.zeros = np.zeros(n, np.float32)
        self.in_word = np.zeros(n, np.bool_)
        self.stress = np.zeros(n, np.float32)
        self.channels = np.zeros((n, 9), np.float32)
        self.tick = 0
        for _ in range(120):  # JIT warm-up and events spread out, outside the timing
            self.time_update(backend, sessions)
        self.state = self.life._event_buffers(n, self.speaking, self.in_word, self.stress)
        self.wrapped = np.zeros(n, np.uint8)
        self.wrapped[::240] = 1
        self.breath_state = self.state._replace(wrapped=self.wrapped)

    def _stress(self) -> None:
        self.stress[:] = 0.0
        if self.tick % 20 == 0:  # a stressed syllable for the speakers every 20 ticks
            self.stress[:] = self.speaking

    def time_events(self, backend: str, sessions: int) -> None:
        self.tick += 1
        self._stress()
        self.life._events(self.state, self.tick / FPS)

    def time_breaths(self, backend: str, sessions: int) -> None:
        self.life._events.breaths(self.breath_state)

    def time_update(self, backend: str, sessions: int) -> None:
        self.tick += 1
        self._stress()
        n = len(self.zeros)
        self.life.update(
            self.tick / FPS,
            1.0 / FPS,
            n,
            self.speaking,
            self.zeros,
            self.in_word,
            self.stress,
            self.channels,
        )


def _best(fn: object, budget: float, repeat: int = 15) -> float:
    """Best per-call wall time over ``repeat`` short runs: on a shared machine the minimum is
    the run least disturbed by other processes."""
    timer = timeit.Timer(fn)  # type: ignore[arg-type]
    number, _ = timer.autorange()
    runs = max(1, int(number * budget / repeat / max(timer.timeit(number), 1e-9)))
    return min(timer.repeat(repeat=repeat, number=runs)) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per cell")
    args = parser.parse_args()
    print("procedural life per tick, best of 15 runs, us/tick")
    print(f"{'backend':<10}{'S':>6}{'events':>10}{'breaths':>10}{'update':>10}")
    for backend in available_backends():
        for s in SESSIONS:
            case = LifeKernels()
            case.setup(backend, s)
            cells = [
                _best(lambda c=case, b=backend, s=s, m=m: getattr(c, m)(b, s), args.seconds)
                for m in ("time_events", "time_breaths", "time_update")
            ]
            print(f"{backend:<10}{s:>6}" + "".join(f"{x * 1e6:>10.1f}" for x in cells))


if __name__ == "__main__":
    main()
