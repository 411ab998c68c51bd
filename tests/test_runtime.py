"""The runtime in process on a fake clock: sessions, in-memory viewers, explicit ticks.

What the server does between a request and the bytes a viewer gets, checked without sockets
or wall time (``tests/inprocess.py``): frames and events reach the right viewers, a deleted
session takes its viewers and none of the others', idle sessions expire, quotas hold.
"""

from __future__ import annotations

import numpy as np
import pytest

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Control, Ping, Pong, encode_control, encode_ping
from avatar_engine.codec.wire import ControlOp, DeltaMode
from avatar_engine.engine.engine import LISTENING_INTENSITY, SessionExistsError
from avatar_engine.engine.engine import SessionNotFoundError as NotFound
from avatar_engine.ingest.sink import SourceBatch, SourceInfo, SourceKind
from avatar_engine.rigs.arkit import ARKIT_COUNT, ARKIT_NAMES, ROTATION_COUNT
from avatar_engine.server.auth import ANONYMOUS, DEFAULT_TENANT, Principal
from avatar_engine.server.quotas import QuotaExceededError
from avatar_engine.transport.outbox import CLOSE_NOT_READING, MAX_CONTROL_MESSAGES
from inprocess import InProcessServer, Viewer

JAW = ARKIT_NAMES.index("jawOpen")
LIVELINK = SourceInfo(SourceKind.LIVELINK, "phone")
OTHER_TENANT = Principal("other", "acme", frozenset({"admin"}), None)


@pytest.fixture
def srv(inprocess: InProcessServer) -> InProcessServer:
    return inprocess


def capture(srv: InProcessServer, session: str, jaw: float) -> None:
    arkit = np.zeros(ARKIT_COUNT, np.float32)
    arkit[JAW] = jaw
    srv.runtime.on_frame(session, arkit, np.zeros(ROTATION_COUNT, np.float32), srv.clock.t,
                         LIVELINK)  # fmt: skip


def jaw_of(viewer: Viewer) -> float:
    return viewer.frames[-1].morphs["Jaw_Open"]


def test_a_viewer_gets_hello_state_then_frames_at_the_session_rate(srv: InProcessServer) -> None:
    srv.runtime.create_session(ANONYMOUS, session_id="a")
    viewer = srv.watch("a")
    assert viewer.decoder.hello is not None and viewer.said("state") == ["ready"]
    for k in range(60):  # a face that moves every tick: one frame per tick
        capture(srv, "a", 0.3 + 0.3 * (k % 2))
        srv.advance(1 / 60)
    assert viewer.frames[0].keyframe
    assert 58 <= len(viewer.frames) <= 60
    assert all(b.t_ms > a.t_ms for a, b in zip(viewer.frames, viewer.frames[1:], strict=False))


def test_capture_reaches_only_its_session_and_names_its_source(srv: InProcessServer) -> None:
    for sid in ("a", "b"):
        srv.runtime.create_session(ANONYMOUS, session_id=sid)
    va, vb = srv.watch("a"), srv.watch("b")
    for _ in range(30):
        capture(srv, "a", 0.7)
        srv.advance(1 / 60)
    assert jaw_of(va) == pytest.approx(0.7, abs=1 / 255)
    assert jaw_of(vb) < 0.05
    assert va.said("state") == ["ready", "active"] and vb.said("state") == ["ready"]
    assert srv.runtime.engine.get("a").source == "livelink"
    assert srv.runtime.stats()["publish"]["messages"] == 30  # type: ignore[index]
    srv.advance(1.0)  # capture stops: lost after CAPTURE_TIMEOUT_S
    assert va.said("state") == ["ready", "active", "degraded"]


def test_capture_for_an_unknown_session_is_counted_and_dropped(srv: InProcessServer) -> None:
    capture(srv, "ghost", 0.5)
    assert "ghost" not in srv.runtime.engine
    assert srv.runtime.stats()["publish"]["rejected"] == 1  # type: ignore[index]


def test_inputs_through_the_runtime_are_announced_to_viewers(srv: InProcessServer) -> None:
    srv.runtime.create_session(ANONYMOUS, session_id="a")
    viewer = srv.watch("a")
    srv.runtime.push_text("a", "Hello there, how are you? ")
    srv.advance(3.0)
    assert viewer.said("speaking") == [True, False]
    assert viewer.peak("V_Open") > 0.2
    srv.runtime.set_emotion("a", {"happy": 1.0}, intensity=0.5)
    srv.runtime.set_conversation_state("a", "thinking")
    srv.runtime.set_conversation_state("a", "listening")
    srv.advance(0.1)
    assert [list(v) for v in viewer.said("emotion")] == [
        ["happy", 0.5],
        ["listening", LISTENING_INTENSITY],
    ]
    assert viewer.said("state")[-2:] == ["thinking", "ready"]


