"""Every tunable number of the expression stage, in one documented place.

Units: seconds, hertz, and *channel units* for rotations (1.0 = the rig channel's
``scale_deg``, 40 degrees by default, the same normalisation as Live Link's rotation values).
Morph values are in [0, 1] unless a rig's limits say otherwise. ``docs/expression.md`` explains
where each default comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BlinkParams:
    """Spontaneous blinks: log-normal inter-blink intervals, asymmetric lid motion."""

    interval_median: float = 3.2
    """Median seconds between blink onsets (log-normal; mean = median * exp(sigma**2 / 2))."""
    interval_sigma: float = 0.5
    """Log-normal shape: the spread of intervals (0.5 gives a coefficient of variation ~0.5)."""
    interval_min: float = 0.6
    interval_max: float = 12.0
    duration_min: float = 0.10
    duration_max: float = 0.20
    """Whole blink (closing + opening) is drawn uniformly in [duration_min, duration_max]."""
    close_fraction: float = 0.35
    """Share of the blink spent closing: lids close faster than they open."""
    double_probability: float = 0.08
    """Chance that a blink is followed at once by a second one."""
    double_gap_min: float = 0.05
    double_gap_max: float = 0.20
    """Open time between the two blinks of a double blink."""
    defer_max: float = 0.8
    """A blink that falls mid-word waits for the word to end, at most this long."""
    amplitude: float = 1.0


@dataclass(frozen=True, slots=True)
class BreathParams:
    """Breathing: a slow asymmetric cycle (inhale shorter than exhale)."""

    period_min: float = 3.6
    period_max: float = 4.8
    """Per-session period drawn in this range (12.5-17 breaths per minute at rest)."""
    cycle_jitter: float = 0.12
    """Each new breath's length varies by up to +-12 % around the session's period."""
    inhale_fraction: float = 0.4
    head_pitch: float = 0.006
    """Head pitch at full inhale, channel units (0.006 * 40 = 0.24 degrees)."""
    jaw_open: float = 0.012
    """jawOpen at full inhale: lips part a hair."""
    speaking_scale: float = 0.5
    """Breath amplitude while speaking (speech owns the mouth anyway)."""


@dataclass(frozen=True, slots=True)
class GazeParams:
    """Fixations, saccades and micro-saccades around a look-at target."""

    fixation_min: float = 0.35
    fixation_mean: float = 1.5
    """Fixation lengths: fixation_min + exponential, mean fixation_mean."""
    spread_yaw: float = 0.05
    spread_pitch: float = 0.03
    """Standard deviation of fixation points around the target (0.05 = 2 degrees)."""
    speaking_spread: float = 1.0
    """Extra spread while speaking (people look away more while talking): x (1 + this)."""
    saccade_time: float = 0.045
    """Seconds for the eye spring to settle to 2 % on a new fixation (saccades take 30-60 ms)."""
    micro_min: float = 0.25
    micro_mean: float = 0.7
    micro_amplitude: float = 0.004
    """Micro-saccade size (0.004 * 40 = 0.16 degrees)."""
    eye_morph_range: float = 0.75
    """Eye rotation (channel units) at which eyeLook* morphs reach 1."""
    lid_follow: float = 0.25
    """Upper lids follow the eyes down: eyeBlink gains this much per unit of eyeLookDown."""
    thinking_yaw_min: float = 0.15
    thinking_yaw_max: float = 0.30
    thinking_pitch_min: float = 0.08
    thinking_pitch_max: float = 0.20
    """Gaze aversion while thinking: up and to one side, drawn per thinking episode."""


@dataclass(frozen=True, slots=True)
class HeadParams:
    """Idle head drift, gaze following, and speech-linked nods and brow raises."""

    amplitude: tuple[float, float, float] = (0.025, 0.018, 0.010)
    """Idle drift amplitude per axis (yaw, pitch, roll), channel units."""
    freq_min: float = 0.04
    freq_max: float = 0.22
    """Each axis sums two sines with per-session frequencies in this range (Hz)."""
    speaking_gain: float = 0.8
    """Idle drift grows by this factor while speaking."""
    follow: float = 0.3
    """Share of a gaze shift the head takes (eyes do the rest)."""
    settle: float = 0.5
    """Seconds for the head spring to settle to 2 %."""
    nod_probability: float = 0.7
    nod_kick: float = 0.9
    """Downward pitch velocity (channel units/s) per unit stress: a ~1.1 degree nod at 1.0."""
    brow_probability: float = 0.4
    brow_inner: float = 0.35
    brow_outer: float = 0.25
    brow_decay: float = 0.3
    """Brow raise on a stressed syllable: peak morph values and decay time constant (s)."""


@dataclass(frozen=True, slots=True)
class EnvelopeParams:
    """How fast the per-session gates (speaking, capture presence, thinking) move."""

    speak_attack: float = 0.06
    speak_release: float = 0.25
    capture_timeout: float = 0.12
    """No capture frame for this long counts as a dropout."""
    capture_fade_in: float = 0.15
    capture_fade_out: float = 0.30
    """Hand-over times; timeout + fade_out <= 0.5 s is the documented hand-over bound."""
    thinking_fade: float = 0.35
    thinking_emotion: float = 0.7
    """Weight of the rig's ``thinking`` preset while thinking."""
    thinking_damp: float = 0.6
    """Other emotions are scaled by (1 - this) while thinking."""


@dataclass(frozen=True, slots=True)
class LifeParams:
    """All procedural-life parameters; pass a modified copy to :class:`Animator`."""

    blink: BlinkParams = field(default_factory=BlinkParams)
    breath: BreathParams = field(default_factory=BreathParams)
    gaze: GazeParams = field(default_factory=GazeParams)
    head: HeadParams = field(default_factory=HeadParams)
    envelope: EnvelopeParams = field(default_factory=EnvelopeParams)
