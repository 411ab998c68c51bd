"""Co-articulation: timed viseme segments -> keyframed curves in the rig-independent channel space.

Channel layout (``CHANNELS = 45``): three articulator layers x the 15 canonical visemes::

    channel = layer * 15 + viseme      layer 0 = lips, 1 = jaw, 2 = tongue

Each layer's 15 channels are a Cohen-Massaro blend: every segment ``s`` has, per layer, a
dominance ``D_s(t) = alpha * strength * exp(-theta * tau^c)`` where ``tau`` is the distance
from ``t`` to the segment's core (the middle ``core`` fraction of it; 0 inside), ``theta`` is
the anticipatory rate before the core and the carry-over rate after it; the layer's channels
are ``sum_s D_s * target_s * onehot(viseme_s) / sum_s D_s`` (silence has target 0, so it pulls
toward neutral). Layers differ only in alpha, which is how "tongue-only visemes do not drive
the lips" works: DD/nn/kk/TH have almost no lip dominance and no lip target, so the lips take
their neighbours' shape while the tongue and jaw follow the consonant.

Then, in order:

1. JALI gains: jaw-layer channels x ``ja_gain``; lip channels except the contact visemes x
   ``li_gain`` (``gain = 0.25 + 1.5 * control``: 0.5 is neutral, 0 mumbles, 1 enunciates);
2. a velocity limit: every channel becomes the smallest curve above it whose slope is at most
   ``max_velocity`` (a cone dilation, so peaks are kept and rises start earlier);
3. contact rules: during each PP (FF) segment the PP (FF) lip channel is at least its contact
   value (0.95 / 0.92), the other lip channels at most ``1 - contact`` and the jaw at most
   ``1 - 0.8 * contact``, each through envelopes with the same slope limit, so closures hold
   "whatever the neighbours" and velocity stays bounded.

Keys are placed on a uniform grid (``key_rate``) plus both edges of every contact segment, and
the curve between keys is linear (that is what the sampling stage computes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.speech.timing import Segments
from avatar_engine.speech.visemes import VISEME_INDEX, VISEMES
from avatar_engine.types import B1, F32, F64

N_VISEMES: Final = len(VISEMES)
LAYERS: Final = ("lips", "jaw", "tongue")
LIPS, JAW, TONGUE = 0, 1, 2
CHANNELS: Final = len(LAYERS) * N_VISEMES
CHANNEL_NAMES: Final[tuple[str, ...]] = tuple(f"{layer}.{v}" for layer in LAYERS for v in VISEMES)
PP: Final = VISEME_INDEX["PP"]
FF: Final = VISEME_INDEX["FF"]
JAW_AT_CONTACT: Final = 0.8


@dataclass(frozen=True, slots=True)
class DominanceTable:
    """Per-viseme dominance parameters (arrays indexed by canonical viseme)."""

    alpha: F64  # (3, 15): per layer
    anticipation: F64  # (15,)
    carryover: F64  # (15,)
    shape: float
    core: float
    tongue_only: B1  # (15,)
    contact: F64  # (15,) 0 = not a contact viseme


@cache
def dominance_table() -> DominanceTable:
    """The co-articulation constants (dominance per layer, anticipation and carry-over reach,
    contact visemes) from ``data/coarticulation.json``, loaded and checked once."""
    raw = json.loads(
        resources.files("avatar_engine.speech.data").joinpath("coarticulation.json").read_text()
    )
    alpha = np.zeros((3, N_VISEMES))
    ant = np.zeros(N_VISEMES)
    carry = np.zeros(N_VISEMES)
    tongue_only = np.zeros(N_VISEMES, dtype=bool)
    contact = np.zeros(N_VISEMES)
    for name, p in raw["visemes"].items():
        v = VISEME_INDEX[name]
        for layer, key in enumerate(LAYERS):
            alpha[layer, v] = float(p[key])
        ant[v] = float(p["anticipation"])
        carry[v] = float(p["carryover"])
        tongue_only[v] = bool(p.get("tongue_only", False))
        contact[v] = float(p.get("contact", 0.0))
    return DominanceTable(
        alpha, ant, carry, float(raw["shape"]), float(raw["core"]), tongue_only, contact
    )


def jali_gain(control: float) -> float:
    """JA/LI control (0..1, 0.5 neutral) -> multiplier on that layer's targets."""
    if not np.isfinite(control) or not 0.0 <= control <= 1.0:
        raise ValueError("JA and LI controls must lie in 0..1")
    return 0.25 + 1.5 * control


