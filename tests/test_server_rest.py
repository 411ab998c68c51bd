"""REST against the app in process (tests/inprocess.py): statuses, JSON reasons, and no 500
for any input. The same app a ``serve`` process runs, called through ASGI without a socket."""

from __future__ import annotations

import pytest

from inprocess import InProcessServer


@pytest.fixture
def client(inprocess: InProcessServer) -> InProcessServer:
    """The app, called the way the tests called the real server's HTTP client."""
    return inprocess


def test_health_stats_metrics_docs(client: InProcessServer) -> None:
    assert client.get("/health").json()["status"] == "ok"
    stats = client.get("/stats").json()
    assert {"sessions", "subscribers", "tick", "frames", "publish"} <= stats.keys()
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "avatar_engine_ticks_total" in metrics.text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/sessions" in paths and "/rtc/offer" in paths


def test_session_lifecycle(client: InProcessServer) -> None:
    created = client.post("/sessions", json={"id": "life", "rig": "arkit52", "fps": 30})
    assert created.status_code == 201
    assert created.json()["rig"] == "arkit52" and created.json()["fps"] == 30
    assert client.get("/sessions/life").json()["state"] == "ready"
    assert "life" in [s["id"] for s in client.get("/sessions").json()["sessions"]]
    assert client.post("/sessions", json={"id": "life"}).status_code == 409
    assert client.delete("/sessions/life").status_code == 204
    missing = client.get("/sessions/life")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_default_session_gets_an_id_and_the_default_rig(client: InProcessServer) -> None:
    body = client.post("/sessions", json={}).json()
    assert body["rig"] == "cc4-extended" and len(body["id"]) >= 8
    client.delete(f"/sessions/{body['id']}")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"fps": 999}, "fps"),
        ({"lod": 7}, "lod"),
        ({"fps": "fast"}, "fps"),
        ({"colour": "blue"}, "colour"),
        ({"id": "has space"}, "body.id"),
        ({"id": "x" * 300}, "id"),
        ({"rig": "no-such-rig"}, "unknown rig"),
        ([1, 2, 3], "body"),
    ],
)
def test_bad_bodies_get_4xx_with_a_reason(
    client: InProcessServer, body: object, fragment: str
) -> None:
    response = client.post("/sessions", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert fragment in response.json()["detail"]


def test_malformed_json_and_oversized_bodies(client: InProcessServer) -> None:
    broken = client.post(
        "/sessions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and "detail" in broken.json()
    huge = client.post(
        "/sessions", content=b"x" * (2 << 20), headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413 and huge.json()["error"] == "too_large"


def test_rig_endpoint(client: InProcessServer) -> None:
    assert "cc4-extended" in client.get("/rigs").json()["rigs"]
    rig = client.get("/rigs/cc4-extended").json()
    assert rig["name"] == "cc4-extended" and rig["bone_drivers"]
    assert client.get("/rigs/nope").status_code == 404
