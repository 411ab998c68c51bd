"""Procedural life for many sessions: blinks, breathing, gaze, idle head motion, speech beats.

Everything is a pure function of (seed, inputs, time): random draws come from per-session
counter-based streams (:mod:`avatar_engine.kernels.rng`), time is an argument, and state
lives in arrays with one row per session, so a 10-minute simulation replays exactly and a
session's behaviour does not depend on its row or its neighbours.

Outputs per tick, written into caller-owned rows:

* seven features per session (:data:`FEATURES`: blink, four gaze directions, brow raise,
  breath) that stand for ARKit shapes (:data:`PROC_ARKIT`: blinks, eye looks, brow raise,
  breath jaw); the animator maps them onto the rig through the rig's ``arkit52`` mapping;
* the nine rotation channels (:data:`avatar_engine.rigs.arkit.ROTATION_NAMES`): head
  yaw/pitch/roll, and each eye's yaw/pitch relative to the head (roll 0).

Sign conventions: positive yaw turns towards the avatar's own left, positive pitch looks up.
Events are rare (a blink every few seconds), so each tick draws random numbers only for the
few rows whose event fell due: one call of the event kernel
(:mod:`avatar_engine.kernels.life_events`: blinks, fixations, micro-saccades, stress beats)
before the continuous math for every row, one call of the life kernel
(:mod:`avatar_engine.kernels.life`), and one more small event-kernel call after it for the
breaths that wrapped (their next length). There is no per-session Python loop, and the numpy,
numba and native backends draw the same numbers.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from avatar_engine.animation.params import LifeParams
from avatar_engine.kernels import rng
from avatar_engine.kernels.backends import BackendName, resolve_backend
from avatar_engine.kernels.filters import settle_omega
from avatar_engine.kernels.life import LifeBuffers, LifeConsts, make_life
from avatar_engine.kernels.life_events import LifeEventBuffers, LifeEventConsts, make_life_events
from avatar_engine.rows import BlockField, RowTable, table_of
from avatar_engine.types import F32

PROC_ARKIT: Final[tuple[str, ...]] = (
    "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "jawOpen",
)  # fmt: skip
"""The ARKit shapes procedural life drives, in the column order of its output."""

(_BL, _BR, _UL, _UR, _DL, _DR, _IL, _IR, _OL, _OR, _BI, _BOL, _BOR, _JAW) = range(len(PROC_ARKIT))

FEATURES: Final[tuple[str, ...]] = (
    "blink", "look_left", "look_up", "look_right", "look_down", "brow_raise", "breath",
)  # fmt: skip
"""What procedural life computes per session per tick (each 0..1, gaze already scaled to
eye-look morph units). :meth:`ProceduralLife.feature_to_arkit` turns them into ARKit values;
the animator folds that matrix into the rig map, so the per-tick output is 7 numbers."""
_F_BLINK, _F_LEFT, _F_UP, _F_RIGHT, _F_DOWN, _F_BROW, _F_BREATH = range(len(FEATURES))

_TWO_PI: Final = 2.0 * np.pi


def event_consts(params: LifeParams) -> LifeEventConsts:
    """The event kernel's constants (:mod:`avatar_engine.kernels.life_events`) from ``params``."""
    b, g, h = params.blink, params.gaze, params.head
    return LifeEventConsts(
        interval_median=b.interval_median,
        interval_sigma=b.interval_sigma,
        interval_min=b.interval_min,
        interval_max=b.interval_max,
        duration_min=b.duration_min,
        duration_max=b.duration_max,
        close_fraction=b.close_fraction,
        double_probability=b.double_probability,
        double_gap_min=b.double_gap_min,
        double_gap_max=b.double_gap_max,
        defer_max=b.defer_max,
        spread_yaw=g.spread_yaw,
        spread_pitch=g.spread_pitch,
        speaking_spread=g.speaking_spread,
        fixation_min=g.fixation_min,
        fixation_mean=g.fixation_mean,
        micro_amplitude=g.micro_amplitude,
        micro_min=g.micro_min,
        micro_mean=g.micro_mean,
        nod_probability=h.nod_probability,
        nod_kick=h.nod_kick,
        brow_probability=h.brow_probability,
        cycle_jitter=params.breath.cycle_jitter,
    )