@dataclass(frozen=True, slots=True)
class CoarticulationParams:
    """The knobs of :func:`coarticulate` (per utterance; sessions multiply their own JA/LI)."""

    ja: float = 0.5
    li: float = 0.5
    key_rate: float = 50.0
    """Uniform keys per second (plus contact edges)."""
    max_velocity: float = 15.0
    """Largest slope of any channel, in units per second (1.0 = full range)."""
    lead_s: float = 0.15
    """Keys start this long before the first segment so anticipation is visible."""
    tail_s: float = 0.2
    """...and end this long after the last, at neutral."""
    table: DominanceTable = field(default_factory=dominance_table)


@dataclass(frozen=True, slots=True)
class Keyframes:
    """Keyframed channel curves: linear between keys, held before the first and after the last."""

    times: F64  # (K,) ascending
    values: F32  # (K, CHANNELS)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def sample(self, t: npt.ArrayLike) -> F32:
        """Offline sampling at many times (same semantics as the sampling stage, one row)."""
        tt = np.asarray(t, dtype=np.float64)
        if len(self) == 0:
            return np.zeros((tt.shape[0], CHANNELS), dtype=np.float32)
        k = np.searchsorted(self.times, tt, side="right") - 1
        n = len(self)
        lo = np.clip(k, 0, n - 1)
        hi = np.minimum(lo + 1, n - 1)
        inside = (k >= 0) & (k < n - 1)
        span = np.where(inside, self.times[hi] - self.times[lo], 1.0)
        w = np.where(inside, (tt - self.times[lo]) / span, 0.0).astype(np.float32)
        a = self.values[lo]
        out: F32 = a + w[:, None] * (self.values[hi] - a)
        return out


def key_times(seg: Segments, params: CoarticulationParams, t0: float, t1: float) -> F64:
    """Uniform grid over [t0, t1] plus the edges of contact segments inside it."""
    count = max(int(np.ceil((t1 - t0) * params.key_rate - 1e-9)), 1)
    grid = np.linspace(t0, t1, count + 1)
    contact = params.table.contact[seg.viseme.astype(np.intp)] > 0
    edges = np.concatenate([seg.start[contact], seg.end[contact]])
    edges = edges[(edges > t0) & (edges < grid[-1])]
    return np.unique(np.concatenate([grid, edges]))


REACH_S: Final = 0.6
"""Dominance is ignored beyond this distance from a segment's core (below e^-6 of its peak at
the slowest rate, 10/s)."""
BLOCK: Final = 128
"""Keys per block: the dominance matrix is (BLOCK x nearby segments), so memory stays flat."""


def _blocks(times: F64, seg: Segments, reach: float) -> list[tuple[slice, slice]]:
    """(key slice, segment slice) pairs: each block of keys with the segments that reach it."""
    out = []
    for a in range(0, times.shape[0], BLOCK):
        b = min(a + BLOCK, times.shape[0])
        lo = int(np.searchsorted(seg.end, times[a] - reach, side="left"))
        hi = int(np.searchsorted(seg.start, times[b - 1] + reach, side="right"))
        out.append((slice(a, b), slice(lo, max(hi, lo))))
    return out


def blend(seg: Segments, times: F64, params: CoarticulationParams) -> F32:
    """The Cohen-Massaro blend per layer at ``times`` -> (K, CHANNELS), before gains/rules."""
    out = np.zeros((times.shape[0], CHANNELS), dtype=np.float32)
    if len(seg) == 0:
        return out
    for keys, segs in _blocks(times, seg, REACH_S):
        if segs.stop > segs.start:
            out[keys] = _blend_block(seg, segs, times[keys], params.table)
    return out


