"""The animate step for many sessions: one call per tick runs every expression stage.

Every per-session array is a block of a row table (:mod:`avatar_engine.rows`; in an engine,
the rig group's), read through an attribute that always gives the current array. Layout
(``Sc`` = capacity rows, the first ``n_active`` are live sessions; ``M`` = the rig's morphs;
the nine rotation channels are a separate ``C = 9`` block)::

    layers_m : (L, Sc, M) float32   one S x M plane per layer, in LAYER_NAMES order
    layers_c : (L, Sc, 9) float32   same for the rotation channels
    out_m    : (Sc, M),  out_c : (Sc, 9)

Callers write their inputs straight into the layer planes (``capture_morphs``,
``speech_morphs``, ``manual_morphs`` ... are views, so ingest and the speech kernel write once
and nothing is copied), set the per-session flags (``capture_new``, ``speaking``, ``in_word``,
``stress``), and call :meth:`Animator.step` with the tick time. One step:

1. envelopes: speaking (attack/release), capture presence (timeout, fades), thinking;
2. One Euro on the fresh capture rows, in place (held estimate for rows without a sample);
3. emotion mixes advance; the rig's ``emotions`` map turns them into the emotion plane;
4. procedural life advances; the rig's ``arkit52`` map turns it into the procedural plane,
   and it writes the rotation channels;
5. effective per-(session, layer, region) weights;
6. compositor + constraints (one batched kernel call per block).

Stages 1 and 5 are one kernel call before stage 2 (:mod:`avatar_engine.kernels.envelopes`):
the weights read only the envelopes and the layer config, which stages 2-4 never write.

One-shot inputs (``capture_new``, ``stress``) are cleared by the step; held inputs
(``speaking``, ``in_word``) stay until the caller changes them.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from avatar_engine.animation.emotion import (
    EMOTION_NAMES,
    THINKING,
    Easing,
    EmotionState,
    mix_vector,
)
from avatar_engine.animation.layers import (
    DEFAULT_FILTER,
    DEFAULT_VMAX,
    N_LAYERS,
    N_REGIONS,
    Layer,
    LayerConfig,
    region_code,
)
from avatar_engine.animation.params import LifeParams
from avatar_engine.animation.procedural import PROC_ARKIT, ProceduralLife
from avatar_engine.kernels.backends import BackendName, resolve_backend
from avatar_engine.kernels.compose import (
    ComposeInputs,
    ComposeState,
    ComposeTables,
    ScatterTables,
    make_compose,
    make_scatter,
)
from avatar_engine.kernels.envelopes import EnvelopeBuffers, EnvelopeConsts, make_envelopes
from avatar_engine.kernels.filters import OneEuroFilter, spring_kernel
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES
from avatar_engine.rigs.profile import RigProfile, RigProfileError
from avatar_engine.rigs.schema import REGION_ORDER, Region
from avatar_engine.rigs.sparse import SparseMap
from avatar_engine.rows import BlockField, RowTable
from avatar_engine.types import F32

log = logging.getLogger(__name__)

N_CHANNELS: Final = len(ROTATION_NAMES)
CHANNEL_REGIONS: Final = np.array(
    [region_code(Region.HEAD if n.startswith("Head") else Region.EYE) for n in ROTATION_NAMES],
    np.int8,
)
CHANNEL_COUPLE: Final = np.array([[3, 6], [4, 7], [5, 8]], np.int32)
"""Left/right eye yaw, pitch, roll: coupling makes the eyes move together."""
_VMAX_DEFAULT: Final = np.array([DEFAULT_VMAX[r] for r in REGION_ORDER], np.float32)
_FILTER_DEFAULTS: Final = {
    name: np.array([DEFAULT_FILTER[r][i] for r in REGION_ORDER], np.float32)
    for i, name in enumerate(("min_cutoff", "beta", "d_cutoff"))
}
"""A new session's per-region velocity limits and One Euro parameters."""

_SIDES: Final = (("Left", "Right"), ("_L", "_R"), ("_l", "_r"), (".L", ".R"), ("L_", "R_"))
_DIRECTIONAL: Final = re.compile(
    r"^(mouth|jaw|tongue|head|eyes?|mouth[_.]?(upper|lower)|(nose|tongue)[_.]?tip"
    r"|.*(turn|tilt|twist))[_.]?$",
    re.IGNORECASE,
)
"""Stems of shapes that are one motion to either side (``mouthLeft``, ``Jaw_L``,
``Head_Turn_L``, ``Mouth_Upper_L``), not a pair of sides."""


