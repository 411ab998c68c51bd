"""asv: the speech stages. G2P words/s, timeline per 20-word sentence, sampling per backend.

Run with ``asv run --config benchmarks/asv.conf.json`` (``-E existing`` for the current
environment), or print the figures directly::

    python benchmarks/benchmarks/bench_speech.py [--seconds 0.5]

Targets (issue 3): a 20-word sentence to a complete timeline in <= 5 ms; sampling <= 1 us per
session-frame with the native backend at S = 1024.
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

from avatar_engine.kernels.backends import available_backends
from avatar_engine.kernels.sampling import CurveBank
from avatar_engine.speech.coarticulation import CHANNELS
from avatar_engine.speech.g2p import english
from avatar_engine.speech.lipsync import from_text
from avatar_engine.speech.text import Word, normalize

# 20 words:
SENTENCE = (
    "Maybe the baby wants a bottle of warm milk before we all go for a long walk by the river."
)
PARAGRAPH = " ".join([SENTENCE] * 10)
SESSIONS = (1, 64, 1024)
KEYS = 512


class G2P:
    """Words per second through normalisation + CMUdict/rules (``time_words`` is 200 words)."""

    def setup(self) -> None:
        self.g = english()
        self.words = [t for t in normalize(PARAGRAPH) if isinstance(t, Word)]
        self.oov = [Word(w.text + "ix") for w in self.words]  # out of vocabulary: the rules
        self.g.units(self.words)

    def time_words(self) -> None:
        self.g.units(self.words)

    def time_words_out_of_vocabulary(self) -> None:
        self.g.units(self.oov)


class Timeline:
    """A 20-word sentence -> complete keyframed timeline (G2P, durations, co-articulation)."""

    def setup(self) -> None:
        from_text(SENTENCE)

    def time_sentence(self) -> None:
        from_text(SENTENCE)


class Sampling:
    """One tick: every session sampled at its own time (64 keys used of 512, 45 channels)."""

    params = (list(available_backends()), list(SESSIONS))
    param_names = ("backend", "sessions")

    def setup(self, backend: str, sessions: int) -> None:
        self.bank = CurveBank(sessions, CHANNELS, capacity=KEYS, backend=backend)
        keys = from_text(SENTENCE).keys
        n = min(len(keys), KEYS)
        for row in range(sessions):
            self.bank.splice(row, keys.times[:n] + 0.01 * row, keys.values[:n])
        g = np.random.default_rng(0)
        self.t = g.uniform(0.0, float(keys.times[n - 1]), sessions)
        self.out = np.empty((sessions, CHANNELS), np.float32)
        self.bank.sample(self.t, self.out)

    def time_sample(self, backend: str, sessions: int) -> None:
        self.bank.sample(self.t, self.out)


def _best(fn: object, seconds: float) -> float:
    timer = timeit.Timer(fn)  # type: ignore[arg-type]
    number, _ = timer.autorange()
    reps = max(3, int(seconds / max(timer.timeit(number) / number * number, 1e-9)))
    return min(timer.repeat(repeat=min(reps, 15), number=number)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    g = G2P()
    g.setup()
    t = _best(g.time_words, args.seconds)
    print(f"G2P (CMUdict)            {len(g.words) / t:12,.0f} words/s")
    t = _best(g.time_words_out_of_vocabulary, args.seconds)
    print(f"G2P (letter-to-sound)    {len(g.oov) / t:12,.0f} words/s")
    tl = Timeline()
    tl.setup()
    t = _best(tl.time_sentence, args.seconds)
    print(f"timeline, 20-word sentence {t * 1e3:10.3f} ms   (target <= 5 ms)")
    for backend in available_backends():
        for sessions in SESSIONS:
            s = Sampling()
            s.setup(backend, sessions)
            t = _best(lambda s=s, b=backend, n=sessions: s.time_sample(b, n), args.seconds)
            print(
                f"sampling {backend:7s} S={sessions:5d}  {t * 1e6:10.2f} us/tick  "
                f"{t / sessions * 1e9:8.1f} ns per session-frame"
            )


if __name__ == "__main__":
    main()