class ProceduralLife:
    """Procedural animation state of a row table's sessions (blocks ``life.*``, one row
    each); ``rows`` may be a capacity, for life used on its own."""

    keys = BlockField[np.uint64]()
    counters = BlockField[np.uint64]()
    next_blink = BlockField[np.float64]()
    blink_t0 = BlockField[np.float64]()
    blink_close = BlockField[np.float64]()
    blink_open = BlockField[np.float64]()
    blink_count = BlockField[np.int64]()
    blink_value = BlockField[np.float32]()
    breath_phase = BlockField[np.float64]()
    breath_period = BlockField[np.float64]()
    breath_cycle = BlockField[np.float64]()
    breath = BlockField[np.float32]()
    breath_wrapped = BlockField[np.uint8]()
    look = BlockField[np.float32]()
    fixation = BlockField[np.float32]()
    micro = BlockField[np.float32]()
    avert = BlockField[np.float32]()
    next_fixation = BlockField[np.float64]()
    next_micro = BlockField[np.float64]()
    gaze = BlockField[np.float32]()
    gaze_vel = BlockField[np.float32]()
    gaze_goal = BlockField[np.float32]()
    gaze_omega = BlockField[np.float32]()
    head_freq = BlockField[np.float64]()
    head_phase = BlockField[np.float64]()
    head = BlockField[np.float32]()
    head_vel = BlockField[np.float32]()
    head_goal = BlockField[np.float32]()
    head_omega = BlockField[np.float32]()
    brow = BlockField[np.float32]()
    features = BlockField[np.float32]()

    def __init__(
        self, rows: RowTable[Any] | int, params: LifeParams, backend: str | None = None
    ) -> None:
        self.params = params
        self.backend: BackendName = resolve_backend(backend)
        h = params.head
        self._tick = make_life(
            LifeConsts(
                blink_amplitude=params.blink.amplitude,
                inhale_fraction=params.breath.inhale_fraction,
                breath_speaking_scale=params.breath.speaking_scale,
                breath_head_pitch=params.breath.head_pitch,
                amp_yaw=h.amplitude[0],
                amp_pitch=h.amplitude[1],
                amp_roll=h.amplitude[2],
                speaking_gain=h.speaking_gain,
                follow=h.follow,
                brow_decay=h.brow_decay,
                eye_morph_range=params.gaze.eye_morph_range,
            ),
            self.backend,
        )
        self._events = make_life_events(event_consts(params), self.backend)
        declare = table_of(rows).declare
        self.keys = declare("life.keys", (rng.N_STREAMS,), np.uint64)
        self.counters = declare("life.counters", (rng.N_STREAMS,), np.uint64)
        # blinks
        self.next_blink = declare("life.next_blink", (), np.float64, np.inf)
        self.blink_t0 = declare("life.blink_t0", (), np.float64, -np.inf)
        self.blink_close = declare("life.blink_close", (), np.float64, 0.05)
        self.blink_open = declare("life.blink_open", (), np.float64, 0.1)
        self.blink_count = declare("life.blink_count", (), np.int64)
        self.blink_value = declare("life.blink_value", (), np.float32)
        # breathing
        self.breath_phase = declare("life.breath_phase", (), np.float64)
        self.breath_period = declare("life.breath_period", (), np.float64, 4.0)
        self.breath_cycle = declare("life.breath_cycle", (), np.float64, 4.0)
        self.breath = declare("life.breath", (), np.float32)
        self.breath_wrapped = declare("life.breath_wrapped", (), np.uint8)
        # gaze (yaw, pitch)
        self.look = declare("life.look", (2,), np.float32)
        self.fixation = declare("life.fixation", (2,), np.float32)
        self.micro = declare("life.micro", (2,), np.float32)
        self.avert = declare("life.avert", (2,), np.float32)
        self.next_fixation = declare("life.next_fixation", (), np.float64)
        self.next_micro = declare("life.next_micro", (), np.float64)
        self.gaze = declare("life.gaze", (2,), np.float32)
        self.gaze_vel = declare("life.gaze_vel", (2,), np.float32)
        self.gaze_goal = declare("life.gaze_goal", (2,), np.float32)
        self.gaze_omega = declare(
            "life.gaze_omega", (), np.float32, settle_omega(params.gaze.saccade_time)
        )
        # head (yaw, pitch, roll); head_freq/head_phase: two sines per axis
        self.head_freq = declare("life.head_freq", (6,), np.float64)
        self.head_phase = declare("life.head_phase", (6,), np.float64)
        self.head = declare("life.head", (3,), np.float32)
        self.head_vel = declare("life.head_vel", (3,), np.float32)
        self.head_goal = declare("life.head_goal", (3,), np.float32)
        self.head_omega = declare(
            "life.head_omega", (), np.float32, settle_omega(params.head.settle)
        )
        self.brow = declare("life.brow", (), np.float32)
        # output
        self.features = declare("life.features", (len(FEATURES),), np.float32)

    def start_row(self, row: int, seed: int, now: float) -> None:
        """Start a new row (its blocks at their defaults) from ``seed`` at time ``now``:
        its random streams, breathing rhythm, head motion and first events."""
        p = self.params
        self.keys[row] = rng.session_keys([seed])[0]
        rows = np.array([row], np.intp)
        u = rng.uniforms(self.keys, self.counters, rows, rng.STREAM_SETUP, 17)[0]
        # First blink, fixation and micro-saccade fall at random offsets so sessions that
        # start together do not blink together.
        self.next_blink[row] = now + u[0] * p.blink.interval_median
        self.breath_period[row] = p.breath.period_min + u[1] * (
            p.breath.period_max - p.breath.period_min
        )
        self.breath_cycle[row] = self.breath_period[row]
        self.breath_phase[row] = u[2]
        self.next_fixation[row] = now + u[3] * p.gaze.fixation_mean
        self.next_micro[row] = now + u[4] * p.gaze.micro_mean
        self.head_freq[row] = p.head.freq_min + u[5:11] * (p.head.freq_max - p.head.freq_min)
        self.head_phase[row] = _TWO_PI * u[11:17]

    def draw_aversion(self, row: int) -> None:
        """Pick where a session looks while thinking: up, to a random side."""
        g = self.params.gaze
        u = rng.uniforms(self.keys, self.counters, np.array([row], np.intp), rng.STREAM_THINK, 3)[0]
        side = 1.0 if u[0] < 0.5 else -1.0
        self.avert[row, 0] = side * (
            g.thinking_yaw_min + u[1] * (g.thinking_yaw_max - g.thinking_yaw_min)
        )
        self.avert[row, 1] = g.thinking_pitch_min + u[2] * (
            g.thinking_pitch_max - g.thinking_pitch_min
        )

    # -- per tick -------------------------------------------------------------------------

    def update(
        self,
        t: float,
        dt: float,
        n: int,
        speaking: F32,
        thinking: F32,
        in_word: npt.NDArray[np.bool_],
        stress: F32,
        channels: F32,
    ) -> F32:
        """Advance the first ``n`` sessions to time ``t``.

        ``speaking``/``thinking`` are 0..1 envelopes, ``in_word`` says a word is being spoken
        (blinks wait for its end), ``stress`` holds this tick's stressed-syllable strengths
        (0 = none). Writes the rotation channels into ``channels[:n]`` and returns the feature
        rows ``self.features[:n]`` (a view; see :data:`FEATURES`).

        One call of the event kernel draws the tick's events
        (:mod:`avatar_engine.kernels.life_events`), one call of the life kernel does the
        continuous math for every row (:mod:`avatar_engine.kernels.life`), and a second,
        small call of the event kernel draws new breath lengths for the rows whose breath
        wrapped in that tick.
        """
        events = self._event_buffers(n, speaking, in_word, stress)
        self._events(events, t)
        self._tick(
            LifeBuffers(
                blink_t0=events.blink_t0,
                blink_close=events.blink_close,
                blink_open=events.blink_open,
                blink_value=self.blink_value[:n],
                breath_phase=self.breath_phase[:n],
                breath_cycle=events.breath_cycle,
                breath=self.breath[:n],
                wrapped=events.wrapped,
                speaking=events.speaking,
                thinking=thinking[:n],
                look=self.look[:n],
                fixation=events.fixation,
                micro=events.micro,
                avert=self.avert[:n],
                gaze_goal=self.gaze_goal[:n],
                gaze=self.gaze[:n],
                gaze_vel=self.gaze_vel[:n],
                gaze_omega=self.gaze_omega[:n],
                head_freq=self.head_freq[:n],
                head_phase=self.head_phase[:n],
                head_goal=self.head_goal[:n],
                head=self.head[:n],
                head_vel=events.head_vel,
                head_omega=self.head_omega[:n],
                brow=events.brow,
                channels=channels[:n],
                features=self.features[:n],
            ),
            t,
            dt,
        )
        # A new breath gets its own length (so the rhythm is not a metronome): the tick kernel
        # flagged the rows whose breath wrapped, and the next tick reads their breath_cycle.
        self._events.breaths(events)
        return self.features[:n]

    def _event_buffers(
        self, n: int, speaking: F32, in_word: npt.NDArray[np.bool_], stress: F32
    ) -> LifeEventBuffers:
        """The first ``n`` rows of what the event kernel reads and writes."""
        return LifeEventBuffers(
            keys=self.keys[:n],
            counters=self.counters[:n],
            in_word=in_word[:n],
            speaking=speaking[:n],
            stress=stress[:n],
            next_blink=self.next_blink[:n],
            blink_t0=self.blink_t0[:n],
            blink_close=self.blink_close[:n],
            blink_open=self.blink_open[:n],
            blink_count=self.blink_count[:n],
            next_fixation=self.next_fixation[:n],
            fixation=self.fixation[:n],
            next_micro=self.next_micro[:n],
            micro=self.micro[:n],
            head_vel=self.head_vel[:n],
            brow=self.brow[:n],
            breath_period=self.breath_period[:n],
            breath_cycle=self.breath_cycle[:n],
            wrapped=self.breath_wrapped[:n],
        )

    def feature_to_arkit(self) -> F32:
        """``(F, P)`` matrix from :data:`FEATURES` to :data:`PROC_ARKIT` values (gains folded)."""
        g = self.params
        k = np.zeros((len(FEATURES), len(PROC_ARKIT)), np.float32)
        k[_F_BLINK, [_BL, _BR]] = 1.0
        k[_F_LEFT, [_OL, _IR]] = 1.0  # looking to the avatar's left: left eye out, right eye in
        k[_F_RIGHT, [_IL, _OR]] = 1.0
        k[_F_UP, [_UL, _UR]] = 1.0
        k[_F_DOWN, [_DL, _DR]] = 1.0
        k[_F_DOWN, [_BL, _BR]] = g.gaze.lid_follow  # upper lids follow a downward look
        k[_F_BROW, _BI] = g.head.brow_inner
        k[_F_BROW, [_BOL, _BOR]] = g.head.brow_outer
        k[_F_BREATH, _JAW] = g.breath.jaw_open
        return k

    def arkit(self, n: int) -> F32:
        """The ARKit values of the first ``n`` sessions (for plots and tests, not per tick)."""
        out: F32 = self.features[:n] @ self.feature_to_arkit()
        return out