def coupling_pairs(names: Sequence[str]) -> npt.NDArray[np.int32]:
    """Left/right morph pairs found by name (``..Left``/``..Right``, ``.._L``/``.._R``).

    Skipped on purpose: eye-look shapes (left-eye-looks-out mirrors right-eye-looks-*in*, so
    averaging them by side would fight the gaze) and directions such as ``mouthLeft``,
    ``Jaw_L``, ``Head_Turn_L`` or ``Mouth_Upper_L`` (the lip moving left), which are one
    motion to either side, not a pair of sides. Pass ``couple_pairs`` to override.
    """
    index = {n: i for i, n in enumerate(names)}
    pairs: list[tuple[int, int]] = []
    for name in names:
        if "look" in name.lower():
            continue
        for left, right in _SIDES:
            if name.endswith(left):
                stem = name[: -len(left)]
                other = stem + right
            elif name.startswith(left) and len(left) == 2 and left.endswith("_"):
                stem = name[len(left) :]
                other = right + stem
            else:
                continue
            if other in index and not _DIRECTIONAL.match(stem):
                pairs.append((index[name], index[other]))
                break
    return np.array(pairs, np.int32).reshape(-1, 2)


def envelope_consts(params: LifeParams) -> EnvelopeConsts:
    """The envelope kernel's constants (:mod:`avatar_engine.kernels.envelopes`) from
    ``params`` and the compositor's layer geometry."""
    ep = params.envelope
    return EnvelopeConsts(
        speak_attack=ep.speak_attack,
        speak_release=ep.speak_release,
        capture_timeout=ep.capture_timeout,
        capture_fade_in=ep.capture_fade_in,
        capture_fade_out=ep.capture_fade_out,
        thinking_fade=ep.thinking_fade,
        n_layers=N_LAYERS,
        n_regions=N_REGIONS,
        capture_layer=int(Layer.CAPTURE),
        speech_layer=int(Layer.SPEECH),
    )


def _plane(layers: F32, layer: Layer) -> F32:
    """One layer's (rows, width) plane of an (L, rows, width) layer block."""
    plane: F32 = layers[layer]
    return plane


