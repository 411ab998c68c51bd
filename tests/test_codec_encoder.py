"""Encoder semantics: error bound, dead band and hold, keyframes, LOD rates, loss, batching."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatar_engine import load_rig
from avatar_engine.codec import (
    BatchEncoder,
    Decoder,
    DeltaMode,
    Frame,
    NeedKeyframe,
    StreamParams,
    StreamSchema,
    encode_hello,
)
from avatar_engine.codec.encoder import _fast
from avatar_engine.rigs.profile import builtin_rig_names

SCHEMA = StreamSchema.from_rig(load_rig("arkit52"), rot_scale=0.5)
M, C = SCHEMA.n_morphs, SCHEMA.n_channels
IMPLS = [False] + ([True] if _fast is not None else [])
MODES = [DeltaMode.CHAINED, DeltaMode.KEYFRAME]
F32 = npt.NDArray[np.float32]


def walk(frames: int, seed: int, sessions: int = 1) -> tuple[F32, F32]:
    """Smooth random motion in range: (frames, sessions, M) morphs and (..., C) channels."""
    rng = np.random.default_rng(seed)
    m = np.cumsum(rng.normal(0, 0.02, (frames, sessions, M)), axis=0)
    c = np.cumsum(rng.normal(0, 0.01, (frames, sessions, C)), axis=0)
    m = 0.5 + 0.5 * np.sin(m * 3)
    m[:, :, ::3] = np.where(rng.random((frames, sessions, 1)) < 0.5, 0.0, m[:, :, ::3])
    return m.astype(np.float32), (0.45 * np.sin(c * 3)).astype(np.float32)


def run(
    params: StreamParams, morphs: F32, channels: F32, *, use_fast: bool, lod: int = 0
) -> tuple[list[bytes], BatchEncoder]:
    enc = BatchEncoder(SCHEMA, 1, use_fast=use_fast)
    enc.add_stream(0, 1, lod, params)
    out = []
    for i in range(morphs.shape[0]):
        tick = enc.encode(round(i * 1000 / 60), morphs[i], channels[i])
        out.append(bytes(tick.message(0)))
    return out, enc


@pytest.mark.parametrize("use_fast", IMPLS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bits", [8, 16])
def test_error_bound_holds_on_every_frame(use_fast: bool, mode: DeltaMode, bits: int) -> None:
    params = StreamParams(bits=bits, mode=mode)
    morphs, channels = walk(240, seed=bits + int(mode))
    msgs, _ = run(params, morphs, channels, use_fast=use_fast)
    dec = Decoder(use_fast=use_fast)
    dec.feed(encode_hello(1, SCHEMA, params))
    bound_m, bound_c = SCHEMA.error_bound(bits, params.dead_band)
    for i, msg in enumerate(msgs):
        if msg:
            assert isinstance(dec.feed(msg), Frame)
        st_ = dec.stream(1)
        assert np.all(np.abs(st_.morphs - morphs[i, 0]) <= bound_m + 1e-6), i
        assert np.all(np.abs(st_.channels - channels[i, 0]) <= bound_c + 1e-6), i


@pytest.mark.parametrize("use_fast", IMPLS)
def test_a_morph_that_stops_settles_exactly(use_fast: bool) -> None:
    params = StreamParams(bits=8, keyframe_ms=100_000, dead_band=3.0, hold=4)
    frames = 20
    morphs = np.zeros((frames, 1, M), np.float32)
    morphs[:, 0, 5] = 0.5
    morphs[1:, 0, 5] = 0.5 + 2.0 / 255  # moves by 2 steps: inside the 3-step dead band
    channels = np.zeros((frames, 1, C), np.float32)
    msgs, _ = run(params, morphs, channels, use_fast=use_fast)
    sent = [i for i, m in enumerate(msgs) if m]
    assert sent == [0, 4]  # the keyframe, then the settle after 4 held frames
    dec = Decoder(use_fast=use_fast)
    dec.feed(encode_hello(1, SCHEMA, params))
    for m in msgs:
        if m:
            dec.feed(m)
    code = np.floor(np.float64(morphs[-1, 0, 5]) * 255 + 0.5)
    assert dec.stream(1).morphs[5] == np.float32(code / 255)


@pytest.mark.parametrize("use_fast", IMPLS)
def test_keyframes_every_interval_and_on_request(use_fast: bool) -> None:
    morphs, channels = walk(120, seed=1)
    enc = BatchEncoder(SCHEMA, 1, use_fast=use_fast)
    enc.add_stream(0, 1, 0, StreamParams())
    kinds = []
    for i in range(120):
        if i == 50:
            enc.force_keyframe(0)
        kinds.append(int(enc.encode(round(i * 1000 / 60), morphs[i], channels[i]).kinds[0]))
    keyframes = [i for i, k in enumerate(kinds) if k == 1]
    assert keyframes == [0, 30, 50, 80, 110]


@pytest.mark.parametrize("use_fast", IMPLS)
def test_lod_rates_and_sizes(use_fast: bool) -> None:
    schema = StreamSchema.from_rig(load_rig("arkit52"), fps=[60, 30, 20, 10])
    enc = BatchEncoder(schema, 4, use_fast=use_fast)
    for lv in range(4):
        enc.add_stream(0, 1, lv, StreamParams(mode=DeltaMode.KEYFRAME))
    morphs, channels = walk(600, seed=2)
    counts = np.zeros(4, int)
    for i in range(600):
        counts += enc.encode(round(i * 1000 / 60), morphs[i], channels[i]).kinds > 0
    # 10 s at a 60 Hz tick in whole ms: each level's rate, give or take the frame at the edge
    assert np.all(np.abs(counts - [600, 300, 200, 100]) <= 1), counts


@pytest.mark.parametrize("use_fast", IMPLS)
@pytest.mark.parametrize("mode", MODES)
def test_late_joiner_matches_an_old_subscriber(use_fast: bool, mode: DeltaMode) -> None:
    params = StreamParams(mode=mode)
    morphs, channels = walk(90, seed=3)
    enc = BatchEncoder(SCHEMA, 1, use_fast=use_fast)
    enc.add_stream(0, 1, 0, params)
    old, new = Decoder(), Decoder()
    for d in (old, new):
        d.feed(encode_hello(1, SCHEMA, params))
    for i in range(90):
        msg = bytes(enc.encode(round(i * 1000 / 60), morphs[i], channels[i]).message(0))
        if msg:
            old.feed(msg)
        if i == 40:
            resync = enc.keyframe_for_new_subscriber(0)
            assert resync is not None
            assert isinstance(new.feed(resync), Frame)
        elif i > 40 and msg:
            assert isinstance(new.feed(msg), Frame)
            np.testing.assert_array_equal(new.stream(1).morphs, old.stream(1).morphs)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), loss=st.floats(0.05, 0.5))
def test_keyframe_relative_loss_costs_only_the_lost_frames(seed: int, loss: float) -> None:
    params = StreamParams(mode=DeltaMode.KEYFRAME, keyframe_ms=250)
    morphs, channels = walk(80, seed=seed)
    rng = np.random.default_rng(seed)
    msgs, _ = run(params, morphs, channels, use_fast=bool(IMPLS[-1]))
    full, lossy = Decoder(), Decoder()
    for d in (full, lossy):
        d.feed(encode_hello(1, SCHEMA, params))
    for msg in msgs:
        full.feed(msg)
        if rng.random() < loss:
            continue
        result = lossy.feed(msg)
        if isinstance(result, Frame):  # never garbage: exactly what a lossless client shows
            np.testing.assert_array_equal(lossy.stream(1).morphs, full.stream(1).morphs)
            np.testing.assert_array_equal(lossy.stream(1).channels, full.stream(1).channels)
        else:
            assert isinstance(result, NeedKeyframe)  # only when the keyframe itself was lost


def test_chained_loss_asks_for_a_keyframe_then_recovers() -> None:
    params = StreamParams(mode=DeltaMode.CHAINED, keyframe_ms=200)
    morphs, channels = walk(40, seed=9)
    msgs, _ = run(params, morphs, channels, use_fast=bool(IMPLS[-1]))
    dec = Decoder()
    dec.feed(encode_hello(1, SCHEMA, params))
    results = [dec.feed(m) for i, m in enumerate(msgs) if m and i != 3]
    kinds = [type(r).__name__ for r in results]
    assert kinds[:3] == ["Frame"] * 3
    assert "NeedKeyframe" in kinds
    after = kinds[kinds.index("NeedKeyframe") :]
    assert after[after.index("Frame") :] == ["Frame"] * len(after[after.index("Frame") :])


@pytest.mark.skipif(
    _fast is None, reason="the Cython codec is not built (pip install . builds it; CI always does)"
)
@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    sessions=st.integers(1, 6),
    bits=st.sampled_from([8, 16]),
    dead_band=st.sampled_from([0.0, 0.5, 1.0, 4.0]),
    hold=st.integers(1, 8),
)
def test_batch_cython_matches_python(
    seed: int, sessions: int, bits: int, dead_band: float, hold: int
) -> None:
    morphs, channels = walk(30, seed, sessions)
    morphs[5, 0, 3] = np.nan  # non-finite inputs quantize the same way in both
    morphs[6, 0, 4] = np.inf
    encs = [BatchEncoder(SCHEMA, 4 * sessions, use_fast=f) for f in (False, True)]
    for enc in encs:
        for s in range(sessions):
            for lv in range(4):
                mode = DeltaMode((s + lv) % 2)
                enc.add_stream(s, 100 + s, lv, StreamParams(bits, mode, 300, dead_band, hold))
    for i in range(30):
        a, b = (e.encode(i * 17, morphs[i], channels[i]) for e in encs)
        assert bytes(a.buffer[: a.offsets[-1]]) == bytes(b.buffer[: b.offsets[-1]])
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_array_equal(a.kinds, b.kinds)


def test_one_group_is_encoded_once_for_all_its_subscribers() -> None:
    """A (session, LOD, mode, bits) group is one stream slot; its bytes do not depend on the
    other slots in the batch (so the shell may fan the same bytes out)."""
    morphs, channels = walk(20, seed=4, sessions=3)
    alone = BatchEncoder(SCHEMA, 1)
    alone.add_stream(0, 5, 1, StreamParams())
    crowd = BatchEncoder(SCHEMA, 9)
    for s in range(3):
        for lv in (0, 1, 3):
            crowd.add_stream(s, 3 + s, lv, StreamParams())
    for i in range(20):
        a = alone.encode(i * 17, morphs[i, 2:3], channels[i, 2:3])
        b = crowd.encode(i * 17, morphs[i], channels[i])
        assert bytes(a.message(0)) == bytes(b.message(7))


def test_capacity_and_bad_arguments() -> None:
    enc = BatchEncoder(SCHEMA, 1)
    enc.add_stream(0, 1, 0, StreamParams())
    with pytest.raises(RuntimeError):
        enc.add_stream(0, 2, 0, StreamParams())
    with pytest.raises(ValueError):
        enc.encode(0, np.zeros((1, M), np.float64), np.zeros((1, C), np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        enc.encode(0, np.zeros((0, M), np.float32), np.zeros((0, C), np.float32))
    with pytest.raises(ValueError):
        StreamParams(bits=12)


@pytest.mark.parametrize("name", builtin_rig_names())
def test_every_builtin_rig_has_a_schema(name: str) -> None:
    rig = load_rig(name)
    schema = StreamSchema.from_rig(rig)
    assert schema.lods[0].morphs == tuple(range(rig.morph_count))
    assert all(lv.size > 0 for lv in schema.lods)
    assert schema.lods[3].size <= schema.lods[0].size


def test_subscribers_share_a_group_and_late_joiners_get_a_keyframe() -> None:
    enc = BatchEncoder(SCHEMA, 4)
    a, created_a = enc.acquire(0, 9, 1, StreamParams())
    b, created_b = enc.acquire(0, 9, 1, StreamParams())
    c, created_c = enc.acquire(0, 9, 1, StreamParams(bits=16))
    assert (a, created_a, created_b, created_c) == (b, True, False, True) and c != a
    assert enc.keyframe_for_new_subscriber(a) is None  # nothing sent yet: tick 0 is a keyframe
    morphs, channels = walk(3, seed=5)
    enc.encode(0, morphs[0], channels[0])
    assert enc.keyframe_for_new_subscriber(a) is not None
    assert enc.subscribers(a) == 2
    assert not enc.release(a)
    assert enc.release(b)
    assert not enc.active[a]
    d, created_d = enc.acquire(0, 9, 1, StreamParams())
    assert created_d and d == a
    with pytest.raises(ValueError):
        enc.release(3)
