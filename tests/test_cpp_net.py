"""Native clients: the header decoder as Unreal modules build it, and the networked example.

The conformance runner (``native/examples/decode_vectors.cpp``) is built with
``-fno-exceptions -fno-rtti`` (Unreal's default for modules) and checked against every vector
in tests/test_codec_vectors.py. Here ``native/examples/subscribe_ws.cpp`` (a minimal RFC 6455
client over POSIX sockets, built the same way) subscribes to a real ``avatar-engine serve``,
decodes its live stream to the same values as the Python decoder, switches level with SET_LOD
and closes cleanly.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from live_capture import LiveLinkPhone, python_frames, wait_for_session
from server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
UNREAL_FLAGS = ["-fno-exceptions", "-fno-rtti"]

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")


def build(source: str, exe: Path) -> Path:
    cmd = [
        "g++", "-std=c++17", "-O1", "-Werror", "-Wall", "-Wextra", "-Wpedantic", "-Wshadow",
        "-Wconversion", "-Wsign-conversion", *UNREAL_FLAGS,
        "-I", str(ROOT / "native" / "include"), str(ROOT / "native" / "examples" / source),
        "-o", str(exe),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return exe


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().wait_ready()
    yield proc
    proc.stop()


def test_networked_example_decodes_a_live_stream(server: ServerProcess, tmp_path: Path) -> None:
    exe = build("subscribe_ws.cpp", tmp_path / "subscribe_ws")
    url = f"{server.ws_url}/sessions/cpp-live/stream"
    with LiveLinkPhone(server.livelink_port, "cpp-live"):
        wait_for_session(server, "cpp-live")

        async def scenario() -> tuple[str, dict[int, np.ndarray]]:
            python = asyncio.create_task(python_frames(url, 4.0))
            proc = await asyncio.create_subprocess_exec(
                str(exe), url, "--count", "60", "--lod", "2", "--values",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, stderr.decode()
            return stdout.decode(), await python

        out, reference = asyncio.run(scenario())
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    hello = lines[0]["hello"]
    assert (hello["rig"], hello["morphs"], hello["channels"]) == ("cc4-extended", 175, 9)
    frames = [line["frame"] for line in lines if "frame" in line]
    assert len(frames) == 60
    assert [f["lod"] for f in frames[:10]] == [0] * 10
    lod2 = [f for f in frames if f["lod"] == 2]
    assert lod2 and lod2[0]["keyframe"]  # SET_LOD: the new level starts from a keyframe
    assert all(f["lod"] == 2 for f in frames[frames.index(lod2[0]) :])
    matched = 0
    for f in frames:
        if f["lod"] == 0 and f["t"] in reference:
            np.testing.assert_allclose(f["morphs"], reference[f["t"]], atol=1e-6)
            matched += 1
    assert matched >= 5, f"only {matched} frames at common times"
    assert not [line for line in lines if "error" in line]
    assert lines[-1] == {"closed": 1000, "frames": 60}
