"""Issue 20 reproductions (auth off): rig names, utterance and body limits, capacity errors,
error shapes, idle expiry. Each test is one reported defect.

The app runs in process on a fake clock (tests/inprocess.py); only the requests written by hand
on a socket (chunked bodies, lying lengths, huge queries: the HTTP server's own parsing) go to a
real ``serve``."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import shutil
import socket
import wave
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from avatar_engine.server import errors
from inprocess import InProcessServer
from server_process import ServerProcess

STARTUP_S = 120.0
"""A loaded machine (the suite runs beside other work) can take a while to start a server."""


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess("--livelink-port", "0", "--vmc-port", "0").wait_ready(STARTUP_S)
    yield proc
    proc.stop()


@pytest.fixture
def client(inprocess: InProcessServer) -> InProcessServer:
    """The app in process, called like an HTTP client."""
    return inprocess


def _session(client: InProcessServer | httpx.Client, sid: str) -> None:
    response = client.post("/sessions", json={"id": sid})
    assert response.status_code in (201, 409), response.text


def _shape(response: httpx.Response) -> dict[str, str]:
    """The documented error body: exactly ``error`` and ``detail``, both strings."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and isinstance(body["detail"], str)
    return body


# -- 1. any server file opened as a rig ----------------------------------------------------


@pytest.mark.parametrize(
    "rig",
    ["/dev/zero", "/etc/shadow", "/etc", "/no/such/file.json", "../../etc/passwd",
     "cc4-extended.json", "rigs/cc4-extended", "C:\\rig"],
)  # fmt: skip
def test_rig_paths_are_refused_without_saying_what_exists(
    client: InProcessServer, rig: str
) -> None:
    response = client.post("/sessions", json={"rig": rig})
    assert response.status_code == 422
    detail = _shape(response)["detail"]
    for leak in ("No such file", "Is a directory", "not valid JSON", "Permission", "cannot read"):
        assert leak not in detail


def test_an_unknown_rig_name_lists_the_names_that_exist(client: InProcessServer) -> None:
    response = client.post("/sessions", json={"rig": "no-such-rig"})
    assert response.status_code == 422
    assert "available rigs: " in _shape(response)["detail"] and "cc4-extended" in response.text
    assert client.post("/sessions", json={"rig": "arkit52"}).status_code == 201


def test_rigs_of_the_configured_folder_are_named_not_pathed(tmp_path: Path) -> None:
    source = resources.files("avatar_engine.rigs.data") / "arkit52.json"
    rig = json.loads(source.read_text("utf-8"))
    rig["name"] = "studio-face"
    (tmp_path / "studio-face.json").write_text(json.dumps(rig))
    shutil.copy(str(source), tmp_path / "misnamed.json")  # its file calls it arkit52
    c = InProcessServer(rig_dir=str(tmp_path))
    try:
        assert "studio-face" in c.get("/rigs").json()["rigs"]
        made = c.post("/sessions", json={"id": "s", "rig": "studio-face"})
        assert made.status_code == 201 and made.json()["rig"] == "studio-face"
        assert c.get("/rigs/studio-face").json()["name"] == "studio-face"
        misnamed = c.post("/sessions", json={"rig": "misnamed"})
        assert misnamed.status_code == 422 and str(tmp_path) not in misnamed.text
        outside = c.post("/sessions", json={"rig": str(tmp_path / "studio-face.json")})
        assert outside.status_code == 422
    finally:
        c.close()


# -- 2. timings that allocate gigabytes --------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"phonemes": [{"p": "AA", "start": 0, "end": 1e6}]},
        {"words": [{"word": "hello", "start": 0, "end": 1e7}]},
        {"azure": [{"visemeId": 1, "audioOffset": 0}, {"visemeId": 2, "audioOffset": 1e18}]},
        {"polly": '{"time": 1000000000000, "type": "viseme", "value": "p"}'},
    ],
)
def test_timings_beyond_the_utterance_limit_are_413(client: InProcessServer, body: object) -> None:
    _session(client, "long")
    response = client.post("/sessions/long/speak", json=body)
    assert response.status_code == 413
    assert "at most 300 s" in _shape(response)["detail"]


def test_timings_within_the_limit_still_play(client: InProcessServer) -> None:
    _session(client, "ok")
    body = {"phonemes": [{"p": "AA", "start": 0, "end": 0.3}, {"p": "M", "start": 0.3, "end": 0.4}]}
    assert client.post("/sessions/ok/speak", json=body).status_code == 202


# -- 7. capacity errors -------------------------------------------------------------------


def test_long_german_text_is_split_not_refused(client: InProcessServer) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (tools/test.sh installs it)")
    _session(client, "de")
    text = ("Das ist ein ziemlich langer deutscher Satz mit vielen Wörtern. " * 400)[:20_000]
    face_only = {"text": text, "lang": "de", "voice": "none"}  # a voice has its own limit
    response = client.post("/sessions/de/speak", json=face_only)
    assert response.status_code == 202, response.text
    voiced = client.post("/sessions/de/speak", json={"text": text, "lang": "de"})
    assert 400 <= voiced.status_code < 500 and "at most" in _shape(voiced)["detail"]
    assert client.get("/sessions/de").json()["id"] == "de"  # the server is alive


def _wav(seconds: float, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate), np.int16).tobytes())
    return out.getvalue()


