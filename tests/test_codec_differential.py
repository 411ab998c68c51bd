"""Differential testing: mutated messages through the Python reference, Cython, C++ and JS
decoders must give the same result, error category included (the vectors pin down chosen
cases; this covers the space around them). Deterministic: the corpus comes from a seeded RNG."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from avatar_engine.codec import Decoder
from avatar_engine.codec.conformance import decode_step
from avatar_engine.codec.encoder import _fast

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"
CASES = 1500


def _messages(name: str) -> list[bytes]:
    doc = json.loads((VECTORS / f"{name}.json").read_text())
    return [bytes.fromhex(s["hex"]) for s in doc["steps"] if "hex" in s]


def _structured(rng: np.random.Generator, msg: bytes) -> bytes:
    """Replace one element of a message array with another msgpack value."""
    try:
        arr = msgpack.unpackb(msg, raw=False, strict_map_key=False)
    except Exception:
        return msg
    if not isinstance(arr, list) or not arr:
        return msg
    choices: list[Any] = [
        None, True, -1, 0, 1, 3, 4, 127, 128, 255, 256, 65535, 65536, 2**32, 2**64 - 1,
        -(2**63), 1.5, float("nan"), "x", "", b"", b"\x01\x01\x00", [], {}, [1, 2],
        {"bits": 16},
    ]  # fmt: skip
    arr[int(rng.integers(len(arr)))] = choices[int(rng.integers(len(choices)))]
    if rng.random() < 0.2:
        arr.append(choices[int(rng.integers(len(choices)))])
    return bytes(msgpack.packb(arr, use_bin_type=True))


def corpus() -> list[list[bytes]]:
    """Cases of (hello, keyframe, mutated message[, follow-up]) from every vector."""
    rng = np.random.default_rng(2026)
    sources = {p.stem: _messages(p.stem) for p in sorted(VECTORS.glob("*.json"))}
    names = sorted(sources)
    cases = []
    for _ in range(CASES):
        msgs = sources[names[int(rng.integers(len(names)))]]
        prefix = msgs[: int(rng.integers(1, min(4, len(msgs)) + 1))]
        target = bytearray(msgs[int(rng.integers(len(msgs)))])
        kind = rng.random()
        if kind < 0.4 and target:
            for _ in range(int(rng.integers(1, 4))):
                target[int(rng.integers(len(target)))] = int(rng.integers(256))
        elif kind < 0.55:
            target = target[: int(rng.integers(len(target) + 1))]
        elif kind < 0.65:
            at = int(rng.integers(len(target) + 1))
            target[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 4)), dtype=np.uint8))
        else:
            target = bytearray(_structured(rng, bytes(target)))
        follow = [msgs[min(len(msgs) - 1, len(prefix))]] if rng.random() < 0.5 else []
        cases.append([*prefix, bytes(target), *follow])
    return cases


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def expected(cases: list[list[bytes]], use_fast: bool) -> list[dict[str, Any]]:
    out = []
    for case in cases:
        dec = Decoder(use_fast=use_fast)
        out.extend(_finite(decode_step(dec, m)) for m in case)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict[str, Any]]]:
    cases = corpus()
    tmp = tmp_path_factory.mktemp("diff")
    records = bytearray()
    for case in cases:
        records += struct.pack("<BI", 2, 0)
        for m in case:
            records += struct.pack("<BI", 0, len(m)) + m
    msgs = tmp / "diff.msgs"
    msgs.write_bytes(bytes(records))
    exp = expected(cases, use_fast=False)
    want = tmp / "diff.jsonl"
    want.write_text("\n".join(json.dumps(e) for e in exp) + "\n")
    return msgs, want, exp


def same(a: Any, e: Any, where: str) -> None:
    if isinstance(e, float) or (isinstance(a, float) and isinstance(e, int)):
        assert isinstance(a, int | float), where
        assert math.isclose(a, e, rel_tol=1e-6, abs_tol=1e-6), f"{where}: {a} != {e}"
    elif isinstance(e, list):
        assert isinstance(a, list) and len(a) == len(e), f"{where}: {a} != {e}"
        for i, (x, y) in enumerate(zip(a, e, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(e, dict):
        assert isinstance(a, dict) and set(a) == set(e), f"{where}: {a} != {e}"
        for k in e:
            same(a[k], e[k], f"{where}.{k}")
    else:
        assert a == e, f"{where}: {a!r} != {e!r}"


@pytest.mark.skipif(
    _fast is None, reason="the Cython codec is not built (pip install . builds it; CI always does)"
)
def test_cython_matches_python(files: tuple[Path, Path, list[dict[str, Any]]]) -> None:
    got = expected(corpus(), use_fast=True)
    for i, (g, e) in enumerate(zip(got, files[2], strict=True)):
        same(g, e, f"message {i}")


def test_cpp_matches_python(files: tuple[Path, Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    exe = tmp_path / "decode_vectors"
    subprocess.run(
        ["g++", "-std=c++17", "-O1", "-I", str(ROOT / "native" / "include"),
         str(ROOT / "native" / "examples" / "decode_vectors.cpp"), "-o", str(exe)],
        check=True, timeout=240,
    )  # fmt: skip
    out = subprocess.run(
        [str(exe), str(files[0])], check=True, capture_output=True, text=True, timeout=120
    )
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(got) == len(files[2])
    for i, (g, e) in enumerate(zip(got, files[2], strict=True)):
        same(g, e, f"message {i}")


def test_js_matches_python(files: tuple[Path, Path, list[dict[str, Any]]]) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    env = dict(os.environ, AVATAR_DIFF_MSGS=str(files[0]), AVATAR_DIFF_EXPECT=str(files[1]))
    run = subprocess.run(
        [node, "--test", "test/differential.test.js"],
        cwd=ROOT / "clients" / "threejs", env=env, capture_output=True, text=True,
        timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    assert "# pass 1" in run.stdout
