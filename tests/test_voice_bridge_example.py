"""tools/voice_agent_example.py against a real ``serve``: a recorded WAV streamed as realtime-API
deltas reaches a viewer as voice and a moving mouth; ``--cancel-after`` barges in."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Audio, Event, Frame, Hello
from avatar_engine.codec.wire import EventKind
from server_process import ServerProcess

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "tools" / "voice_agent_example.py"
FOX = ROOT / "tests" / "data" / "audio" / "fox-espeak.wav"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess().wait_ready()
    yield proc
    proc.stop()


def run_example(server: ServerProcess, session: str, *extra: str) -> tuple[dict, list]:  # type: ignore[type-arg]
    """Start a viewer, run the example as a user would, return its report and what the
    viewer decoded."""

    async def scenario() -> tuple[dict, list]:  # type: ignore[type-arg]
        seen: list[object] = []
        done = asyncio.Event()

        async def viewer() -> None:
            decoder, mouth = Decoder(), 0
            url = f"{server.ws_url}/sessions/{session}/stream?audio=pcm"
            async with websockets.connect(url) as ws:
                while not done.is_set():
                    try:
                        message = await asyncio.wait_for(ws.recv(), 0.1)
                    except TimeoutError:
                        continue
                    result = decoder.feed(message)
                    if isinstance(result, Hello):
                        mouth = result.schema.morph_names.index("V_Open")
                    if isinstance(result, Frame):
                        seen.append(("mouth", float(decoder.stream(result.sid).morphs[mouth])))
                    else:
                        seen.append(result)

        async with httpx.AsyncClient(base_url=server.url) as http:  # the viewer's session
            await http.post("/sessions", json={"id": session})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE), str(FOX), "--url", server.url, "--session", session,
            *extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        task = asyncio.create_task(viewer())
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        await asyncio.sleep(1.0)
        done.set()
        await task
        return json.loads(out), seen

    return asyncio.run(scenario())


def test_the_example_streams_voice_and_face_to_a_viewer(server: ServerProcess) -> None:
    report, seen = run_example(server, "example", "--chunk-ms", "100")
    assert report["deltas"] > 10 and "cut" not in report
    audio = [r for r in seen if isinstance(r, Audio)]
    assert len(audio) * 20 >= 1500  # most of the 2.6 s recording (the viewer joined late)
    assert max(v for k, v in (r for r in seen if isinstance(r, tuple))) > 0.1  # mouth moved


def test_cancel_after_cuts_the_voice_for_the_viewer(server: ServerProcess) -> None:
    report, seen = run_example(server, "barge-example", "--cancel-after", "1.2")
    assert report["cut"]["type"] == "voice.cut"  # type: ignore[index]
    assert 500 <= report["cut"]["audio_end_ms"] <= 1300  # type: ignore[index]
    cuts = [r for r in seen if isinstance(r, Event) and r.kind == EventKind.VOICE_CUT]
    assert len(cuts) == 1
    after = seen[seen.index(cuts[0]) :]
    assert not any(isinstance(r, Audio) for r in after)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"RIFF0000WAVE")
    command = [sys.executable, str(EXAMPLE), str(bad)]
    proc = subprocess.run(command, capture_output=True, check=False, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "voice_agent_example:" in proc.stderr
