"""asv: the animate step's envelopes and effective layer weights per backend, S in {100, 1024}.

``time_envelopes`` is one call of :func:`avatar_engine.kernels.envelopes.make_envelopes`'s
kernel (stages 1 and 5 of :meth:`Animator.step`): speaking, capture-presence and thinking
envelopes and the ``(S, L, R)`` weights, with every row's capture fresh each tick (a capture
server's worst case), a quarter of the sessions speaking and one in seven thinking, the clock
advancing 1/60 s per call. ``time_buffers`` is the Python side the animator adds per tick
(its state struct, kept between ticks); ``time_buffers_rebuilt`` slices the blocks into a new
struct, as after rows are added or the table grows.

Run with ``asv run --config benchmarks/asv.conf.json`` (``-E existing`` for the current
environment), or print a table directly::

    python benchmarks/benchmarks/bench_envelopes.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

from avatar_engine import load_rig
from avatar_engine.animation import Animator
from avatar_engine.animation.animator import envelope_consts
from avatar_engine.kernels.backends import available_backends, resolve_backend
from avatar_engine.kernels.envelopes import make_envelopes

SESSIONS = (100, 1024)
FPS = 60.0


class EnvelopeKernels:
    params = (list(available_backends()), list(SESSIONS))
    param_names = ("backend", "sessions")

    def setup(self, backend: str, sessions: int) -> None:
        n = sessions
        self.anim = Animator(load_rig("arkit52"), capacity=n, backend="numpy")
        for row in range(n):
            self.anim.add_session(seed=row)
        self.anim.set_layer(0, "emotion", mode="max", weight=0.8, mask={"mouth": 0.5})
        self.anim.speaking[:n] = np.where(np.arange(n) % 4 == 0, 1.0, 0.0)
        self.anim.thinking_on[:n] = np.where(np.arange(n) % 7 == 1, 1.0, 0.0)
        self.fn = make_envelopes(envelope_consts(self.anim.params), resolve_backend(backend))
        self.state = self.anim._envelope_buffers(n)
        self.tick = 0
        for _ in range(10):  # JIT warm-up outside the timing
            self.time_envelopes(backend, sessions)

    def time_envelopes(self, backend: str, sessions: int) -> None:
        self.tick += 1
        self.state.capture_new[:] = True
        self.fn(self.state, self.tick / FPS, 1.0 / FPS)

    def time_buffers(self, backend: str, sessions: int) -> None:
        self.anim._envelope_buffers(sessions)

    def time_buffers_rebuilt(self, backend: str, sessions: int) -> None:
        self.anim._env_buffers = None
        self.anim._envelope_buffers(sessions)


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
    print("envelopes + effective weights per tick, best of 15 runs, us/tick")
    print(f"{'backend':<10}{'S':>6}{'kernel':>10}{'buffers':>10}{'rebuilt':>10}")
    for backend in available_backends():
        for s in SESSIONS:
            case = EnvelopeKernels()
            case.setup(backend, s)
            cells = [
                _best(lambda c=case, b=backend, s=s, m=m: getattr(c, m)(b, s), args.seconds)
                for m in ("time_envelopes", "time_buffers", "time_buffers_rebuilt")
            ]
            print(f"{backend:<10}{s:>6}" + "".join(f"{x * 1e6:>10.1f}" for x in cells))


if __name__ == "__main__":
    main()