def _blend_block(seg: Segments, segs: slice, times: F64, tab: DominanceTable) -> F32:
    v = seg.viseme[segs].astype(np.intp)
    start, end = seg.start[segs], seg.end[segs]
    n = v.shape[0]
    margin = (end - start) * (1.0 - tab.core) / 2.0
    core_lo = start + margin
    core_hi = end - margin
    # distance outside the core, on the anticipatory (before) or carry-over (after) side
    before = np.maximum(core_lo[None, :] - times[:, None], 0.0)
    after = np.maximum(times[:, None] - core_hi[None, :], 0.0)
    if tab.shape != 1.0:
        before **= tab.shape
        after **= tab.shape
    decay = np.exp(-(tab.anticipation[v][None, :] * before + tab.carryover[v][None, :] * after))
    decay *= seg.strength[segs].astype(np.float64)[None, :]
    emphasis = seg.emphasis[segs].astype(np.float64)
    target = np.where(v == 0, 0.0, 1.0)
    onehot = np.zeros((n, N_VISEMES))
    onehot[np.arange(n), v] = 1.0
    out = np.empty((times.shape[0], CHANNELS), dtype=np.float64)
    for layer in range(3):
        d = decay * tab.alpha[layer, v][None, :]
        denom = d.sum(axis=1) + 1e-9
        if layer == JAW:
            tgt = target * emphasis
        elif layer == LIPS:
            tgt = target * (0.5 + 0.5 * emphasis) * ~tab.tongue_only[v]
        else:
            tgt = target
        num = (d * tgt[None, :]) @ onehot
        out[:, layer * N_VISEMES : (layer + 1) * N_VISEMES] = num / denom[:, None]
    return out.astype(np.float32)


def limit_velocity(times: F64, values: F32, vmax: float) -> F32:
    """Smallest curves above ``values`` with slopes <= ``vmax``: max_j y_j - vmax |t - t_j|.

    A key can only lift keys within ``max(y) / vmax`` seconds of it, so long timelines are
    processed in overlapping blocks (memory stays flat, results are identical).
    """
    k = times.shape[0]
    if k == 0:
        return values.copy()
    reach = max(float(np.abs(values).max()), 0.0) / vmax + 1e-6
    out = np.empty_like(values)
    step = 4096
    for a in range(0, k, step):
        b = min(a + step, k)
        lo = int(np.searchsorted(times, times[a] - reach, side="left"))
        hi = int(np.searchsorted(times, times[b - 1] + reach, side="right"))
        out[a:b] = _dilate(times[lo:hi], values[lo:hi], vmax)[a - lo : b - lo]
    return out


def _dilate(times: F64, values: F32, vmax: float) -> F32:
    vt = (vmax * (times - times[0]))[:, None]
    y = values.astype(np.float64)
    fwd = y + vt
    np.maximum.accumulate(fwd, axis=0, out=fwd)
    fwd -= vt
    bwd = np.ascontiguousarray((y - vt)[::-1])  # contiguous: accumulate is slow on views
    np.maximum.accumulate(bwd, axis=0, out=bwd)
    bwd = bwd[::-1]
    bwd += vt
    np.maximum(fwd, bwd, out=fwd)
    out: F32 = fwd.astype(np.float32)
    return out


def _envelope(times: F64, starts: F64, ends: F64, level: float, vmax: float) -> F64:
    """max over segments of ``level - vmax * distance(t, [start, end])``, floored at 0."""
    env = np.zeros_like(times)
    if starts.shape[0] == 0:
        return env
    reach = level / vmax
    for a in range(0, times.shape[0], BLOCK):
        b = min(a + BLOCK, times.shape[0])
        lo = int(np.searchsorted(ends, times[a] - reach, side="left"))
        hi = int(np.searchsorted(starts, times[b - 1] + reach, side="right"))
        if hi <= lo:
            continue
        t = times[a:b, None]
        dist = np.maximum(starts[None, lo:hi] - t, 0.0) + np.maximum(t - ends[None, lo:hi], 0.0)
        env[a:b] = np.maximum((level - vmax * dist).max(axis=1), 0.0)
    return env


