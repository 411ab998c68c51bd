"""Bad input: the Python and Cython decoders raise ProtocolError (never anything else), keep
their streams intact, and agree with each other on every input."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatar_engine.codec import Decoder, Frame, NeedKeyframe, ProtocolError
from avatar_engine.codec.conformance import decode_step
from avatar_engine.codec.encoder import _fast

ROOT = Path(__file__).resolve().parents[1]
VECTOR = json.loads((ROOT / "tests" / "vectors" / "chained_8bit.json").read_text())
MESSAGES = [bytes.fromhex(s["hex"]) for s in VECTOR["steps"]]
HELLO, KEYFRAME, DELTAS = MESSAGES[0], MESSAGES[1], MESSAGES[2:]
IMPLS = [False] + ([True] if _fast is not None else [])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def primed(use_fast: bool) -> Decoder:
    dec = Decoder(use_fast=use_fast)
    dec.feed(HELLO)
    dec.feed(KEYFRAME)
    return dec


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf[:cut] if cut is not None else buf)


@FUZZ
@given(
    base=st.sampled_from(MESSAGES),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4),
    cut=st.none() | st.integers(0, 300),
)
def test_mutated_messages(base: bytes, edits: list[tuple[int, int]], cut: int | None) -> None:
    data = mutate(base, edits, cut)
    results = []
    for use_fast in IMPLS:
        dec = primed(use_fast)
        before = dec.stream(7).morphs.copy()
        out = decode_step(dec, data)
        if out["kind"] == "error":
            np.testing.assert_array_equal(dec.stream(7).morphs, before)
        results.append(out)
    assert all(r == results[0] for r in results)


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    for use_fast in IMPLS:
        try:
            primed(use_fast).feed(data)
        except ProtocolError as exc:
            assert exc.code in {"malformed", "type", "limit", "version", "body", "value"}


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=16),
    lambda children: st.lists(children, max_size=8)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)  # fmt: skip


@FUZZ
@given(kind=st.integers(0, 12), rest=st.lists(msgpack_values, max_size=8))
def test_well_formed_but_wrong(kind: int, rest: list[object]) -> None:
    """Well-formed msgpack arrays with a known type code and arbitrary fields."""
    data = msgpack.packb([kind, *rest], use_bin_type=True)
    results = []
    for use_fast in IMPLS:
        dec = primed(use_fast)
        results.append(decode_step(dec, data))
    assert all(r == results[0] for r in results)


def test_absurd_lengths_cost_nothing() -> None:
    dec = Decoder()
    for data in (
        bytes([0xDD, 0xFF, 0xFF, 0xFF, 0xFF]),
        bytes([0xDF, 0xFF, 0xFF, 0xFF, 0xFF]),
        bytes([0xC6, 0xFF, 0xFF, 0xFF, 0xFF]),
        bytes([0xDB, 0xFF, 0xFF, 0xFF, 0xFF]),
        bytes([0xC9, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    ):
        with pytest.raises(ProtocolError) as err:
            dec.feed(data)
        assert err.value.code == "malformed"


def test_delta_without_keyframe_asks_for_one() -> None:
    for use_fast in IMPLS:
        dec = Decoder(use_fast=use_fast)
        dec.feed(HELLO)
        result = dec.feed(DELTAS[0])
        assert isinstance(result, NeedKeyframe)
        rest = dec.stream(7).hello.schema.lo.astype(np.float32)
        np.testing.assert_array_equal(dec.stream(7).morphs, rest)  # untouched
        assert isinstance(dec.feed(KEYFRAME), Frame)
        assert isinstance(dec.feed(DELTAS[0]), Frame)


def test_short_cpp_fuzz_run(tmp_path: Path) -> None:
    """A few thousand libFuzzer inputs (the 1M-input run is native/fuzz/run.sh)."""
    if shutil.which("clang++") is None:
        pytest.skip("clang++ (with libFuzzer) is not installed")
    run = subprocess.run(
        [str(ROOT / "native" / "fuzz" / "run.sh"), "3000", "60"],
        env={"FUZZ_WORK": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done 3000 runs" in run.stderr
