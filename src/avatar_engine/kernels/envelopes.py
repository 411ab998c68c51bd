"""The animate step's per-session gates and effective layer weights: one kernel call per tick.

Stage 1 of :meth:`avatar_engine.animation.Animator.step` (the speaking, capture-presence and
thinking envelopes) and stage 5 (the ``(n, L, R)`` effective compositor weights, see
:mod:`avatar_engine.animation.layers`) are a few dozen tiny numpy calls per tick whose fixed
cost dominates at a hundred sessions. Stage 5 reads only the envelopes and the per-session
layer configuration, which the stages in between (capture filter, emotion, procedural life)
never write, so both are this one call, ``fn(state, t, dt)``, before stage 2.

Semantics (the numpy reference below; numba and native match it, see the parity tests), per
session, with ``t``/``dt`` in seconds (float64). ``ramp(env, target, up, down)`` moves the
float32 ``env`` towards ``target``: ``min(env + up, target)`` if ``target > env``, else
``max(env - down, target)``, in float32 with ``up``/``down`` rounded to float32 (``min``/``max``
propagate NaN, as numpy's do); ``smooth(x) = x x (3 - 2 x)`` in float32:

1. ``speak_env = ramp(speak_env, clip(speaking, 0, 1), dt / speak_attack, dt / speak_release)``;
2. capture presence, with the float64 ``gap = t - last_capture`` and ``absent = gap >
   capture_timeout``: ``capture_dt = capture_new ? (absent ? 1/60 : clip(gap, 1/240, 0.25)) :
   0`` (float64, stored float32; the filter's sample interval, 0 = no new sample); a run that
   starts after a gap (``capture_new and absent and capture_env == 0``) restarts both One Euro
   filters (``filter_primed_m = filter_primed_c = 0``); ``last_capture = t`` where
   ``capture_new``; then ``capture_env = ramp(capture_env, (t - last_capture <=
   capture_timeout) ? 1 : 0, dt / capture_fade_in, dt / capture_fade_out)``;
3. ``thinking_env = ramp(thinking_env, thinking_on, f, f)`` with ``f = dt / thinking_fade``;
   ``thinking = smooth(thinking_env)``;
4. weights (float32, grouped as written), with ``cg = smooth(capture_env)`` and ``sp =
   speak_env``: ``g = weight[l]``, times ``cg`` for ``l = capture_layer``, times ``sp (1 -
   thinking)`` for ``l = speech_layer``; ``weights[l, r] = mask[l, r] g (1 - duck_speech[l,
   r] sp) (1 - duck_capture[l, r] cg)``.

The ``dt`` quotients are float64 (Python) divisions; the fades must be > 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol, cast

import numpy as np

from avatar_engine.kernels.backends import BackendName, require_native
from avatar_engine.types import B1, F32, F64, U8


class EnvelopeConsts(NamedTuple):
    """The envelope speeds (from :class:`EnvelopeParams`) and the layer geometry, fixed per
    animator.

    A NamedTuple so numba takes it as one typed argument; every backend reads it by name.
    """

    speak_attack: float
    speak_release: float
    capture_timeout: float
    capture_fade_in: float
    capture_fade_out: float
    thinking_fade: float
    n_layers: int
    n_regions: int
    capture_layer: int
    speech_layer: int


class EnvelopeBuffers(NamedTuple):
    """The per-session rows one tick reads and writes (the kernel's state struct).

    Every backend binds these by name (numpy and numba as attributes, C++ through
    ``getattr``), so their order is no contract. All arrays have the same ``n`` rows.
    """

    speaking: F32  # input, 0..1 (clipped)
    speak_env: F32  # in/out
    capture_new: B1  # input: a capture sample arrived this tick
    last_capture: F64  # in/out: time of the last sample (-inf: never)
    capture_env: F32  # in/out
    capture_dt: F32  # out: the filters' sample interval (0: no sample)
    filter_primed_m: U8  # in/out: the morph filter's primed flags (restart -> 0)
    filter_primed_c: U8  # in/out: the channel filter's
    thinking_on: F32  # input, 0 or 1
    thinking_env: F32  # in/out
    thinking: F32  # out: smooth(thinking_env)
    weight: F32  # (n, L) layer weights
    mask: F32  # (n, L, R)
    duck_speech: F32  # (n, L, R)
    duck_capture: F32  # (n, L, R)
    weights: F32  # (n, L, R) out: effective weights


class EnvelopesFn(Protocol):
    """One backend's envelopes and weights tick: ``(state, t, dt)``, in place on ``state``."""

    def __call__(self, state: EnvelopeBuffers, t: float, dt: float, /) -> None: ...


def _ramp(env: F32, target: F32, up: float, down: float) -> None:
    """Move ``env`` towards ``target`` by at most ``up``/``down`` (in place, float32)."""
    rising = target > env
    np.copyto(env, np.where(rising, np.minimum(env + up, target), np.maximum(env - down, target)))


def _smoothstep(x: F32) -> F32:
    return (x * x * (3.0 - 2.0 * x)).astype(np.float32)


def envelopes_numpy(c: EnvelopeConsts, b: EnvelopeBuffers, t: float, dt: float) -> None:
    """The reference tick (see the module docstring)."""
    # 1. speaking
    _ramp(b.speak_env, np.clip(b.speaking, 0.0, 1.0), dt / c.speak_attack, dt / c.speak_release)
    # 2. capture presence
    fresh = b.capture_new
    gap = t - b.last_capture
    absent = gap > c.capture_timeout
    b.capture_dt[...] = np.where(
        fresh, np.where(absent, 1.0 / 60.0, np.clip(gap, 1 / 240, 0.25)), 0.0
    )
    restart = fresh & absent & (b.capture_env == 0.0)
    b.filter_primed_m[restart] = 0  # a new capture run starts from its first sample
    b.filter_primed_c[restart] = 0
    b.last_capture[fresh] = t
    present = (t - b.last_capture) <= c.capture_timeout
    _ramp(b.capture_env, present.astype(np.float32), dt / c.capture_fade_in,
          dt / c.capture_fade_out)  # fmt: skip
    # 3. thinking
    fade = dt / c.thinking_fade
    _ramp(b.thinking_env, b.thinking_on, fade, fade)
    b.thinking[...] = _smoothstep(b.thinking_env)
    # 4. effective weights
    cap_gate = _smoothstep(b.capture_env)
    speaking = b.speak_env
    gate = b.weight.copy()
    gate[:, c.capture_layer] *= cap_gate
    gate[:, c.speech_layer] *= speaking * (1.0 - b.thinking)
    w = b.weights
    np.multiply(b.mask, gate[:, :, None], out=w)
    w *= 1.0 - b.duck_speech * speaking[:, None, None]
    w *= 1.0 - b.duck_capture * cap_gate[:, None, None]


def make_envelopes(consts: EnvelopeConsts, backend: BackendName) -> EnvelopesFn:
    """Compile the envelopes and weights tick for one backend; call as ``fn(state, t, dt)``."""
    if backend == "native":
        plan: EnvelopesFn = require_native().EnvelopesPlan(consts)
        return plan
    if backend == "numba":
        from avatar_engine.kernels import _numba_envelopes

        jit = cast(
            Callable[[EnvelopeConsts, EnvelopeBuffers, float, float], None],
            _numba_envelopes.envelopes_step,
        )

        def numba_fn(state: EnvelopeBuffers, t: float, dt: float, /) -> None:
            jit(consts, state, t, dt)

        return numba_fn

    def numpy_fn(state: EnvelopeBuffers, t: float, dt: float, /) -> None:
        envelopes_numpy(consts, state, t, dt)

    return numpy_fn
