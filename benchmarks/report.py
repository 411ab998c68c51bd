"""Print the retarget figures as a table: session-frames per second per backend and batch size,
and the ratio to the dict-per-frame baseline. Uses the asv benchmark classes directly.

    python benchmarks/report.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from avatar_engine.kernels.backends import available_backends
from benchmarks.bench_retarget import SESSIONS, Retarget, RetargetDictBaseline


def best_seconds(fn: object, budget: float) -> float:
    """Best-of-5 per-call time, each run sized to about budget/5 seconds."""
    timer = timeit.Timer(fn)  # type: ignore[arg-type]
    number, _ = timer.autorange()
    runs = max(1, int(number * budget / 5 / max(timer.timeit(number), 1e-9)))
    return min(timer.repeat(repeat=5, number=runs)) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per cell")
    args = parser.parse_args()

    baseline: dict[int, float] = {}
    for s in SESSIONS:
        case = RetargetDictBaseline()
        case.setup(s)
        baseline[s] = s / best_seconds(lambda c=case, s=s: c.time_dict_per_frame(s), args.seconds)

    print(f"retarget ARKit 52 -> cc4-extended ({Retarget().__class__.__name__} stage), one core")
    print(f"{'backend':<10}{'S':>6}{'us/call':>12}{'session-frames/s':>20}{'x dict':>10}")
    for s in SESSIONS:
        rate = baseline[s]
        print(f"{'dict':<10}{s:>6}{s / rate * 1e6:>12.2f}{rate:>20,.0f}{1.0:>10.1f}")
    for backend in available_backends():
        for s in SESSIONS:
            case = Retarget()
            case.setup(backend, s)
            per_call = best_seconds(lambda c=case: c.stage.run(c.weights, c.out), args.seconds)
            rate = s / per_call
            print(
                f"{backend:<10}{s:>6}{per_call * 1e6:>12.2f}{rate:>20,.0f}"
                f"{rate / baseline[s]:>10.1f}"
            )


if __name__ == "__main__":
    main()
