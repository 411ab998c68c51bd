"""numba JIT of the envelopes and effective-weights tick; imported only for the numba backend.

Mirrors native/include/avatar_engine/envelopes.hpp (and the numpy reference in envelopes.py):
one loop over the rows, float64 for times and the capture interval, float32 for the envelopes
and weights with every constant cast to float32 first (a float64 literal would promote the
arithmetic), min/max that propagate NaN as numpy's do.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_TWO = np.float32(2.0)
_THREE = np.float32(3.0)


@numba.njit(cache=True, nogil=True, inline="always")
def _min(a: Any, b: Any) -> Any:
    """np.minimum: NaN if either is NaN."""
    return a if (a <= b or math.isnan(a)) else b


@numba.njit(cache=True, nogil=True, inline="always")
def _max(a: Any, b: Any) -> Any:
    """np.maximum: NaN if either is NaN."""
    return a if (a >= b or math.isnan(a)) else b


@numba.njit(cache=True, nogil=True, inline="always")
def _ramp(env: Any, target: Any, up: Any, down: Any) -> Any:
    if target > env:
        return _min(env + up, target)
    return _max(env - down, target)


@numba.njit(cache=True, nogil=True, inline="always")
def _smooth(x: Any) -> Any:
    return x * x * (_THREE - _TWO * x)


@numba.njit(cache=True, nogil=True)
def envelopes_step(c: Any, b: Any, t: float, dt: float) -> None:
    """``c``: an EnvelopeConsts, ``b``: an EnvelopeBuffers (both NamedTuples, read by name)."""
    n = b.speak_env.shape[0]
    speak_up = np.float32(dt / c.speak_attack)
    speak_down = np.float32(dt / c.speak_release)
    cap_up = np.float32(dt / c.capture_fade_in)
    cap_down = np.float32(dt / c.capture_fade_out)
    fade = np.float32(dt / c.thinking_fade)
    timeout = c.capture_timeout
    n_layers = c.n_layers
    n_regions = c.n_regions
    for s in range(n):
        # 1. speaking
        sp = _ramp(b.speak_env[s], _min(_max(b.speaking[s], _ZERO), _ONE), speak_up, speak_down)
        b.speak_env[s] = sp
        # 2. capture presence
        fresh = b.capture_new[s]
        gap = t - b.last_capture[s]
        absent = gap > timeout
        if fresh:
            if absent:
                b.capture_dt[s] = np.float32(1.0 / 60.0)
            else:
                b.capture_dt[s] = np.float32(_min(_max(gap, 1 / 240), 0.25))
            if absent and b.capture_env[s] == _ZERO:
                b.filter_primed_m[s] = 0
                b.filter_primed_c[s] = 0
            b.last_capture[s] = t
        else:
            b.capture_dt[s] = _ZERO
        present = _ONE if (t - b.last_capture[s]) <= timeout else _ZERO
        ce = _ramp(b.capture_env[s], present, cap_up, cap_down)
        b.capture_env[s] = ce
        # 3. thinking
        te = _ramp(b.thinking_env[s], b.thinking_on[s], fade, fade)
        b.thinking_env[s] = te
        th = _smooth(te)
        b.thinking[s] = th
        # 4. effective weights
        cg = _smooth(ce)
        for layer in range(n_layers):
            g = b.weight[s, layer]
            if layer == c.capture_layer:
                g = g * cg
            if layer == c.speech_layer:
                g = g * (sp * (_ONE - th))
            for r in range(n_regions):
                w = b.mask[s, layer, r] * g
                w = w * (_ONE - b.duck_speech[s, layer, r] * sp)
                b.weights[s, layer, r] = w * (_ONE - b.duck_capture[s, layer, r] * cg)