def test_interrupt_stops_the_mouth_at_once(srv: InProcessServer) -> None:
    srv.runtime.create_session(ANONYMOUS, session_id="a")
    viewer = srv.watch("a")
    srv.runtime.push_text("a", "This sentence is long enough to last for several seconds. ")
    srv.advance(0.5)
    assert viewer.said("speaking") == [True]
    interrupted_at = srv.clock.t
    srv.runtime.interrupt("a")
    srv.advance(0.1)  # the sentence had seconds to go: only the interrupt can stop it now
    assert viewer.said("speaking") == [True, False]
    stopped = next(e for e in viewer.events if e.kind == "speaking" and e.value is False)
    assert interrupted_at < stopped.received <= interrupted_at + 0.1


def test_deleting_a_session_in_the_middle_leaves_the_others_streaming(
    srv: InProcessServer,
) -> None:
    ids = ["s0", "s1", "s2", "s3"]
    for sid in ids:
        srv.runtime.create_session(ANONYMOUS, session_id=sid)
    viewers = {sid: srv.watch(sid) for sid in ids}
    levels = {"s0": 0.2, "s1": 0.9, "s2": 0.5, "s3": 0.8}
    for _ in range(30):
        for sid, level in levels.items():
            capture(srv, sid, level)
        srv.advance(1 / 60)
    srv.runtime.delete_session(ANONYMOUS, "s1")  # s3's row moves into s1's
    assert viewers["s1"].sub.outbox.closed and "s1" not in srv.runtime.engine
    del levels["s1"]
    levels["s3"] = 0.3  # a change only s3's stream may show
    for _ in range(30):
        for sid, level in levels.items():
            capture(srv, sid, level)
        srv.advance(1 / 60)
    for sid, level in levels.items():
        assert jaw_of(viewers[sid]) == pytest.approx(level, abs=1 / 255), sid
    assert srv.runtime.stats()["subscribers"] == 3


def test_sessions_belong_to_their_tenant(srv: InProcessServer) -> None:
    rt = srv.runtime
    rt.create_session(ANONYMOUS, session_id="mine")
    with pytest.raises(NotFound):
        rt.session_for(OTHER_TENANT, "mine")
    with pytest.raises(NotFound):  # another tenant's id: never say it exists
        rt.create_session(OTHER_TENANT, session_id="mine")
    with pytest.raises(SessionExistsError):
        rt.create_session(ANONYMOUS, session_id="mine")
    assert [s.id for s in rt.list_sessions(OTHER_TENANT)] == []
    assert [s.id for s in rt.list_sessions(ANONYMOUS)] == ["mine"]
    assert rt.engine.get("mine").tenant == DEFAULT_TENANT


def test_idle_sessions_expire_unless_watched() -> None:
    srv = InProcessServer(session_idle_timeout_s=5.0)
    try:
        rt = srv.runtime
        rt.create_session(ANONYMOUS, session_id="idle")
        rt.create_session(ANONYMOUS, session_id="watched")
        viewer = srv.watch("watched")
        srv.advance(4.0, fps=10)
        assert rt.has_session("idle")
        srv.advance(2.0, fps=10)
        assert not rt.has_session("idle") and rt.has_session("watched")
        rt.unsubscribe(viewer.sub)  # idle from now on, not from its creation
        srv.advance(4.0, fps=10)
        assert rt.has_session("watched")
        srv.advance(2.0, fps=10)
        assert not rt.has_session("watched") and rt.session_count() == 0
    finally:
        srv.close()


def test_inputs_keep_a_session_alive() -> None:
    srv = InProcessServer(session_idle_timeout_s=5.0)
    try:
        srv.runtime.create_session(ANONYMOUS, session_id="fed")
        for _ in range(10):
            capture(srv, "fed", 0.1)
            srv.advance(1.0, fps=10)
        assert srv.runtime.has_session("fed")
    finally:
        srv.close()


