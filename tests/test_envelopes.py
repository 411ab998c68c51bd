"""Envelope kernel (stages 1 and 5 of the animate step): numba and native match the numpy reference.

The reference (:func:`envelopes_numpy`) is the numpy code the animator ran before the kernel
existed; ``test_animation_animator.py`` holds the behaviour it gives the whole step (capture
hand-over, speaking, thinking, layer settings). Here every accelerated backend is run beside it
on the same states, tick by tick, over ten simulated seconds of 64 sessions whose capture
comes in runs with gaps longer than the capture timeout (so the filters restart), short
dropouts, speaking and thinking that toggle, layer settings set per session through
:meth:`LayerConfig.set`, jittered and very short ticks: the envelopes, sample intervals, last
capture times and filter restarts must be identical, and the float32 products (the thinking
gate and the weights) within one unit in the last place (exact unless a compiler fuses a
multiply-add).
"""

from __future__ import annotations

import numpy as np
import pytest

from avatar_engine.animation import LifeParams
from avatar_engine.animation.animator import envelope_consts
from avatar_engine.animation.layers import LAYER_NAMES, N_LAYERS, N_REGIONS, LayerConfig
from avatar_engine.kernels.backends import available_backends, native_module
from avatar_engine.kernels.compose import MODES
from avatar_engine.kernels.envelopes import (
    EnvelopeBuffers,
    EnvelopeConsts,
    envelopes_numpy,
    make_envelopes,
)
from avatar_engine.rigs.schema import REGION_ORDER

ACCEL = [b for b in available_backends() if b != "numpy"]
SESSIONS = 64
EXACT = (
    "speak_env",
    "capture_new",
    "last_capture",
    "capture_env",
    "capture_dt",
    "filter_primed_m",
    "filter_primed_c",
    "thinking_env",
)
ULP = ("thinking", "weights")
"""Float32 products: a compiler that fuses ``a * b + c`` (arm64, -march=native) may differ in
the last bit; elsewhere they are equal too."""

CONSTS = envelope_consts(LifeParams())
LONG_TIMEOUT = CONSTS._replace(capture_timeout=0.5)
"""A timeout above the 0.25 s interval cap, so the cap binds for the late samples of a run."""


def _config(n: int, g: np.random.Generator) -> LayerConfig:
    """Per-session layer settings through :meth:`LayerConfig.set` (defaults on a few rows)."""
    cfg = LayerConfig(n)
    regions = [r.value for r in REGION_ORDER]
    for row in range(n):
        if row % 5 == 0:
            continue
        for layer in g.choice(LAYER_NAMES, size=g.integers(1, 4), replace=False):
            cfg.set(
                row,
                str(layer),
                mode=str(g.choice(list(MODES))),
                weight=float(g.uniform(0.0, 1.5)),
                mask={r: float(g.uniform(0, 1)) for r in g.choice(regions, 3)},
                duck_speech={r: float(g.uniform(-0.2, 1.2)) for r in g.choice(regions, 3)},
                duck_capture={r: float(g.uniform(0, 1)) for r in g.choice(regions, 3)},
            )
    return cfg


def _state(n: int, g: np.random.Generator) -> EnvelopeBuffers:
    cfg = _config(n, g)
    return EnvelopeBuffers(
        speaking=np.zeros(n, np.float32),
        speak_env=np.zeros(n, np.float32),
        capture_new=np.zeros(n, np.bool_),
        last_capture=np.full(n, -np.inf),
        capture_env=np.zeros(n, np.float32),
        capture_dt=np.zeros(n, np.float32),
        filter_primed_m=np.ones(n, np.uint8),
        filter_primed_c=np.ones(n, np.uint8),
        thinking_on=np.zeros(n, np.float32),
        thinking_env=np.zeros(n, np.float32),
        thinking=np.zeros(n, np.float32),
        weight=cfg.weight,
        mask=cfg.mask,
        duck_speech=cfg.duck_speech,
        duck_capture=cfg.duck_capture,
        weights=np.zeros((n, N_LAYERS, N_REGIONS), np.float32),
    )


def _copy(state: EnvelopeBuffers) -> EnvelopeBuffers:
    return EnvelopeBuffers(*(np.array(a, copy=True) for a in state))


def _compare(ref: EnvelopeBuffers, got: EnvelopeBuffers, where: str) -> None:
    for name, a, b in zip(EnvelopeBuffers._fields, ref, got, strict=True):
        if name in ULP:
            nan = np.isnan(a)
            np.testing.assert_array_equal(np.isnan(b), nan, err_msg=f"{name} NaNs {where}")
            np.testing.assert_array_max_ulp(b[~nan], a[~nan], maxulp=1)
        else:  # the envelopes, times, intervals and restarts; NaN equals NaN here
            np.testing.assert_array_equal(b, a, err_msg=f"{name} {where}")