def test_a_wav_longer_than_the_voice_queue_holds_is_429_naming_the_bound(
    client: InProcessServer,
) -> None:
    """The face of a voice enters the speech curves as it plays (issue 15), so the bound on
    audio is the voice queue's 60 s ahead of playback, checked before any recognition."""
    _session(client, "wav")
    response = client.post(
        "/sessions/wav/audio", content=_wav(62.0, 8000), headers={"content-type": "audio/wav"}
    )
    assert response.status_code == 429
    assert "at most 60 s" in _shape(response)["detail"]


# -- 6. body limits while reading ---------------------------------------------------------


def _raw_post(port: int, path: str, head: bytes, chunks: Iterator[bytes]) -> bytes:
    """Send a request by hand (chunked, or a lying Content-Length) and return the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode() + head + b"\r\n")
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before we finished: what we want
        sock.settimeout(30)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        return reply


def test_a_chunked_body_over_the_limit_is_cut_while_reading(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as c:
        _session(c, "chunked")

    def chunks() -> Iterator[bytes]:
        block = b"\0" * 65536
        for _ in range(200 * 16):  # 200 MiB if the server read it all
            yield b"%x\r\n%s\r\n" % (len(block), block)
        yield b"0\r\n\r\n"

    head = b"Content-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n"
    reply = _raw_post(server.port, "/sessions/chunked/audio", head, chunks())
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"error":"too_large"' in reply


def test_a_declared_length_over_the_limit_is_413_before_reading(server: ServerProcess) -> None:
    head = b"Content-Type: application/json\r\nContent-Length: 500000000\r\n"
    reply = _raw_post(server.port, "/sessions", head, iter([b"{"]))
    assert reply.startswith(b"HTTP/1.1 413") and b'"too_large"' in reply


# -- 9. audio streams of deleted sessions --------------------------------------------------


def test_audio_streams_of_deleted_sessions_are_released(client: InProcessServer) -> None:
    chunk = {"pcm16": base64.b64encode(np.zeros(480, np.int16).tobytes()).decode(), "rate": 24000}
    for i in range(260):  # more than the 256 streams that may be open at once
        sid = f"cycle{i}"
        assert client.post("/sessions", json={"id": sid}).status_code == 201
        streamed = client.post(f"/sessions/{sid}/audio", json=chunk)
        assert streamed.status_code == 202, (i, streamed.text)
        assert client.delete(f"/sessions/{sid}").status_code == 204


# -- 10. every error in the documented shape -----------------------------------------------


def test_framework_errors_have_the_documented_shape(client: InProcessServer) -> None:
    _session(client, "shape")
    assert _shape(client.get("/no/such/route"))["error"] == "not_found"
    wrong = client.put("/sessions")
    assert wrong.status_code == 405 and set(wrong.headers["allow"].split(", ")) == {"GET", "POST"}
    assert _shape(wrong)["error"] == "method_not_allowed"
    wrong_api = client.get("/rtc/offer")  # under the bundled client's static mount
    assert wrong_api.status_code == 405 and wrong_api.headers["allow"] == "POST"
    broken = client.post("/sessions", content=b"{bad", headers={"content-type": "application/json"})
    assert broken.status_code == 422 and _shape(broken)["error"] == "invalid_request"
    not_utf8 = client.post(
        "/sessions/shape/speak", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert 400 <= not_utf8.status_code < 500 and _shape(not_utf8)
    chunk = client.post("/sessions/shape/audio", json={"pcm16": 5})
    assert chunk.status_code == 422 and "pcm16" in _shape(chunk)["detail"]
    assert client.post("/sessions", json={"lod": True}).status_code == 422
    null = client.post("/sessions/shape/emotion", json={"emotion": "happy", "mix": None})
    assert null.status_code == 422 and _shape(null)


def test_a_query_longer_than_any_parameter_allows_reaches_validation(
    server: ServerProcess,
) -> None:
    with httpx.Client(base_url=server.url) as c:
        _session(c, "q")
    text = quote("\U0001f3fb" * 21_000)  # 252 KB: uvicorn's default would answer plain 400
    head = b"Content-Type: audio/wav\r\nContent-Length: 0\r\n"
    reply = _raw_post(server.port, f"/sessions/q/audio?text={text}", head, iter([]))
    assert reply.startswith(b"HTTP/1.1 422"), reply[:100]
    assert b'"invalid_request"' in reply and b"text" in reply


def test_an_unexpected_error_is_a_500_in_the_documented_shape() -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get("/boom")

    response = asyncio.run(get())
    assert response.status_code == 500
    assert _shape(response)["error"] == "internal" and "leak" not in response.text


# -- 13. sessions expire when idle ---------------------------------------------------------


def test_idle_sessions_expire_and_watched_ones_do_not(caplog: pytest.LogCaptureFixture) -> None:
    srv = InProcessServer(session_idle_timeout_s=1)
    start = srv.clock.t
    try:
        for sid in ("idle", "watched"):
            assert srv.post("/sessions", json={"id": sid}).status_code == 201
        srv.watch("watched")
        with caplog.at_level(logging.INFO, logger="avatar_engine.server"):
            for _ in range(90):  # the sweep runs once a second: expired within two
                srv.advance(0.2)
                if srv.get("/sessions/idle").status_code == 404:
                    break
        assert srv.get("/sessions/idle").status_code == 404 and srv.clock.t - start <= 2.2
        assert srv.get("/sessions/watched").status_code == 200  # the watched one lives
        assert "session expired" in caplog.messages
    finally:
        srv.close()