def test_quotas_bound_sessions_and_viewers_and_are_released() -> None:
    srv = InProcessServer(max_sessions=2, max_subscribers=1)
    try:
        rt = srv.runtime
        rt.create_session(ANONYMOUS, session_id="one")
        rt.create_session(ANONYMOUS, session_id="two")
        with pytest.raises(QuotaExceededError):
            rt.create_session(ANONYMOUS, session_id="three")
        assert not rt.has_session("three")
        viewer = srv.watch("one")
        with pytest.raises(QuotaExceededError):
            srv.watch("two")
        rt.unsubscribe(viewer.sub)
        srv.watch("two")  # the released slot is free again
        rt.delete_session(ANONYMOUS, "one")
        rt.create_session(ANONYMOUS, session_id="three")
        assert sorted(s.id for s in rt.list_sessions(ANONYMOUS)) == ["three", "two"]
    finally:
        srv.close()


def test_capture_sources_create_their_session_once(srv: InProcessServer) -> None:
    rt = srv.runtime
    assert rt.ensure_capture_session("iPhone", "cc4-extended")
    assert rt.ensure_capture_session("iPhone", "cc4-extended")
    assert rt.session_count() == 1
    assert rt.engine.get("iPhone").source == "capture"
    assert not rt.ensure_capture_session("bad id!", "cc4-extended")  # refused, logged


def test_the_app_in_process_routes_to_the_runtime(srv: InProcessServer) -> None:
    created = srv.post("/sessions", json={"id": "web", "rig": "arkit52"})
    assert created.status_code == 201 and created.json()["rig"] == "arkit52"
    viewer = srv.watch("web")
    assert srv.post("/sessions/web/emotion", json={"emotion": "happy"}).status_code == 202
    assert srv.post("/sessions/web/state", json={"state": "listening"}).status_code == 202
    srv.advance(0.5)
    assert [v[0] for v in viewer.said("emotion")] == ["happy", "listening"]
    assert viewer.peak("mouthSmileLeft") > 0.1
    assert srv.get("/health").json()["sessions"] == 1
    assert srv.delete("/sessions/web").status_code == 204
    assert viewer.sub.outbox.closed
    assert srv.get("/sessions/web").status_code == 404


def test_control_messages_switch_the_level_answer_pings_and_unsubscribe(
    srv: InProcessServer,
) -> None:
    srv.runtime.create_session(ANONYMOUS, session_id="a")
    viewer = srv.watch("a", lod=0)
    srv.advance(0.1)
    sid, rt = viewer.sub.sid, srv.runtime
    viewer.decoder.decoder.expect_lod(sid, 3)
    before = len(viewer.frames)
    assert rt.on_client_message(viewer.sub, Control(ControlOp.SET_LOD, sid, 3))
    srv.advance(0.2)
    after = viewer.frames[before:]
    assert after[0].lod == 3 and after[0].keyframe  # the new level starts with a keyframe
    assert {f.lod for f in after} == {3}
    assert rt.on_client_message(viewer.sub, Ping(42, 0))
    srv.deliver()
    pong = Decoder().feed(viewer.messages[-1])
    assert isinstance(pong, Pong) and pong.nonce == 42 and pong.t_ms == rt.t_ms()
    assert not rt.on_client_message(viewer.sub, Control(ControlOp.UNSUBSCRIBE, sid))
    with pytest.raises(ValueError, match=r"lod must be 0\.\.3"):
        rt.on_client_message(viewer.sub, Control(ControlOp.SET_LOD, sid, 7))


def test_an_input_kicks_a_tick_at_once_between_scheduled_ones(srv: InProcessServer) -> None:
    srv.post("/sessions", json={"id": "a"})
    viewer = srv.watch("a")
    srv.advance(0.1)
    srv.clock.t += 0.005  # between two scheduled ticks
    assert srv.post("/sessions/a/text", json={"delta": "Hello there. "}).status_code == 202
    assert viewer.said("speaking") == [True]  # no scheduled tick ran: the kick did
    assert viewer.events[-1].received == srv.clock.t


def test_a_viewer_that_never_reads_is_closed_and_the_others_keep_their_events(
    srv: InProcessServer,
) -> None:
    rt = srv.runtime
    rt.create_session(ANONYMOUS, session_id="a")
    reader = srv.watch("a")
    stalled = rt.subscribe(  # not a harness viewer: nothing ever drains its outbox
        ANONYMOUS, "a", lod=0, mode=DeltaMode.CHAINED, bits=8, transport="test"
    )
    for k in range(MAX_CONTROL_MESSAGES + 5):
        rt.set_emotion("a", {"happy": 1.0}, intensity=k / 100)
        srv.advance(1 / 60)
    assert stalled.outbox.closed and stalled.outbox.close_reason == CLOSE_NOT_READING
    assert rt.stats()["frames"]["closed_slow"] >= 1  # type: ignore[index]
    assert len(reader.said("emotion")) == MAX_CONTROL_MESSAGES + 5  # none lost