class _Inputs:
    """Each tick's per-session inputs: capture runs separated by gaps (longer and shorter than
    the timeout) with dropped frames, speaking levels (out of range too, one NaN row for a
    while) and thinking switched on and off at random."""

    def __init__(self, n: int, g: np.random.Generator) -> None:
        self.g = g
        self.n = n
        self.capturing = g.random(n) < 0.5
        self.switch_at = g.uniform(0.0, 1.0, n)

    def __call__(self, state: EnvelopeBuffers, t: float) -> None:
        g, n = self.g, self.n
        flip = t >= self.switch_at
        self.capturing ^= flip
        # runs of 0.1-1.5 s, gaps of 0.02-0.8 s (the timeout is 0.12 s, or 0.5 s)
        length = np.where(self.capturing, g.uniform(0.1, 1.5, n), g.uniform(0.02, 0.8, n))
        self.switch_at = np.where(flip, t + length, self.switch_at)
        state.capture_new[:] = self.capturing & (g.random(n) > 0.15)
        level = g.uniform(-0.3, 1.3, n)
        state.speaking[:] = np.where(g.random(n) < 0.3, level, state.speaking)
        if 2.0 <= t < 2.1:
            state.speaking[7] = np.nan  # propagates as numpy's minimum/maximum do
        switch = g.random(n) < 0.02
        state.thinking_on[:] = np.where(switch, 1.0 - state.thinking_on, state.thinking_on)
        state.filter_primed_m[:] = 1  # the filters prime on the tick's samples
        state.filter_primed_c[:] = g.random(n) < 0.9


def _simulate(backend: str, consts: EnvelopeConsts, seconds: float) -> tuple[int, int]:
    """Run the reference and ``backend`` side by side; (ticks, filter restarts)."""
    g = np.random.default_rng(11)
    ref = _state(SESSIONS, g)
    got = _copy(ref)
    ref_fn = make_envelopes(consts, "numpy")
    other = make_envelopes(consts, backend)
    feed = _Inputs(SESSIONS, g)
    t, ticks, restarts = 0.0, 0, 0
    while t < seconds:
        steps = [1 / 60, 1 / 60 + g.uniform(-0.004, 0.004), 0.002, 0.1]
        dt = float(g.choice(steps, p=[0.6, 0.2, 0.1, 0.1]))
        t += dt
        feed(ref, t)
        for name in ("capture_new", "speaking", "thinking_on", "filter_primed_m",
                     "filter_primed_c"):  # fmt: skip
            getattr(got, name)[:] = getattr(ref, name)
        primed = ref.filter_primed_m.copy()
        ref_fn(ref, t, dt)
        other(got, t, dt)
        _compare(ref, got, f"at t={t:.4f} (tick {ticks})")
        restarts += int(np.count_nonzero(primed != ref.filter_primed_m))
        ticks += 1
    return ticks, restarts


@pytest.mark.skipif(not ACCEL, reason="parity needs numba or the native module")
@pytest.mark.parametrize("consts", [CONSTS, LONG_TIMEOUT], ids=["timeout", "long-timeout"])
@pytest.mark.parametrize("backend", ACCEL)
def test_backends_match_numpy_each_tick(backend: str, consts: EnvelopeConsts) -> None:
    ticks, restarts = _simulate(backend, consts, 10.0)
    assert ticks > 350
    assert restarts > SESSIONS  # runs after gaps restarted the filters, several per session


def test_reference_capture_presence_and_restart() -> None:
    """One session: the first sample restarts the filter at 1/60 s; a dropout shorter than the
    fade keeps the filter; one that lets the envelope reach 0 restarts it."""
    b = _state(1, np.random.default_rng(0))
    c = CONSTS
    dt = 1 / 60

    def tick(t: float, fresh: bool) -> None:
        b.capture_new[0] = fresh
        b.filter_primed_m[0] = b.filter_primed_c[0] = 1
        envelopes_numpy(c, b, t, dt)

    tick(1.0, True)
    assert b.capture_dt[0] == np.float32(1 / 60) and b.filter_primed_m[0] == 0
    assert b.last_capture[0] == 1.0 and 0.0 < b.capture_env[0] < 1.0
    tick(1.0 + 1 / 240 / 2, True)
    assert b.capture_dt[0] == np.float32(1 / 240)  # clipped interval, no restart
    assert b.filter_primed_m[0] == 1
    t = 1.0 + 1 / 240 / 2
    for _ in range(30):
        t += dt
        tick(t, True)
    assert b.capture_env[0] == 1.0 and b.capture_dt[0] == np.float32(dt)
    for _ in range(20):  # 0.33 s without samples: absent, the envelope fades but not to 0
        t += dt
        tick(t, False)
        assert b.capture_dt[0] == 0.0
    assert 0.0 < b.capture_env[0] < 1.0
    tick(t + dt, True)
    assert b.capture_dt[0] == np.float32(1 / 60) and b.filter_primed_m[0] == 1
    t += dt
    for _ in range(60):
        t += dt
        tick(t, False)
    assert b.capture_env[0] == 0.0
    tick(t + dt, True)
    assert b.filter_primed_m[0] == 0 and b.filter_primed_c[0] == 0


