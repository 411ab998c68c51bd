"""Issue 20 reproductions with auth on: tenant isolation and /stats behind auth on the app in
process (tests/inprocess.py); tokens out of the access log, authentication before the body and
the start-up refusals (empty secret, open UDP without auth, a UDP port in use) against a real
``serve``."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
import websockets

from inprocess import InProcessServer
from server_process import ServerProcess, free_port

STARTUP_S = 120.0
"""A loaded machine (the suite runs beside other work) can take a while to start a server."""

SECRET = "hardening-secret-long-enough-for-hs256"


def token(scope: str, *, tenant: str, sessions: object = "*") -> str:
    claims = {"sub": "t", "tenant": tenant, "scope": scope, "sessions": sessions}
    return jwt.encode({**claims, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture
def app() -> Iterator[InProcessServer]:
    """The app in process with the real server's options."""
    srv = InProcessServer(jwt_secret=SECRET)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess(
        "--livelink-port", "0", "--vmc-port", "0", env={"AVATAR_ENGINE_JWT_SECRET": SECRET}
    ).wait_ready(STARTUP_S)
    yield proc
    proc.stop()


# -- 4. tenant isolation ------------------------------------------------------------------


async def _close_code(url: str) -> int | None:
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await ws.recv()
        return ws.close_code


def test_another_tenants_session_is_404_whatever_the_token_names(app: InProcessServer) -> None:
    owner = bearer(token("admin", tenant="t1"))
    intruder_token = token("admin", tenant="t2", sessions=["A"])
    intruder = bearer(intruder_token)
    c = app
    assert c.post("/sessions", json={"id": "A"}, headers=owner).status_code == 201
    assert c.get("/sessions/A", headers=intruder).status_code == 404
    speak = c.post("/sessions/A/speak", json={"text": "hi", "voice": "none"}, headers=intruder)
    assert speak.status_code == 404
    assert (
        c.post("/sessions/A/emotion", json={"emotion": "sad"}, headers=intruder).status_code == 404
    )
    created = c.post("/sessions", json={"id": "A"}, headers=intruder)
    assert created.status_code == 404 and "exists" not in created.text  # not 409
    assert c.delete("/sessions/A", headers=intruder).status_code == 404
    assert c.get("/sessions", headers=intruder).json()["sessions"] == []
    query = f"token={intruder_token}"
    assert c.connect("/sessions/A/stream", query).close_code == 4404
    assert c.connect("/sessions/A/publish", query).close_code == 4404
    assert c.get("/sessions/A", headers=owner).status_code == 200  # untouched
    mine = c.post("/sessions", json={"id": "A"}, headers=owner)
    assert mine.status_code == 409  # the owner may learn its own session exists


# -- 5. tokens in the access log ------------------------------------------------------------


def test_query_tokens_never_reach_the_log(server: ServerProcess) -> None:
    secret_token = token("admin", tenant="t3")
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/sessions", params={"token": secret_token}).status_code == 200
    asyncio.run(_close_code(f"{server.ws_url}/sessions/none/stream?token={secret_token}"))
    time.sleep(0.3)
    log = server.log()
    assert "token=***" in log
    assert secret_token not in log and secret_token.split(".")[2] not in log


# -- 6. authentication before the body is read -------------------------------------------


def test_an_unauthenticated_body_is_refused_before_it_is_read(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        head = (
            b"POST /sessions/A/audio HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        # The first KiB of a body that would never end: small enough that the server has read
        # all of it when it answers, so its close is a FIN and not a reset that could discard
        # the reply in flight (seen with 64 KiB on a loaded machine).
        sock.sendall(head + b"400\r\n" + b"\0" * 0x400 + b"\r\n")
        reply = b""  # answered without the rest of the body ever being sent
        while not reply.endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    assert b'"unauthorized"' in reply


# -- 13. /stats needs an admin token when auth is on ---------------------------------------


def test_stats_needs_an_admin_token(app: InProcessServer) -> None:
    assert app.get("/stats").status_code == 401
    viewer = bearer(token("subscribe", tenant="t1"))
    assert app.get("/stats", headers=viewer).status_code == 403
    stats = app.get("/stats", headers=bearer(token("admin", tenant="t1")))
    assert stats.status_code == 200 and "sessions" in stats.json()
    assert app.get("/metrics").status_code == 200  # counters only: public like /health


# -- 13. start-up refusals: exit 2 with one line ---------------------------------------------


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "avatar_engine.cli", "serve", "--port", str(free_port())]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def _one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    out = (result.stdout + result.stderr).strip()
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    return out


def test_an_empty_jwt_secret_is_refused() -> None:
    line = _one_line_refusal(_serve(env={"AVATAR_ENGINE_JWT_SECRET": ""}))
    assert "jwt_secret" in line and "empty" in line


def test_udp_capture_on_all_interfaces_needs_auth_or_an_allowlist() -> None:
    line = _one_line_refusal(_serve("--udp-host", "0.0.0.0", "--livelink-port", "0",
                                    "--vmc-port", str(free_port(socket.SOCK_DGRAM))))  # fmt: skip
    assert "0.0.0.0" in line and "capture_allowlist" in line


def test_send_threads_out_of_range_is_refused() -> None:
    line = _one_line_refusal(_serve("--send-threads", "0"))
    assert "send_threads" in line and "1..64" in line


def test_a_udp_port_in_use_is_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        line = _one_line_refusal(_serve("--livelink-port", str(port), "--vmc-port", "0"))
    assert f"livelink_port: cannot bind UDP 127.0.0.1:{port}" in line
