"""Conformance vectors (tests/vectors): every decoder and both encoders reproduce them.

Python and Cython run in process; the C++ example program is compiled with the system g++
and the JS decoder runs under node's own test runner, both through subprocess.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from avatar_engine.codec import BatchEncoder, Decoder, encode_hello
from avatar_engine.codec.conformance import decode_step
from avatar_engine.codec.encoder import _fast
from avatar_engine.codec.messages import parse_hello

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.json"))
IMPLS = ["python"] + (["cython"] if _fast is not None else [])


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return doc


def same(actual: Any, expected: Any, where: str) -> None:
    """Equal, with floats compared to 1e-6 (the implementations agree bit for bit in
    practice; the tolerance only keeps a libm difference from failing a port)."""
    if isinstance(expected, float) or isinstance(actual, float):
        assert isinstance(actual, int | float), where
        assert math.isclose(actual, expected, abs_tol=1e-6), f"{where}: {actual} != {expected}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (
            f"{where}: {actual} != {expected}"
        )
        for key in expected:
            same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            same(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def test_there_are_vectors() -> None:
    assert len(NAMES) >= 10
    kinds = {s["expect"]["kind"] for n in NAMES for s in load(n)["steps"] if "expect" in s}
    assert kinds >= {
        "hello", "frame", "need_keyframe", "stale", "unknown_stream", "event", "control",
        "ping", "pong", "error_message", "publish_hello", "capture", "ignored", "error", "audio",
    }  # fmt: skip


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", NAMES)
def test_python_decoders(name: str, impl: str) -> None:
    decoder = Decoder(use_fast=impl == "cython")
    for i, step in enumerate(load(name)["steps"]):
        if "expect_lod" in step:
            decoder.expect_lod(step["expect_lod"]["sid"], step["expect_lod"]["lod"])
            continue
        same(decode_step(decoder, bytes.fromhex(step["hex"])), step["expect"], f"{name}[{i}]")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", [n for n in NAMES if "encode" in load(n)])
def test_encoders(name: str, impl: str) -> None:
    enc_doc = load(name)["encode"]
    hello = parse_hello(msgpack.unpackb(bytes.fromhex(enc_doc["hello"]), raw=False))
    assert encode_hello(hello.sid, hello.schema, hello.params).hex() == enc_doc["hello"]
    streams = enc_doc["streams"]
    enc = BatchEncoder(hello.schema, len(streams), use_fast=impl == "cython")
    for s in streams:
        enc.add_stream(0, s["sid"], s["lod"], hello.params)
    for i, tick in enumerate(enc_doc["ticks"]):
        morphs = np.array([tick["morphs"]], np.float32)
        channels = np.array([tick["channels"]], np.float32)
        out = enc.encode(tick["t"], morphs, channels)
        got = [bytes(out.message(k)).hex() for k in range(len(streams))]
        assert got == tick["out"], f"{name} tick {i}"


def _cpp_decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("cpp") / "decode_vectors"
    cmd = [
        "g++", "-std=c++17", "-O1", "-Werror", "-Wall", "-Wextra", "-Wpedantic", "-Wshadow",
        "-Wconversion", "-Wsign-conversion",
        "-fno-exceptions", "-fno-rtti",  # as Unreal builds its modules: the header needs neither
        "-I", str(ROOT / "native" / "include"),
        str(ROOT / "native" / "examples" / "decode_vectors.cpp"), "-o", str(exe),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=240)
    return exe


@pytest.fixture(scope="module")
def cpp_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    return _cpp_decoder(tmp_path_factory)


@pytest.mark.parametrize("name", NAMES)
def test_cpp_decoder(name: str, cpp_exe: Path) -> None:
    out = subprocess.run(
        [str(cpp_exe), str(VECTORS / f"{name}.msgs")],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    expected = [s["expect"] for s in load(name)["steps"] if "expect" in s]
    assert len(lines) == len(expected)
    for i, (got, exp) in enumerate(zip(lines, expected, strict=True)):
        same(got, exp, f"{name}[{i}]")


def test_js_decoder() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    client = ROOT / "clients" / "threejs"
    out = subprocess.run(
        [node, "--test", "test/protocol.test.js"],
        check=False,
        cwd=client,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_cpp_viewer_messages_match_python(tmp_path: Path) -> None:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    exe = tmp_path / "encode_controls"
    subprocess.run(
        ["g++", "-std=c++17", "-Werror", "-Wall", "-Wextra", "-Wconversion", "-Wsign-conversion",
         "-I", str(ROOT / "native" / "include"),
         str(ROOT / "native" / "examples" / "encode_controls.cpp"), "-o", str(exe)],
        check=True, timeout=240,
    )  # fmt: skip
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=30)
    sent = {s["hex"] for s in load("messages")["steps"] if "hex" in s}
    lines = out.stdout.split()
    assert len(lines) == 7
    assert set(lines) <= sent
