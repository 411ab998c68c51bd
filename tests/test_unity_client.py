"""The Unity package (clients/unity) compiled and run under Mono (Debian's mono-mcs).

* the C# decoder decodes every conformance vector (tests/vectors/*.msgs) to the expected
  results, checked like the C++ decoder's;
* the pure C# parts (name binding, voice buffer, jitter buffer, encoders) pass their checks;
* the Unity components compile against a thin stub of UnityEngine (tests/unity_stub), so a typo
  or a wrong API call fails here, and run against a real server with that stub;
* the WebSocket client (System.Net.WebSockets) decodes a live stream from a real
  ``avatar-engine serve``, frame for frame the same values as the Python decoder.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Hello
from live_capture import LiveLinkPhone, python_frames, wait_for_session
from server_process import ServerProcess
from test_codec_vectors import NAMES, VECTORS, load, same

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clients" / "unity"
STUB = ROOT / "tests" / "unity_stub"
PROTOCOL = sorted((PACKAGE / "Runtime" / "Protocol").glob("*.cs"))
CLIENT = sorted((PACKAGE / "Runtime" / "Client").glob("*.cs"))
UNITY = sorted((PACKAGE / "Runtime" / "Unity").glob("*.cs"))

pytestmark = pytest.mark.skipif(
    shutil.which("mcs") is None or shutil.which("mono") is None,
    reason="needs Debian's mono-mcs (tools/test.sh installs it)",
)


def compile_cs(out: Path, sources: list[Path], *, library: bool = False) -> Path:
    """mcs at C# 7.2 (what mcs knows; a subset of the package's C# 7.3), warnings as errors."""
    cmd = [
        "mcs", "-langversion:7.2", "-warnaserror+", "-nologo", "-r:System.dll",
        f"-target:{'library' if library else 'exe'}", f"-out:{out}", *map(str, sources),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("unity")


@pytest.fixture(scope="module")
def vector_runner(build: Path) -> Path:
    # The decoder alone: it must not need anything beyond mscorlib and System.
    return compile_cs(build / "VectorRunner.exe", [*PROTOCOL, STUB / "VectorRunner.cs"])


@pytest.mark.parametrize("name", NAMES)
def test_csharp_decoder_passes_the_conformance_vector(name: str, vector_runner: Path) -> None:
    out = subprocess.run(
        ["mono", str(vector_runner), str(VECTORS / f"{name}.msgs")],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    expected = [s["expect"] for s in load(name)["steps"] if "expect" in s]
    assert len(lines) == len(expected)
    for i, (got, exp) in enumerate(zip(lines, expected, strict=True)):
        same(got, exp, f"{name}[{i}]")


def test_csharp_client_parts_pass_their_checks(build: Path) -> None:
    exe = compile_cs(build / "UnitRunner.exe", [*PROTOCOL, *CLIENT, STUB / "UnitRunner.cs"])
    out = subprocess.run(
        ["mono", str(exe)], check=False, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok ")
    assert int(out.stdout.split()[1]) >= 25


def test_unity_components_compile_against_the_unity_api(build: Path) -> None:
    dll = compile_cs(
        build / "AvatarEngine.Runtime.dll",
        [*PROTOCOL, *CLIENT, *UNITY, STUB / "UnityEngine.cs"],
        library=True,
    )
    assert dll.stat().st_size > 0
    # The asmdef names the assembly the package builds, with no reference beyond UnityEngine.
    asmdef = json.loads((PACKAGE / "Runtime" / "AvatarEngine.Runtime.asmdef").read_text())
    assert asmdef["name"] == "AvatarEngine.Runtime"
    assert asmdef.get("references", []) == []
    package = json.loads((PACKAGE / "package.json").read_text())
    assert package["name"] == "com.avatar-engine.client"
    assert package.get("dependencies", {}) == {}


def test_every_package_asset_has_a_meta_file_with_a_unique_guid() -> None:
    """Packages installed from git are immutable: Unity ignores an asset without its .meta."""

    def hidden(p: Path) -> bool:  # Samples~ and other ~ folders are not imported
        return any(part.endswith("~") for part in p.relative_to(PACKAGE).parts)

    assets = [p for p in PACKAGE.rglob("*") if p.suffix != ".meta" and not hidden(p)]
    guids: dict[str, Path] = {}
    for asset in assets:
        meta = asset.with_name(asset.name + ".meta")
        assert meta.exists(), (
            f"{asset.relative_to(PACKAGE)} has no .meta (copy a sibling's, new guid)"
        )
        text = meta.read_text()
        guid = next(line.split()[1] for line in text.splitlines() if line.startswith("guid:"))
        assert len(guid) == 32 and guid not in guids, (
            f"{meta}: guid {guid} repeats {guids.get(guid)}"
        )
        guids[guid] = meta
        if asset.suffix == ".cs":
            assert "MonoImporter:" in text
        if asset.is_dir():
            assert "folderAsset: yes" in text
    assert len(guids) >= 18


# ------------------------------------------------------------------ against a real server


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().wait_ready()
    yield proc
    proc.stop()


def test_csharp_client_decodes_a_live_stream(server: ServerProcess, build: Path) -> None:
    exe = compile_cs(build / "LiveRunner.exe", [*PROTOCOL, *CLIENT, STUB / "LiveRunner.cs"])
    with LiveLinkPhone(server.livelink_port, "unity-live"):
        wait_for_session(server, "unity-live")

        async def scenario() -> tuple[str, dict[int, np.ndarray]]:
            python = asyncio.create_task(
                python_frames(f"{server.ws_url}/sessions/unity-live/stream", 6.0)
            )
            proc = await asyncio.create_subprocess_exec(
                "mono", str(exe), server.url, "unity-live", "30",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, stderr.decode()[-2000:]
            return stdout.decode(), await python

        out, reference = asyncio.run(scenario())
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    hello = next(line["hello"] for line in lines if "hello" in line)
    assert hello == {"rig": "cc4-extended", "morphs": 175, "channels": 9,
                     "first": "Brow_Raise_Inner_L", "audio": ""}  # fmt: skip
    frames = [line["frame"] for line in lines if "frame" in line]
    lod0 = [f for f in frames if f["lod"] == 0]
    lod2 = [f for f in frames if f["lod"] == 2]
    assert len(lod0) >= 30 and len(lod2) >= 30  # SET_LOD reached the server
    assert lod2[0]["keyframe"]  # the new level starts from a keyframe
    times = [f["t"] for f in lod0]
    assert times == sorted(times)
    matched = 0
    for f in lod0:
        if f["t"] in reference:
            np.testing.assert_allclose(f["morphs"], reference[f["t"]], atol=1e-6)
            matched += 1
    assert matched >= 10, f"only {matched} frames at common times"
    done = lines[-1]["done"]
    assert done["ok"] and done["errors"] == 0 and done["lod"] == 2
    assert done["sample"] in ("interpolate", "extrapolate", "hold")


def test_face_component_moves_blendshapes_and_the_head(server: ServerProcess, build: Path) -> None:
    exe = compile_cs(
        build / "FaceRunner.exe",
        [*PROTOCOL, *CLIENT, *UNITY, STUB / "UnityEngine.cs", STUB / "FaceRunner.cs"],
    )
    with LiveLinkPhone(server.livelink_port, "unity-face", jaw=0.6):
        wait_for_session(server, "unity-face")

        async def scenario() -> tuple[str, dict[int, np.ndarray], Any]:
            decoder = Decoder()
            async with websockets.connect(f"{server.ws_url}/sessions/unity-face/stream") as ws:
                hello = None
                out = subprocess.run(
                    ["mono", str(exe), server.url, "unity-face", "3"],
                    capture_output=True, text=True, timeout=60, check=True,
                )  # fmt: skip
                while True:  # the held state after the run: what the component should show
                    try:
                        msg = decoder.feed(await asyncio.wait_for(ws.recv(), 0.5))  # type: ignore[arg-type]
                    except TimeoutError:
                        break
                    if isinstance(msg, Hello):
                        hello = msg
            assert hello is not None
            st = decoder.stream(hello.sid)
            names = hello.schema.morph_names
            return out.stdout, {0: st.morphs.copy(), 1: st.channels.copy()}, names

        stdout, state, names = asyncio.run(scenario())
    result = json.loads(stdout.strip().splitlines()[-1])
    weights = result["weights"]
    jaw = 100 * float(state[0][names.index("Jaw_Open")])
    assert jaw > 20  # the phone holds the jaw open
    assert weights["jaw_open"] == pytest.approx(jaw, abs=0.5)  # case-insensitive match, x100
    assert weights["Body.Eye_Blink_L"] is not None  # an exporter's "Mesh." prefix
    assert weights["EYE_BLINK_R"] is not None
    assert weights["MyMouthWide"] is not None  # bound through the MorphNameMap asset
    assert weights["Unrelated"] is None
    yaw = float(state[1][0])  # HeadYaw, engine units
    assert yaw > 0.1
    _, qy, _, qw = result["head"]  # yaw only: a turn about Y
    assert qw > 0.99
    assert qy == pytest.approx(math.sin(math.radians(yaw * 40) / 2), abs=2e-3)
    assert result["state"] == "active"
    assert result["audio_playing"]
    assert any("4 of 175 morphs bound" in line for line in result["log"])


def test_voice_plays_through_the_audio_source(server: ServerProcess, build: Path) -> None:
    exe = compile_cs(
        build / "FaceRunner.exe",
        [*PROTOCOL, *CLIENT, *UNITY, STUB / "UnityEngine.cs", STUB / "FaceRunner.cs"],
    )
    assert httpx.post(f"{server.url}/sessions", json={"id": "unity-voice"}).status_code == 201
    proc = subprocess.Popen(
        ["mono", str(exe), server.url, "unity-voice", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        threading.Event().wait(1.5)  # connected, bound, frames flowing
        said = httpx.post(
            f"{server.url}/sessions/unity-voice/speak", json={"text": "Hello from Unity."}
        )
        assert said.status_code == 202, said.text
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["voice_packets"] >= 20  # PCM16 asked for with audio=pcm, 20 ms each
    assert result["voice_played"] >= 20  # scheduled on the face's clock and played
    assert result["audio_nonzero"] > 16000  # OnAudioFilterRead produced sound
