"""asv: the whole animate step per backend at S in {1, 64, 1024} sessions (issue 5).

One timed call is one tick for every session: speech curve sampling and its viseme -> morph
retarget into the speech plane, fresh capture rows for a quarter of the sessions, then
:meth:`Animator.step` (envelopes, One Euro on capture, emotion, procedural life, compositor,
constraints). The scenario is a busy one: half the sessions speak, a third hold an emotion,
a sixteenth are "thinking", stressed syllables arrive every 20 ticks.

Run with ``asv run --config benchmarks/asv.conf.json`` (``-E existing`` for the current
environment), or print a table directly::

    python benchmarks/benchmarks/bench_animate.py [--seconds 0.5] [--rig cc4-extended]
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

from avatar_engine.animation import Animator
from avatar_engine.kernels.backends import available_backends
from avatar_engine.kernels.retarget import Retargeter
from avatar_engine.kernels.sampling import CurveKeys, CurveSampler
from avatar_engine.rigs.profile import load_rig

SESSIONS = (1, 64, 1024)
RIG = "cc4-extended"
FPS = 60.0
KEYS = 64
CAPTURE_FRAMES = 120


def _viseme_names(rig_name: str) -> list[str]:
    try:
        from avatar_engine.speech.visemes import VISEMES

        return list(VISEMES)
    except ImportError:  # speech package not installed: use the rig's own viseme vocabulary
        return list(load_rig(rig_name).spec.mappings["visemes"])


class AnimateStep:
    params = (list(available_backends()), list(SESSIONS))
    param_names = ("backend", "sessions")

    def setup(self, backend: str, sessions: int, rig_name: str = RIG) -> None:
        rig = load_rig(rig_name)
        g = np.random.default_rng(0)
        self.n = sessions
        self.anim = Animator(rig, sessions, backend=backend)
        for row in range(sessions):
            self.anim.add_session(seed=row)
            if row % 3 == 0:
                self.anim.set_emotion(row, {"happy": 0.6, "surprised": 0.2}, transition=0.5)
            if row % 16 == 5:
                self.anim.set_thinking(row, True)
        self.speaking = np.arange(sessions) % 2 == 0
        self.anim.speaking[:sessions] = self.speaking
        # speech: a keyframed viseme timeline per session, sampled every tick
        names = _viseme_names(rig_name)
        self.sampler = CurveSampler(backend)
        self.times = np.ascontiguousarray(
            np.sort(g.uniform(0.0, 20.0, (sessions, KEYS)), axis=1), np.float64
        )
        self.values = g.uniform(0.0, 1.0, (sessions, KEYS, len(names))).astype(np.float32)
        self.counts = np.full(sessions, KEYS, np.int32)
        self.keys = CurveKeys(self.times, self.values, self.counts)
        self.visemes = np.zeros((sessions, len(names)), np.float32)
        self.speech_map = Retargeter(rig, source="visemes", source_names=names, backend=backend)
        self.tvec = np.zeros(sessions, np.float64)
        # capture: a quarter of the sessions stream (already retargeted) frames
        self.n_capture = max(1, sessions // 4) if sessions > 1 else 0
        self.capture = g.uniform(0, 1, (CAPTURE_FRAMES, self.n_capture, rig.morph_count)).astype(
            np.float32
        )
        self.tick = 0
        for _ in range(30):  # JIT warm-up and envelopes settled, outside the timing
            self.time_animate_step(backend, sessions)

    def time_animate_step(self, backend: str, sessions: int) -> None:
        self.tick += 1
        t = self.tick / FPS
        a = self.anim
        self.tvec.fill(t % 20.0)
        self.sampler.run(self.keys, self.tvec, self.visemes)
        self.speech_map.run(self.visemes, a.speech_morphs[: self.n])
        if self.n_capture:
            a.capture_morphs[: self.n_capture] = self.capture[self.tick % CAPTURE_FRAMES]
            a.capture_new[: self.n_capture] = True
        if self.tick % 20 == 0:
            a.stress[: self.n] = self.speaking
        a.step(t, 1.0 / FPS)


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
    parser.add_argument("--rig", default=RIG)
    args = parser.parse_args()
    m = load_rig(args.rig).morph_count
    print(f"whole animate step, rig {args.rig} ({m} morphs + 9 channels), best of 15 runs")
    print(f"{'backend':<10}{'S':>6}{'us/tick':>12}{'us/session-frame':>20}")
    for backend in available_backends():
        for s in SESSIONS:
            case = AnimateStep()
            case.setup(backend, s, args.rig)
            per = _best(lambda c=case, b=backend, s=s: c.time_animate_step(b, s), args.seconds)
            print(f"{backend:<10}{s:>6}{per * 1e6:>12.1f}{per / s * 1e6:>20.3f}")


if __name__ == "__main__":
    main()
