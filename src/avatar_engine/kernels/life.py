"""The procedural-life tick: lids, breath, gaze and head springs, outputs, for all sessions.

Random events (a blink falling due, a new fixation, a micro-saccade, a stressed syllable, a new
breath length) are drawn for the few rows they concern by the event kernel
(:mod:`avatar_engine.kernels.life_events`), which
:class:`avatar_engine.animation.procedural.ProceduralLife` calls before this one (and after
it, for the breaths this tick wrapped); this kernel does the continuous per-tick math for
every row.

Semantics (the numpy reference below; numba and native match it, see the parity tests), per
session, with ``t``/``dt`` in seconds; float64 unless a stored array is float32:

* lid: if ``0 <= el < close + open`` with ``el = t - blink_t0``: closing half-cosine
  ``0.5 - 0.5 cos(pi el / close)`` while ``el < close``, else opening
  ``0.5 + 0.5 cos(pi (el - close) / open)``; times ``blink_amplitude``; else 0;
* breath: ``ph = phase + dt / cycle``; if ``ph >= 1``: ``ph -= floor(ph)`` and ``wrapped = 1``
  (the caller draws the next breath's length); ``b = 0.5 - 0.5 cos(pi ph / fi)`` while
  ``ph < fi`` else ``0.5 + 0.5 cos(pi (ph - fi) / (1 - fi))``, times
  ``1 - (1 - breath_speaking_scale) * speaking``;
* gaze: goal ``= look + fixation + thinking * avert + micro`` (float32, in that order), then a
  critically damped spring step (as :func:`avatar_engine.kernels.filters.spring_numpy`);
* head: goal per axis ``(0.6 sin(2 pi f0 t + p0) + 0.4 sin(2 pi f1 t + p1)) * amplitude *
  (1 + speaking_gain * speaking)``, plus ``follow * (look + fixation + thinking * avert)`` on
  yaw and pitch, plus ``breath_head_pitch * b`` on pitch; stored float32; spring step;
* brow ``*= exp(-dt / brow_decay)``;
* outputs: channels ``[head yaw, pitch, roll, eye yaw, eye pitch, 0, eye yaw, eye pitch, 0]``
  with ``eye = gaze - head[:2]`` (float32); features ``[lid, max(eye_yaw k, 0),
  max(eye_pitch k, 0), max(-eye_yaw k, 0), max(-eye_pitch k, 0), brow, b]`` with
  ``k = float32(1 / eye_morph_range)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, Protocol, cast

import numpy as np

from avatar_engine.kernels.backends import BackendName, require_native
from avatar_engine.kernels.filters import SpringState, spring_numpy
from avatar_engine.types import F32, F64, U8


class LifeConsts(NamedTuple):
    """The scalar parameters the kernel needs (from :class:`LifeParams`), fixed per animator.

    A NamedTuple so numba takes it as one typed argument; every backend reads it by name.
    """

    blink_amplitude: float
    inhale_fraction: float
    breath_speaking_scale: float
    breath_head_pitch: float
    amp_yaw: float
    amp_pitch: float
    amp_roll: float
    speaking_gain: float
    follow: float
    brow_decay: float
    eye_morph_range: float


class LifeBuffers(NamedTuple):
    """The per-session rows one tick reads and writes (the kernel's state struct).

    Every backend binds these by name (numpy and numba as attributes, C++ through
    ``getattr``), so their order is no contract. All arrays have the same ``n`` rows.
    """

    blink_t0: F64
    blink_close: F64
    blink_open: F64
    blink_value: F32
    breath_phase: F64
    breath_cycle: F64
    breath: F32
    wrapped: U8
    speaking: F32
    thinking: F32
    look: F32  # (n, 2)
    fixation: F32  # (n, 2)
    micro: F32  # (n, 2)
    avert: F32  # (n, 2)
    gaze_goal: F32  # (n, 2)
    gaze: F32  # (n, 2)
    gaze_vel: F32  # (n, 2)
    gaze_omega: F32
    head_freq: F64  # (n, 6): axis-major (yaw f0 f1, pitch f0 f1, roll f0 f1)
    head_phase: F64  # (n, 6)
    head_goal: F32  # (n, 3)
    head: F32  # (n, 3)
    head_vel: F32  # (n, 3)
    head_omega: F32
    brow: F32
    channels: F32  # (n, 9)
    features: F32  # (n, 7)


class LifeFn(Protocol):
    """One backend's procedural-life tick: ``(state, t, dt)``, writing the state's output planes."""

    def __call__(self, state: LifeBuffers, t: float, dt: float, /) -> None: ...


def life_numpy(c: LifeConsts, b: LifeBuffers, t: float, dt: float) -> None:
    """The reference tick (see the module docstring)."""
    # lid
    t0 = b.blink_t0
    close = b.blink_close
    opening = b.blink_open
    el = t - t0
    live = (el >= 0.0) & (el < close + opening)
    value = np.zeros(t0.shape, np.float64)
    if live.any():
        e, cl, op = el[live], close[live], opening[live]
        shape = np.where(
            e < cl,
            0.5 - 0.5 * np.cos(np.pi * (e / cl)),
            0.5 + 0.5 * np.cos(np.pi * ((e - cl) / op)),
        )
        value[live] = shape * c.blink_amplitude
    b.blink_value[...] = value
    # breath
    ph = b.breath_phase + dt / b.breath_cycle
    wrapped = ph >= 1.0
    ph = np.where(wrapped, ph - np.floor(ph), ph)
    b.breath_phase[...] = ph
    b.wrapped[...] = wrapped
    fi = c.inhale_fraction
    br = np.where(
        ph < fi,
        0.5 - 0.5 * np.cos(np.pi * (ph / fi)),
        0.5 + 0.5 * np.cos(np.pi * ((ph - fi) / (1.0 - fi))),
    )
    speaking = b.speaking.astype(np.float64)
    br = br * (1.0 - (1.0 - c.breath_speaking_scale) * speaking)
    b.breath[...] = br
    # gaze
    aim = b.look + b.fixation + b.thinking[:, None] * b.avert  # float32
    b.gaze_goal[...] = aim + b.micro
    spring_numpy(SpringState(b.gaze, b.gaze_vel, b.gaze_omega), dt, b.gaze_goal)
    # head
    waves = np.sin((2.0 * math.pi) * b.head_freq * t + b.head_phase)  # (n, 6)
    amp = np.array([c.amp_yaw, c.amp_pitch, c.amp_roll])
    idle = (0.6 * waves[:, 0::2] + 0.4 * waves[:, 1::2]) * amp
    idle = idle * (1.0 + c.speaking_gain * speaking)[:, None]
    idle[:, :2] += c.follow * aim.astype(np.float64)
    idle[:, 1] += c.breath_head_pitch * br
    b.head_goal[...] = idle
    spring_numpy(SpringState(b.head, b.head_vel, b.head_omega), dt, b.head_goal)
    b.brow[...] = b.brow.astype(np.float64) * math.exp(-dt / c.brow_decay)
    # outputs
    eye = b.gaze - b.head[:, :2]
    ch = b.channels
    ch[:, 0:3] = b.head
    ch[:, 3:5] = eye
    ch[:, 5] = 0.0
    ch[:, 6:8] = eye
    ch[:, 8] = 0.0
    k = np.float32(1.0 / c.eye_morph_range)
    f = b.features
    f[:, 0] = b.blink_value
    f[:, 1:3] = np.maximum(eye * k, np.float32(0.0))
    f[:, 3:5] = np.maximum(eye * -k, np.float32(0.0))
    f[:, 5] = b.brow
    f[:, 6] = b.breath


def make_life(consts: LifeConsts, backend: BackendName) -> LifeFn:
    """Compile the life tick for one backend; call as ``fn(state, t, dt)``."""
    if backend == "native":
        plan: LifeFn = require_native().LifePlan(consts)
        return plan
    if backend == "numba":
        from avatar_engine.kernels import _numba_life

        jit = cast(Callable[[LifeConsts, LifeBuffers, float, float], None], _numba_life.life_step)

        def numba_fn(state: LifeBuffers, t: float, dt: float, /) -> None:
            jit(consts, state, t, dt)

        return numba_fn

    def numpy_fn(state: LifeBuffers, t: float, dt: float, /) -> None:
        life_numpy(consts, state, t, dt)

    return numpy_fn