def test_the_stream_route_in_process_switches_level_answers_pings_and_closes_on_abuse(
    srv: InProcessServer,
) -> None:
    srv.post("/sessions", json={"id": "ws"})
    ws = srv.connect("/sessions/ws/stream", "lod=0&audio=off")
    srv.advance(0.1)
    hello = ws.decoder.hello
    assert hello is not None and ws.said("state") == ["ready"] and ws.frames[0].keyframe
    ws.decoder.decoder.expect_lod(hello.sid, 3)
    before = len(ws.frames)
    ws.send(encode_control(ControlOp.SET_LOD, hello.sid, 3))
    srv.advance(0.2)
    assert ws.frames[before].lod == 3 and ws.frames[before].keyframe
    ws.send(encode_ping(42, 0))
    assert isinstance(Decoder().feed(ws.messages[-1]), Pong)
    assert srv.runtime.stats()["subscribers_by_transport"] == {"websocket": 1}
    ws.send("text please")
    assert (ws.close_code, ws.close_reason) == (1003, "binary msgpack messages only")
    assert srv.runtime.stats()["subscribers"] == 0  # the route unsubscribed on its way out


@pytest.mark.parametrize(
    ("path", "query", "code", "word"),
    [
        ("/sessions/nobody/stream", "", 4404, "nobody"),
        ("/sessions/ws/stream", "lod=7", 4400, "lod"),
        ("/sessions/ws/stream", "mode=diagonal", 4400, "mode"),
    ],
)
def test_the_stream_route_refuses_with_a_close_code_and_reason(
    srv: InProcessServer, path: str, query: str, code: int, word: str
) -> None:
    srv.post("/sessions", json={"id": "ws"})
    ws = srv.connect(path, query)
    assert ws.close_code == code and word in ws.close_reason
    assert ws.messages == []


@pytest.mark.parametrize(
    ("names", "accepted"),
    [
        (["a", "b", "ghost", "c", "a", "c"], (4, 2)),  # the general path
        (["b", "a"], (2, 0)),  # the usual burst: every session here, one tenant, each once
        (["b", "a", "a"], (2, 1)),  # one tenant, a budget too small for the burst
    ],
)
def test_a_burst_through_on_frames_is_the_same_as_on_frame_each(
    names: list[str], accepted: tuple[int, int]
) -> None:
    """The runtime's batch sink against its per-frame twin, on two fresh servers: sessions of
    two tenants, an unknown one (rejected), a session named twice, and a tenant whose publish
    budget holds only part of the burst (the rest is refused one by one, as on_frame would)."""
    rng = np.random.default_rng(3)
    arkit = rng.random((len(names), ARKIT_COUNT), dtype=np.float32)
    rotations = rng.random((len(names), ROTATION_COUNT), dtype=np.float32)
    results = []
    for batch in (False, True):
        srv = InProcessServer(max_publish_rate=2.0)  # a budget of two frames per tenant
        try:
            rt = srv.runtime
            rt.create_session(ANONYMOUS, session_id="a")
            rt.create_session(ANONYMOUS, session_id="b")
            rt.create_session(OTHER_TENANT, session_id="c")
            t = srv.clock.t
            if batch:
                n = len(names)
                sources = SourceBatch(LIVELINK.kind, ["phone"] * n, [""] * n, [""] * n, [None] * n)
                rt.on_frames(names, arkit, rotations, t, sources)
            else:
                for i, sid in enumerate(names):
                    rt.on_frame(sid, arkit[i], rotations[i], t, LIVELINK)
            srv.advance(1 / 60)
            sessions = {s: rt.engine.get(s) for s in "abc"}
            results.append((
                rt.stats()["publish"],
                {s: (x.state, x.capture_frames, x.source) for s, x in sessions.items()},
                {s: rt.engine.frame(s)[0].tolist() for s in "abc"},
            ))  # fmt: skip
        finally:
            srv.close()
    assert results[0] == results[1]
    publish = results[1][0]
    assert isinstance(publish, dict)
    assert (publish["messages"], publish["rejected"]) == accepted