def apply_contacts(times: F64, values: F32, seg: Segments, params: CoarticulationParams) -> F32:
    """Bilabial closure and labiodental contact, with slope-limited envelopes."""
    tab = params.table
    vis = seg.viseme.astype(np.intp)
    vmax = params.max_velocity
    out = values.astype(np.float64)
    envs = {}
    for c in (PP, FF):
        sel = vis == c
        envs[c] = _envelope(times, seg.start[sel], seg.end[sel], float(tab.contact[c]), vmax)
    any_env = np.maximum(envs[PP], envs[FF])
    for c in (PP, FF):
        other = envs[FF if c == PP else PP]
        out[:, LIPS * N_VISEMES + c] = np.minimum(
            np.maximum(out[:, LIPS * N_VISEMES + c], envs[c]), 1.0 - other
        )
    lips = slice(LIPS * N_VISEMES, (LIPS + 1) * N_VISEMES)
    cap = (1.0 - any_env)[:, None]
    lip_vals = out[:, lips]
    keep = lip_vals.copy()
    np.minimum(lip_vals, cap, out=lip_vals)
    lip_vals[:, PP] = keep[:, PP]
    lip_vals[:, FF] = keep[:, FF]
    jaw = slice(JAW * N_VISEMES, (JAW + 1) * N_VISEMES)
    np.minimum(out[:, jaw], (1.0 - JAW_AT_CONTACT * any_env)[:, None], out=out[:, jaw])
    return out.astype(np.float32)


def assimilate_contacts(seg: Segments) -> Segments:
    """A lip contact right before a different one takes the second's place of articulation.

    Two different lip contacts back to back (``comfort``: m+f, ``of pickled``: v+p) cannot
    both be reached with bounded velocity, so the first assimilates to the second (regressive
    assimilation, the usual direction in English: m -> labiodental before f).
    """
    vis = seg.viseme.copy()
    for i in range(len(vis) - 2, -1, -1):
        a, b = int(vis[i]), int(vis[i + 1])
        if a != b and a in (PP, FF) and b in (PP, FF) and abs(seg.end[i] - seg.start[i + 1]) < 1e-9:
            vis[i] = b
    return Segments(vis, seg.start, seg.end, seg.strength, seg.emphasis, seg.labels)


def pad_silence(seg: Segments, pad_s: float = 1.0) -> Segments:
    """Silence before and after, so the normalised blend returns to neutral at the ends."""
    if len(seg) == 0:
        return seg
    rows = seg.rows()
    if rows[0][0] != 0:
        rows.insert(0, (0, rows[0][1] - pad_s, rows[0][1], 1.0, 1.0, "|"))
    if rows[-1][0] != 0:
        rows.append((0, rows[-1][2], rows[-1][2] + pad_s, 1.0, 1.0, "|"))
    return Segments.from_rows(rows)


def coarticulate(
    seg: Segments,
    params: CoarticulationParams | None = None,
    *,
    t0: float | None = None,
    t1: float | None = None,
    fade_in: bool = True,
    fade_out: bool = True,
) -> Keyframes:
    """Segments -> keyframes over [t0, t1] (default: the segments plus lead-in and tail).

    Segments outside the window still shape it (their dominance reaches in), so a window can
    be re-rendered when more text arrives without a seam. ``fade_in``/``fade_out`` pin the
    first/last key to neutral through a slope-limited envelope (an utterance's true ends).
    """
    p = params or CoarticulationParams()
    if len(seg) == 0:
        return Keyframes(np.zeros(0), np.zeros((0, CHANNELS), dtype=np.float32))
    seg = pad_silence(assimilate_contacts(seg))
    lo = float(seg.start[1] if seg.viseme[0] == 0 and len(seg) > 1 else seg.start[0]) - p.lead_s
    hi = float(seg.end[-2] if seg.viseme[-1] == 0 and len(seg) > 1 else seg.end[-1]) + p.tail_s
    lo = lo if t0 is None else t0
    hi = hi if t1 is None else t1
    times = key_times(seg, p, lo, hi)
    values = blend(seg, times, p)
    ja, li = jali_gain(p.ja), jali_gain(p.li)
    values[:, JAW * N_VISEMES : (JAW + 1) * N_VISEMES] *= np.float32(ja)
    lips = values[:, LIPS * N_VISEMES : (LIPS + 1) * N_VISEMES]
    contact_cols = [PP, FF]
    kept = lips[:, contact_cols].copy()
    lips *= np.float32(li)
    lips[:, contact_cols] = kept
    values = limit_velocity(times, values, p.max_velocity)
    values = apply_contacts(times, values, seg, p)
    fade = np.full(times.shape, np.inf)
    if fade_in:
        fade = np.minimum(fade, p.max_velocity * (times - lo))
    if fade_out:
        fade = np.minimum(fade, p.max_velocity * (hi - times))
    np.minimum(values, np.maximum(fade, 0.0).astype(np.float32)[:, None], out=values)
    return Keyframes(times, values)
