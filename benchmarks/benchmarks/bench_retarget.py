"""asv: the retarget stage per backend and batch size, against a dict-per-frame baseline.

Run with ``asv run --config benchmarks/asv.conf.json`` (or ``-E existing`` to use the current
environment); ``python benchmarks/report.py`` prints the same figures as a table.
"""

from __future__ import annotations

import numpy as np

from avatar_engine.kernels.backends import available_backends
from avatar_engine.kernels.retarget import Retargeter
from avatar_engine.rigs.arkit import ARKIT_NAMES
from avatar_engine.rigs.profile import RigProfile, load_rig

SESSIONS = (1, 64, 1024)
RIG = "cc4-extended"


def make_weights(sessions: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((sessions, 52), dtype=np.float32)


class DictRetargeter:
    """What a straightforward implementation does: one frame at a time, names in a dict."""

    def __init__(self, rig: RigProfile) -> None:
        table = rig.spec.mappings["arkit52"]
        self.table = {src: list(targets.items()) for src, targets in table.items()}
        self.limits = {
            m: (float(lo), float(hi))
            for m, lo, hi in zip(rig.morph_names, rig.lower, rig.upper, strict=True)
        }

    def map_frame(self, frame: dict[str, float]) -> dict[str, float]:
        out = dict.fromkeys(self.limits, 0.0)
        for name, value in frame.items():
            for morph, weight in self.table.get(name, ()):
                out[morph] += weight * value
        for morph, (lo, hi) in self.limits.items():
            out[morph] = min(max(out[morph], lo), hi)
        return out


class Retarget:
    params = (list(available_backends()), list(SESSIONS))
    param_names = ("backend", "sessions")

    def setup(self, backend: str, sessions: int) -> None:
        self.stage = Retargeter(load_rig(RIG), backend=backend)
        self.weights = make_weights(sessions)
        self.out = np.empty((sessions, self.stage.n_outputs), dtype=np.float32)
        self.stage.run(self.weights, self.out)  # JIT warm-up outside the timing

    def time_retarget(self, backend: str, sessions: int) -> None:
        self.stage.run(self.weights, self.out)


class RetargetDictBaseline:
    params = (list(SESSIONS),)
    param_names = ("sessions",)

    def setup(self, sessions: int) -> None:
        self.baseline = DictRetargeter(load_rig(RIG))
        weights = make_weights(sessions)
        self.frames = [dict(zip(ARKIT_NAMES, row.tolist(), strict=True)) for row in weights]

    def time_dict_per_frame(self, sessions: int) -> None:
        for frame in self.frames:
            self.baseline.map_frame(frame)