class Animator:
    """The whole expression stage for the sessions (rows) of one rig.

    Its per-session arrays are blocks of a :class:`~avatar_engine.rows.RowTable`: the rig
    group's when ``rows`` is given (the group adds and removes rows), else a table of its own
    that :meth:`add_session` and :meth:`remove_session` manage.

    >>> from avatar_engine import load_rig
    >>> anim = Animator(load_rig("arkit52"), capacity=4, backend="numpy")
    >>> row = anim.add_session(seed=7)
    >>> anim.set_emotion(row, {"happy": 0.8}, transition=0.3)
    >>> for i in range(60):
    ...     anim.step(i / 60)
    >>> anim.out_m[:anim.n_active].shape
    (1, 52)
    """

    layers_m = BlockField[np.float32]()
    """(L, rows, M): one plane per layer, in LAYER_NAMES order (the compositor reads it whole)."""
    layers_c = BlockField[np.float32]()
    manual_mask_m = BlockField[np.float32]()
    manual_mask_c = BlockField[np.float32]()
    capture_new = BlockField[np.bool_]()
    speaking = BlockField[np.float32]()
    in_word = BlockField[np.bool_]()
    stress = BlockField[np.float32]()
    out_m = BlockField[np.float32]()
    out_c = BlockField[np.float32]()
    vmax = BlockField[np.float32]()
    couple = BlockField[np.float32]()
    speak_env = BlockField[np.float32]()
    capture_env = BlockField[np.float32]()
    thinking_on = BlockField[np.float32]()
    thinking_env = BlockField[np.float32]()
    thinking = BlockField[np.float32]()
    """This tick's smoothed thinking gate (0..1; stage 1's output, read by stages 3 and 4)."""
    last_capture = BlockField[np.float64]()
    prev_m = BlockField[np.float32]()
    prev_c = BlockField[np.float32]()
    primed_m = BlockField[np.uint8]()
    primed_c = BlockField[np.uint8]()
    weights = BlockField[np.float32]()
    _capture_dt = BlockField[np.float32]()

    def __init__(
        self,
        rig: RigProfile,
        capacity: int = 64,
        *,
        params: LifeParams | None = None,
        backend: str | None = None,
        couple_pairs: npt.ArrayLike | None = None,
        morph_max_velocity: Mapping[str, float] | None = None,
        rows: RowTable[Any] | None = None,
    ) -> None:
        self.rig = rig
        self.rows: RowTable[Any] = RowTable(capacity=capacity) if rows is None else rows
        """The row table the blocks live in: the rig group's, or this animator's own."""
        self.params = params or LifeParams()
        self.backend: BackendName = resolve_backend(backend)
        self.time: float | None = None
        self.n_morphs = rig.morph_count

        # -- rig tables (built once; the hot path only indexes) --
        # Emotion mixes and procedural ARKit values reach the rig's morphs through the rig's
        # own maps, applied by scatter: a few dozen non-zeros per session, where a dense
        # matmul would touch every morph (and BLAS's thread pool stalls on a busy machine).
        emotion_dense = self._sparse_map("emotions", EMOTION_NAMES).to_dense()  # (M, E)
        arkit_dense = self._sparse_map("arkit52", ARKIT_NAMES).to_dense()  # (M, 52)
        proc_dense = arkit_dense[:, [ARKIT_NAMES.index(name) for name in PROC_ARKIT]]
        self.life = ProceduralLife(self.rows, self.params, self.backend)
        # features -> ARKit shapes -> morphs, folded into one (M, F) map
        proc_dense = proc_dense @ self.life.feature_to_arkit().astype(np.float64).T
        self.emotion_map: F32 = np.ascontiguousarray(emotion_dense.T, np.float32)  # (E, M)
        self.proc_map: F32 = np.ascontiguousarray(proc_dense.T, np.float32)  # (F, M)
        self._map_emotion = make_scatter(ScatterTables.from_dense(emotion_dense), self.backend)
        self._map_proc = make_scatter(ScatterTables.from_dense(proc_dense), self.backend)
        self._build_compose(couple_pairs, morph_max_velocity)
        self._spring = spring_kernel(self.backend)
        self._envelopes = make_envelopes(envelope_consts(self.params), self.backend)
        self._env_buffers: EnvelopeBuffers | None = None
        self._declare_blocks()

    def _build_compose(
        self,
        couple_pairs: npt.ArrayLike | None,
        morph_max_velocity: Mapping[str, float] | None,
    ) -> None:
        """The compositor and constraint kernels of the morph and channel blocks."""
        pairs = (
            coupling_pairs(self.rig.morph_names)
            if couple_pairs is None
            else np.asarray(couple_pairs, np.int32).reshape(-1, 2)
        )
        vcol = np.full(self.n_morphs, np.inf, np.float32)
        for name, speed in (morph_max_velocity or {}).items():
            if math.isnan(speed) or speed <= 0.0:
                raise ValueError(f"morph_max_velocity[{name!r}]: must be > 0 units/s")
            vcol[self.rig.morph_index(name)] = speed
        self._tables_m = ComposeTables(
            n_regions=N_REGIONS,
            region=np.ascontiguousarray(self.rig.region_codes, np.int8),
            lower=np.ascontiguousarray(self.rig.lower, np.float32),
            upper=np.ascontiguousarray(self.rig.upper, np.float32),
            exclusive=np.ascontiguousarray(self.rig.exclusive, np.int32).reshape(-1, 2),
            couple=pairs,
            vcol=vcol,
        )
        self._tables_c = ComposeTables(
            n_regions=N_REGIONS,
            region=CHANNEL_REGIONS,
            lower=np.full(N_CHANNELS, -1.0, np.float32),
            upper=np.full(N_CHANNELS, 1.0, np.float32),
            exclusive=np.zeros((0, 2), np.int32),
            couple=CHANNEL_COUPLE,
        )
        self._compose_m = make_compose(self._tables_m, self.backend)
        self._compose_c = make_compose(self._tables_c, self.backend)

    def _declare_blocks(self) -> None:
        """Every per-session array: layer planes, inputs, outputs, state and settings, each a
        block of the row table (see :mod:`avatar_engine.rows`)."""
        m = self.n_morphs
        declare = self.rows.declare
        self.layers_m = declare("animator.layers_m", (N_LAYERS, m), np.float32, axis=1)
        self.layers_c = declare("animator.layers_c", (N_LAYERS, N_CHANNELS), np.float32, axis=1)
        self.manual_mask_m = declare("animator.manual_mask_m", (m,), np.float32)
        self.manual_mask_c = declare("animator.manual_mask_c", (N_CHANNELS,), np.float32)
        self.capture_new = declare("animator.capture_new", (), np.bool_)
        self.speaking = declare("animator.speaking", (), np.float32)
        self.in_word = declare("animator.in_word", (), np.bool_)
        self.stress = declare("animator.stress", (), np.float32)
        self.out_m = declare("animator.out_m", (m,), np.float32)
        self.out_c = declare("animator.out_c", (N_CHANNELS,), np.float32)
        self.layer_config = LayerConfig(self.rows)
        self.emotion = EmotionState(self.rows)
        self.filter_m = OneEuroFilter(self.rows, self.rig.region_codes, n_regions=N_REGIONS,
                                      backend=self.backend, name="animator.filter_m",
                                      **_FILTER_DEFAULTS)  # fmt: skip
        self.filter_c = OneEuroFilter(self.rows, CHANNEL_REGIONS, n_regions=N_REGIONS,
                                      backend=self.backend, name="animator.filter_c",
                                      **_FILTER_DEFAULTS)  # fmt: skip
        self.vmax = declare("animator.vmax", (N_REGIONS,), np.float32, _VMAX_DEFAULT)
        self.couple = declare("animator.couple", (), np.float32)
        self.speak_env = declare("animator.speak_env", (), np.float32)
        self.capture_env = declare("animator.capture_env", (), np.float32)
        self.thinking_on = declare("animator.thinking_on", (), np.float32)
        self.thinking_env = declare("animator.thinking_env", (), np.float32)
        self.thinking = declare("animator.thinking", (), np.float32)
        self.last_capture = declare("animator.last_capture", (), np.float64, -np.inf)
        self.prev_m = declare("animator.prev_m", (m,), np.float32)
        self.prev_c = declare("animator.prev_c", (N_CHANNELS,), np.float32)
        self.primed_m = declare("animator.primed_m", (), np.uint8)
        self.primed_c = declare("animator.primed_c", (), np.uint8)
        self.weights = declare("animator.weights", (N_LAYERS, N_REGIONS), np.float32)
        self._capture_dt = declare("animator.capture_dt", (), np.float32)

    def _sparse_map(self, source: str, names: Sequence[str]) -> SparseMap:
        """The rig's ``source`` mapping, or an empty one if the rig lacks it (said once)."""
        try:
            return self.rig.sparse_map(source, names)
        except RigProfileError:
            log.warning(
                "rig %r has no %r mapping: that layer drives nothing", self.rig.name, source
            )
            return SparseMap.from_triplets(self.rig.morph_count, len(names), [])

    # -- sessions ---------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Rows allocated in the row table (it doubles when full)."""
        return self.rows.capacity

    @property
    def n_active(self) -> int:
        """Live sessions: rows ``[0, n_active)`` of the row table."""
        return len(self.rows)

    # The caller-facing input planes: one layer of the layer blocks each (a view, fetched
    # from the table on every access like the blocks themselves).
    @property
    def capture_morphs(self) -> F32:
        """(rows, M) capture input, retargeted; smoothed in place by the step."""
        return _plane(self.layers_m, Layer.CAPTURE)

    @property
    def capture_channels(self) -> F32:
        """(rows, 9) capture rotations; smoothed in place by the step."""
        return _plane(self.layers_c, Layer.CAPTURE)

    @property
    def speech_morphs(self) -> F32:
        """(rows, M) lip-sync morphs, written by the speech stage."""
        return _plane(self.layers_m, Layer.SPEECH)

    @property
    def manual_morphs(self) -> F32:
        """(rows, M) manual overrides (masked by ``manual_mask_m``)."""
        return _plane(self.layers_m, Layer.MANUAL)

    @property
    def manual_channels(self) -> F32:
        """(rows, 9) manual rotation overrides (masked by ``manual_mask_c``)."""
        return _plane(self.layers_c, Layer.MANUAL)

    def add_session(self, seed: int | None = None) -> int:
        """Claim the next row of this animator's own table (it grows when full), start it,
        return it. In a rig group the group adds the row and calls :meth:`start_session`."""
        row = self.rows.add(object())
        self.start_session(row, row if seed is None else seed)
        return row

    def remove_session(self, row: int) -> int | None:
        """Free ``row`` by moving the last live session into it (like three.js's active list).

        Returns the old row of the session that moved (its caller-side handle must be
        updated), or None if ``row`` was the last one.
        """
        self._check_row(row)
        last = self.n_active - 1
        self.rows.remove(self.rows.ids[row])
        return None if row == last else last

    def start_session(self, row: int, seed: int) -> None:
        """Start a freshly added row (the table set every block to its default): seed its
        random streams and schedule its first blink, breath and gaze from now."""
        now = 0.0 if self.time is None else self.time
        self.life.start_row(row, seed, now)

    def _check_row(self, row: int) -> None:
        if not 0 <= row < self.n_active:
            raise IndexError(f"row {row} is not a live session (0..{self.n_active - 1})")

    # -- control (called on messages, not per tick) ---------------------------------------

    def set_emotion(
        self,
        row: int,
        mix: Mapping[str, float],
        *,
        intensity: float = 1.0,
        transition: float = 0.4,
        easing: Easing = Easing.CUBIC,
        hold: float = math.inf,
        decay: float = 1.0,
    ) -> None:
        """Move a session's emotion mix to ``mix * intensity``; optionally hold, then decay."""
        self._check_row(row)
        now = 0.0 if self.time is None else self.time
        target = mix_vector(mix, intensity)  # validates names, weights and intensity
        self.emotion.mix[row] = mix_vector(mix)
        self.emotion.intensity[row] = intensity
        self.emotion.set(row, target, now=now, transition=transition, easing=easing, hold=hold,
                         decay=decay)  # fmt: skip

    def set_intensity(
        self,
        row: int,
        intensity: float,
        *,
        transition: float = 0.4,
        easing: Easing = Easing.CUBIC,
        hold: float = math.inf,
        decay: float = 1.0,
    ) -> None:
        """Scale a session's current mix (the last one set) to a new overall intensity."""
        self._check_row(row)
        if not math.isfinite(intensity) or intensity < 0.0:
            raise ValueError(f"intensity must be a finite number >= 0, got {intensity!r}")
        now = 0.0 if self.time is None else self.time
        self.emotion.intensity[row] = intensity
        target = (self.emotion.mix[row] * np.float32(intensity)).astype(np.float32)
        self.emotion.set(row, target, now=now, transition=transition, easing=easing, hold=hold,
                         decay=decay)  # fmt: skip

    def set_baseline(self, row: int, mix: Mapping[str, float], intensity: float = 1.0) -> None:
        """The mix a session decays back to after a held emotion (neutral by default)."""
        self._check_row(row)
        now = 0.0 if self.time is None else self.time
        self.emotion.set_base(row, mix_vector(mix, intensity), now)

    def set_thinking(self, row: int, on: bool) -> None:
        """Switch the "thinking" face (gaze aversion, brow furrow, no lip motion) on or off."""
        self._check_row(row)
        if on and not self.thinking_on[row]:
            self.life.draw_aversion(row)
        self.thinking_on[row] = 1.0 if on else 0.0

    def look_at(self, row: int, yaw: float, pitch: float) -> None:
        """Aim the gaze (channel units: 1.0 = the channel's scale, 40 degrees by default)."""
        self._check_row(row)
        if not (math.isfinite(yaw) and math.isfinite(pitch)):
            raise ValueError("look_at: yaw and pitch must be finite")
        self.life.look[row] = (np.clip(yaw, -1.0, 1.0), np.clip(pitch, -1.0, 1.0))

    def set_layer(
        self,
        row: int,
        layer: str,
        *,
        mode: str | None = None,
        weight: float | None = None,
        mask: dict[str, float] | None = None,
        duck_speech: dict[str, float] | None = None,
        duck_capture: dict[str, float] | None = None,
    ) -> None:
        """Change one compositor layer of one session (see :class:`LayerConfig`)."""
        self._check_row(row)
        self.layer_config.set(row, layer, mode=mode, weight=weight, mask=mask,
                              duck_speech=duck_speech, duck_capture=duck_capture)  # fmt: skip

    def set_filter(
        self,
        row: int,
        regions: Sequence[str] | None = None,
        *,
        min_cutoff: float | None = None,
        beta: float | None = None,
        d_cutoff: float | None = None,
    ) -> None:
        """One Euro parameters of a session's capture filter, for some or all regions."""
        self._check_row(row)
        codes = [region_code(r) for r in (regions or [r.value for r in REGION_ORDER])]
        for f in (self.filter_m, self.filter_c):
            for table, value in ((f.min_cutoff, min_cutoff), (f.beta, beta),
                                 (f.d_cutoff, d_cutoff)):  # fmt: skip
                if value is not None:
                    if not math.isfinite(value) or value < 0.0:
                        raise ValueError("filter parameters must be finite and >= 0")
                    table[row, codes] = value

    def set_max_velocity(self, row: int, region: str, units_per_second: float) -> None:
        """Velocity limit of one region (``inf`` disables it)."""
        self._check_row(row)
        if math.isnan(units_per_second) or units_per_second <= 0.0:
            raise ValueError("max velocity must be > 0 (inf disables the limit)")
        self.vmax[row, region_code(region)] = units_per_second

    def set_coupling(self, row: int, amount: float) -> None:
        """Left/right coupling: 0 sides independent (default), 1 sides identical."""
        self._check_row(row)
        if not 0.0 <= amount <= 1.0:
            raise ValueError("coupling must be in [0, 1]")
        self.couple[row] = amount

    # -- the tick -------------------------------------------------------------------------

    def _envelope_buffers(self, n: int) -> EnvelopeBuffers:
        """The first ``n`` rows of what the envelope kernel reads and writes (stages 1 and 5).

        Kept between ticks while ``n`` and the row table's arrays stay the same: every field
        is a block of this animator's table, and all of them are replaced together when it
        grows, so one field's base array tells whether the views are still current.
        """
        env = self._env_buffers
        if env is not None and len(env.speak_env) == n and env.speak_env.base is self.speak_env:
            return env
        cfg = self.layer_config
        env = EnvelopeBuffers(
            speaking=self.speaking[:n],
            speak_env=self.speak_env[:n],
            capture_new=self.capture_new[:n],
            last_capture=self.last_capture[:n],
            capture_env=self.capture_env[:n],
            capture_dt=self._capture_dt[:n],
            filter_primed_m=self.filter_m.primed[:n],
            filter_primed_c=self.filter_c.primed[:n],
            thinking_on=self.thinking_on[:n],
            thinking_env=self.thinking_env[:n],
            thinking=self.thinking[:n],
            weight=cfg.weight[:n],
            mask=cfg.mask[:n],
            duck_speech=cfg.duck_speech[:n],
            duck_capture=cfg.duck_capture[:n],
            weights=self.weights[:n],
        )
        self._env_buffers = env
        return env

    def step(self, t: float, dt: float | None = None) -> None:
        """Animate every live session to time ``t`` (seconds; the caller's clock)."""
        if dt is None:
            dt = 1.0 / 60.0 if self.time is None else t - self.time
        if not dt > 0.0:
            raise ValueError(f"time must advance: t={t}, previous={self.time}")
        self.time = t
        n = self.n_active
        if n == 0:
            return
        ep = self.params.envelope

        # 1 and 5. envelopes and effective layer weights, one kernel call: stage 5 reads
        # only the envelopes and the layer config, which stages 2-4 do not write
        env = self._envelope_buffers(n)
        self._envelopes(env, t, dt)
        speak_env, cap_dt, think, w = env.speak_env, env.capture_dt, env.thinking, env.weights

        # 2. capture smoothing, in place on the capture planes
        self.filter_m.run(self.capture_morphs, cap_dt, self.capture_morphs, n)
        self.filter_c.run(self.capture_channels, cap_dt, self.capture_channels, n)

        # 3. emotion
        mix = self.emotion.update(t, dt, n, self._spring)
        eff = mix * (1.0 - ep.thinking_damp * think)[:, None]
        eff[:, THINKING] += ep.thinking_emotion * think
        self._map_emotion(eff, self.layers_m[Layer.EMOTION, :n])

        # 4. procedural life
        features = self.life.update(
            t, dt, n, speak_env, think, self.in_word, self.stress, self.layers_c[Layer.PROCEDURAL]
        )
        self._map_proc(features, self.layers_m[Layer.PROCEDURAL, :n])

        # 6. compositor, constraints
        mode = self.layer_config.mode[:n]
        self._compose_m(
            ComposeState(prev=self.prev_m[:n], primed=self.primed_m[:n]),
            dt,
            ComposeInputs(
                layers=self.layers_m,
                weight=w,
                mode=mode,
                emask=self.manual_mask_m[:n],
                couple=self.couple[:n],
                vmax=self.vmax[:n],
            ),
            self.out_m[:n],
        )
        self._compose_c(
            ComposeState(prev=self.prev_c[:n], primed=self.primed_c[:n]),
            dt,
            ComposeInputs(
                layers=self.layers_c,
                weight=w,
                mode=mode,
                emask=self.manual_mask_c[:n],
                couple=self.couple[:n],
                vmax=self.vmax[:n],
            ),
            self.out_c[:n],
        )
        self.capture_new[:n] = False
        self.stress[:n] = 0.0