def test_reference_weights_follow_the_layer_formula() -> None:
    """The weights are the layers module's formula (float64 here, to float32 rounding)."""
    g = np.random.default_rng(5)
    n = 16
    b = _state(n, g)
    b.speaking[:] = g.uniform(0, 1, n)
    b.thinking_on[:] = g.random(n) < 0.5
    b.capture_new[:] = g.random(n) < 0.5
    for i in range(6):  # the capture and thinking gates mid-ramp
        envelopes_numpy(CONSTS, b, 1.0 + i / 60, 1 / 60)
    sp = b.speak_env.astype(np.float64)
    x = b.capture_env.astype(np.float64)
    cg = x * x * (3 - 2 * x)
    th = b.thinking.astype(np.float64)
    gate = b.weight.astype(np.float64)
    gate[:, CONSTS.capture_layer] *= cg
    gate[:, CONSTS.speech_layer] *= sp * (1 - th)
    expect = (
        b.mask * gate[:, :, None]
        * (1 - b.duck_speech * sp[:, None, None])
        * (1 - b.duck_capture * cg[:, None, None])
    )  # fmt: skip
    np.testing.assert_allclose(b.weights, expect, rtol=1e-5, atol=1e-6)
    assert ((cg > 0) & (cg < 1)).any() and ((th > 0) & (th < 1)).any() and (sp > 0).all()


@pytest.mark.skipif(native_module() is None, reason="the native module is not built here")
def test_native_envelopes_refuse_bad_arguments() -> None:
    """A wrong dtype, shape or a read-only output is an error naming the field, raised before
    anything is written; the same struct with the right fields then runs."""
    fn = make_envelopes(CONSTS, "native")
    good = _state(3, np.random.default_rng(2))
    good.capture_new[:] = True
    good.speaking[:] = 1.0
    before = _copy(good)
    n, lr = 3, (N_LAYERS, N_REGIONS)
    with pytest.raises(TypeError, match="last_capture"):
        fn(good._replace(last_capture=good.last_capture.astype(np.float32)), 1.0, 0.1)
    with pytest.raises(TypeError, match="capture_new"):
        fn(good._replace(capture_new=good.capture_new.astype(np.uint8)), 1.0, 0.1)
    with pytest.raises(TypeError, match="speaking"):
        fn(good._replace(speaking=np.zeros(n)), 1.0, 0.1)  # float64: never a silent copy
    with pytest.raises(TypeError, match="weights"):
        fn(good._replace(weights=np.zeros((n, *lr), np.float32)[:, :, ::-1]), 1.0, 0.1)
    with pytest.raises(ValueError, match="mask"):
        fn(good._replace(mask=np.ones((n, N_LAYERS, N_REGIONS - 1), np.float32)), 1.0, 0.1)
    with pytest.raises(ValueError, match="weight"):
        fn(good._replace(weight=np.ones((n, N_LAYERS + 1), np.float32)), 1.0, 0.1)
    with pytest.raises(ValueError, match="thinking"):
        fn(good._replace(thinking=np.zeros(n + 1, np.float32)), 1.0, 0.1)
    for name in ("weights", "filter_primed_c", "capture_dt"):
        frozen = getattr(good, name).copy()
        frozen.flags.writeable = False
        with pytest.raises(ValueError, match=name):
            fn(good._replace(**{name: frozen}), 1.0, 0.1)
    for field, a, b in zip(EnvelopeBuffers._fields, before, good, strict=True):
        np.testing.assert_array_equal(b, a, err_msg=f"{field} was written")
    fn(good, 1.0, 0.1)
    assert good.last_capture.tolist() == [1.0] * n
    assert good.filter_primed_m.tolist() == [0] * n  # the first samples restart the filters
    assert (good.speak_env > 0).all() and (good.weights != before.weights).any()


@pytest.mark.skipif(native_module() is None, reason="the native module is not built here")
def test_native_plan_refuses_bad_constants() -> None:
    with pytest.raises(ValueError, match="> 0"):
        make_envelopes(CONSTS._replace(speak_attack=0.0), "native")
    with pytest.raises(ValueError, match="n_layers"):
        make_envelopes(CONSTS._replace(speech_layer=N_LAYERS), "native")
