"""JWT scopes, session binding and tenant quotas (401/403/429, WebSocket 4401/4429) on the app
in process (tests/inprocess.py); what is said in the log and the refusal to start on a public
address without auth on a real server."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest

from inprocess import InProcessServer
from server_process import ServerProcess

SECRET = "test-secret-that-is-long-enough-for-hs256"


def token(scope: str, *, sessions: object = "*", tenant: str = "acme", ttl: int = 600) -> str:
    claims = {"sub": "t", "tenant": tenant, "scope": scope, "sessions": sessions}
    claims["exp"] = int(time.time()) + ttl
    return jwt.encode(claims, SECRET, algorithm="HS256")


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture
def app() -> Iterator[InProcessServer]:
    """The app in process with the real server's options below."""
    srv = InProcessServer(jwt_secret=SECRET, max_sessions=2, max_subscribers=1)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess(
        "--max-sessions", "2", "--max-subscribers", "1", env={"AVATAR_ENGINE_JWT_SECRET": SECRET}
    ).wait_ready()
    yield proc
    proc.stop()


def test_missing_bad_and_expired_tokens_are_401(app: InProcessServer) -> None:
    assert app.get("/sessions").status_code == 401
    assert app.get("/sessions", headers=bearer("garbage")).status_code == 401
    forged = jwt.encode(
        {"scope": "admin", "exp": time.time() + 60},
        "another-secret-of-sufficient-length!!",
        algorithm="HS256",
    )
    assert app.get("/sessions", headers=bearer(forged)).status_code == 401
    expired = app.get("/sessions", headers=bearer(token("admin", ttl=-10)))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def test_scopes_and_session_binding_are_403(app: InProcessServer) -> None:
    viewer = bearer(token("subscribe"))
    denied = app.post("/sessions", json={"id": "a1"}, headers=viewer)
    assert denied.status_code == 403 and "publish" in denied.json()["detail"]
    publisher = bearer(token("publish", sessions=["a1"]))
    assert app.post("/sessions", json={"id": "a1"}, headers=publisher).status_code == 201
    assert app.post("/sessions", json={"id": "a2"}, headers=publisher).status_code == 403
    assert (
        app.get("/sessions/a1", headers=bearer(token("subscribe", sessions=["zz"]))).status_code
        == 403
    )
    # Another tenant cannot even see it.
    other = bearer(token("admin", tenant="globex"))
    assert app.get("/sessions/a1", headers=other).status_code == 404
    # The token may also come as a query parameter (browsers cannot set WS headers).
    assert app.get("/sessions/a1", params={"token": token("subscribe")}).status_code == 200
    assert app.delete("/sessions/a1", headers=bearer(token("admin"))).status_code == 204


def test_session_quota_is_429_with_a_reason(app: InProcessServer) -> None:
    admin = bearer(token("admin", tenant="quota"))
    for i in range(2):
        assert app.post("/sessions", json={"id": f"q{i}"}, headers=admin).status_code == 201
    over = app.post("/sessions", json={"id": "q2"}, headers=admin)
    assert over.status_code == 429 and "limit of 2 sessions" in over.json()["detail"]
    # Other tenants are unaffected.
    assert (
        app.post(
            "/sessions", json={"id": "g0"}, headers=bearer(token("admin", tenant="g"))
        ).status_code
        == 201
    )


def test_websocket_auth_and_subscriber_quota_close_codes(app: InProcessServer) -> None:
    app.post("/sessions", json={"id": "w1"}, headers=bearer(token("admin", tenant="ws")))
    assert app.connect("/sessions/w1/stream").close_code == 4401
    ok = f"token={token('subscribe', tenant='ws')}"
    first = app.connect("/sessions/w1/stream", ok)
    assert first.messages and first.close_code is None  # the hello
    assert app.connect("/sessions/w1/stream", ok).close_code == 4429


def test_public_bind_without_auth_refuses_to_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "avatar_engine.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no auth is configured" in result.stdout + result.stderr


def test_secret_never_reaches_the_log(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as c:  # what the tests above send, in process
        c.get("/sessions")
        c.get("/sessions", headers=bearer("garbage"))
        c.get("/sessions", headers=bearer(token("admin", ttl=-10)))
        c.post("/sessions", json={"id": "l1"}, headers=bearer(token("publish", sessions=["l2"])))
        c.post("/sessions", json={"id": "l1"}, headers=bearer(token("admin", tenant="log")))
        c.get("/sessions/l1", params={"token": token("subscribe", tenant="log")})
    assert SECRET not in server.log()
