"""Emotion state for many sessions: a weighted mix of presets moving towards a target.

Each session holds a mix over :data:`EMOTION_NAMES` (``{"happy": 0.6, "surprised": 0.2}``)
scaled by an overall intensity. A change starts from wherever the face is now (so a change
in the middle of a transition never jumps) and moves with one of two easings:

* ``cubic``: cubic in/out over exactly ``transition`` seconds (predictable, for scripted cues);
* ``spring``: a critically damped spring that settles to 2 % in ``transition`` seconds
  (smooth when targets change often, e.g. emotion detected from audio).

After reaching the target the mix may ``hold`` for a while and then decay back to the
session's baseline over ``decay`` seconds (``hold=inf`` keeps it). The per-tick update is
vectorised over sessions; the rig's ``emotions`` mapping turns the mix into morphs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

import numpy as np

from avatar_engine.kernels.filters import SpringFn, SpringState, settle_omega
from avatar_engine.rows import BlockField, RowTable, table_of
from avatar_engine.types import F32, F64

EMOTION_NAMES: Final[tuple[str, ...]] = (
    "neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted",
    "thinking", "listening", "confused", "smirk", "concerned",
)  # fmt: skip
"""Preset names: neutral, Ekman's six, and five conversational ones. Rig files map each onto
their morphs under ``mappings.emotions``."""

EMOTION_INDEX: Final[dict[str, int]] = {n: i for i, n in enumerate(EMOTION_NAMES)}
THINKING: Final = EMOTION_INDEX["thinking"]
EASING_CUBIC: Final = 0
EASING_SPRING: Final = 1


class Easing(StrEnum):
    """How an emotion moves to a new target; the value is the ``easing`` name requests send."""

    CUBIC = "cubic"
    """Cubic in/out over exactly the transition time (predictable, for scripted cues)."""
    SPRING = "spring"
    """A critically damped spring that settles to 2 % in the transition time (smooth when
    targets change often)."""


def cubic_in_out(u: F64) -> F64:
    """The cubic in/out easing on [0, 1]: zero slope at both ends."""
    return np.where(u < 0.5, 4.0 * u * u * u, 1.0 - 0.5 * (2.0 - 2.0 * u) ** 3)


def mix_vector(mix: Mapping[str, float], intensity: float = 1.0) -> F32:
    """A validated ``(E,)`` weight vector from a name -> weight mapping."""
    if not math.isfinite(intensity) or intensity < 0.0:
        raise ValueError(f"intensity must be a finite number >= 0, got {intensity!r}")
    vec = np.zeros(len(EMOTION_NAMES), np.float32)
    for name, weight in mix.items():
        key = name.strip().lower()
        if key not in EMOTION_INDEX:
            raise ValueError(f"unknown emotion {name!r}; known: {', '.join(EMOTION_NAMES)}")
        if not math.isfinite(weight) or weight < 0.0:
            raise ValueError(f"emotion {name!r}: weight must be finite and >= 0, got {weight!r}")
        vec[EMOTION_INDEX[key]] = weight * intensity
    return vec


class EmotionState:
    """Emotion mixes of the sessions of a row table, one row each (blocks ``emotion.*``)."""

    current = BlockField[np.float32]()
    velocity = BlockField[np.float32]()
    source = BlockField[np.float32]()
    target = BlockField[np.float32]()
    base = BlockField[np.float32]()
    start = BlockField[np.float64]()
    duration = BlockField[np.float64]()
    hold = BlockField[np.float64]()
    decay = BlockField[np.float64]()
    easing = BlockField[np.int8]()
    omega = BlockField[np.float32]()
    mix = BlockField[np.float32]()
    """The last mix asked for, before intensity (so intensity can change on its own)."""
    intensity = BlockField[np.float32]()
    live = BlockField[np.bool_]()
    """Rows still moving (transition, hold-then-decay, or an unsettled spring); rows at
    rest cost nothing per tick."""

    def __init__(self, rows: RowTable[Any] | int) -> None:
        e = (len(EMOTION_NAMES),)
        declare = table_of(rows).declare
        self.current = declare("emotion.current", e, np.float32)
        self.velocity = declare("emotion.velocity", e, np.float32)
        self.source = declare("emotion.source", e, np.float32)
        self.target = declare("emotion.target", e, np.float32)
        self.base = declare("emotion.base", e, np.float32)
        self.start = declare("emotion.start", (), np.float64)
        self.duration = declare("emotion.duration", (), np.float64, 1e-3)
        self.hold = declare("emotion.hold", (), np.float64, np.inf)
        self.decay = declare("emotion.decay", (), np.float64, 1.0)
        self.easing = declare("emotion.easing", (), np.int8, EASING_CUBIC)
        self.omega = declare("emotion.omega", (), np.float32, settle_omega(0.4))
        self.mix = declare("emotion.mix", e, np.float32)
        self.intensity = declare("emotion.intensity", (), np.float32, 1.0)
        self.live = declare("emotion.live", (), np.bool_)

    def set_base(self, row: int, base: F32, now: float) -> None:
        """Change the mix a session decays back to.

        A row still before its decay just remembers it. A row already decaying (or decayed)
        moves from where it is to the new baseline over its decay time, so a baseline change
        never jumps.
        """
        decay_start = self.start[row] + self.duration[row] + self.hold[row]
        self.base[row] = base
        if now >= decay_start:
            easing = Easing.CUBIC if self.easing[row] == EASING_CUBIC else Easing.SPRING
            decay = float(self.decay[row])
            self.set(row, base, now=now, transition=decay, easing=easing, hold=np.inf, decay=decay)
        else:
            self.live[row] = True

    def set(
        self,
        row: int,
        target: F32,
        *,
        now: float,
        transition: float,
        easing: Easing,
        hold: float,
        decay: float,
    ) -> None:
        """Start a transition of one session from its current mix to ``target``."""
        try:
            easing = Easing(easing)
        except ValueError:
            raise ValueError(f"easing must be 'cubic' or 'spring', got {easing!r}") from None
        for label, value in (("transition", transition), ("decay", decay)):
            if not math.isfinite(value) or value < 0.0:
                raise ValueError(f"{label} must be a finite number of seconds >= 0")
        if math.isnan(hold) or hold < 0.0:
            raise ValueError("hold must be >= 0 seconds (inf holds forever)")
        self.source[row] = self.current[row]
        self.target[row] = target
        self.start[row] = now
        self.duration[row] = max(transition, 1e-3)
        self.hold[row] = hold
        self.decay[row] = max(decay, 1e-3)
        self.easing[row] = EASING_CUBIC if easing is Easing.CUBIC else EASING_SPRING
        self.omega[row] = settle_omega(max(transition, 1e-3))
        if easing is Easing.CUBIC:
            self.velocity[row] = 0.0
        self.live[row] = True

    def update(self, t: float, dt: float, n: int, spring: SpringFn) -> F32:
        """Advance the first ``n`` sessions to time ``t``; returns ``current[:n]`` (a view).

        Only live rows are computed; a row goes to rest once its value is final (cubic: the
        target with an infinite hold, or the baseline after the decay; spring: settled to
        1e-6 with no pending decay), and :meth:`set` wakes it.
        """
        rows = np.flatnonzero(self.live[:n])
        if rows.size == 0:
            return self.current[:n]
        start = self.start[rows]
        end = start + self.duration[rows]
        hold = self.hold[rows]
        decay_start = end + hold
        decay_end = decay_start + self.decay[rows]
        decaying = t >= decay_start
        target = self.target[rows]
        base = self.base[rows]
        goal = np.where(decaying[:, None], base, target)
        cur = self.current[rows]
        vel = self.velocity[rows]
        spring(SpringState(cur, vel, self.omega[rows]), dt, goal)
        cubic = self.easing[rows] == EASING_CUBIC
        if cubic.any():
            u_in = np.clip((t - start) / self.duration[rows], 0.0, 1.0)[:, None]
            with np.errstate(invalid="ignore"):  # inf - inf while holding forever
                u_out = np.nan_to_num(np.clip((t - decay_start) / self.decay[rows], 0.0, 1.0))
            src = self.source[rows].astype(np.float64)
            tgt = target.astype(np.float64)
            eased = np.where(
                decaying[:, None],
                tgt + (base - tgt) * cubic_in_out(u_out[:, None]),
                src + (tgt - src) * cubic_in_out(u_in),
            )
            cur[cubic] = eased[cubic]
            vel[cubic] = 0.0
        self.current[rows] = cur
        self.velocity[rows] = vel
        final_time = np.where(np.isinf(hold), t >= end, t >= decay_end)
        settled = (np.abs(cur - goal).max(axis=1) < 1e-6) & (np.abs(vel).max(axis=1) < 1e-5)
        done = final_time & (cubic | settled)
        self.live[rows[done]] = False
        return self.current[:n]
