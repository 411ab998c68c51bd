"""The engine driven directly, in the manner of websockets' protocol tests: no network, no
process, no clock. Inputs are pushed in with their times, ``step(t)`` advances, and what
happened (events) and what to encode (outputs) is taken out and checked."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import avatar_engine
from avatar_engine.engine.engine import (
    LISTENING_INTENSITY,
    Engine,
    SessionExistsError,
    SessionNotFoundError,
)
from avatar_engine.engine.sessions import (
    MAX_PENDING_EVENTS,
    ConversationState,
    SessionEvent,
    SessionEventKind,
    SessionState,
)
from avatar_engine.kernels.backends import available_backends
from avatar_engine.rigs.arkit import ARKIT_COUNT, ARKIT_NAMES, ROTATION_COUNT
from avatar_engine.speech.lipsync import from_text

FPS = 60
JAW = ARKIT_NAMES.index("jawOpen")
STATE, SPEAKING, EMOTION = SessionEventKind  # the three kinds, in declaration order


def capture(jaw: float) -> np.ndarray:
    arkit = np.zeros(ARKIT_COUNT, np.float32)
    arkit[JAW] = jaw
    return arkit


def still() -> np.ndarray:
    return np.zeros(ROTATION_COUNT, np.float32)


def run(engine: Engine, start: float, seconds: float) -> None:
    """Step at 60 fps for ``seconds`` after ``start`` (time must advance at every step)."""
    for k in range(1, round(seconds * FPS) + 1):
        engine.step(start + k / FPS)


def kinds(events: list[SessionEvent], session: str) -> list[tuple[SessionEventKind, object]]:
    return [(e.kind, e.value) for e in events if e.session == session]


@pytest.fixture
def engine() -> Engine:
    return Engine()


def test_sessions_on_two_rigs_get_outputs_shaped_by_their_rig(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    engine.create_session("b", t=0.0, rig="arkit52")
    engine.create_session("c", t=0.0, rig="arkit52", tenant="t2", fps=30, lod=2)
    engine.step(0.0)
    assert len(engine) == 3 and "b" in engine and "zz" not in engine
    assert {s.id for s in engine.iter_sessions()} == {"a", "b", "c"}
    cc4, arkit = engine.rig_of("a"), engine.rig_of("c")
    assert (cc4.name, arkit.name) == ("cc4-extended", "arkit52")
    for rig, n in ((cc4, 1), (arkit, 2)):
        out = engine.outputs(rig.name)
        assert out is not None
        assert out.morphs.shape == (n, len(rig.morph_names)) and out.morphs.dtype == np.float32
        assert out.channels.shape == (n, len(rig.channel_names))
        assert out.channels.dtype == np.float32
        assert out.fresh.shape == (n,) and not out.fresh.any()
    assert engine.outputs("vrm1") is None  # no session on that rig
    morphs, channels = engine.frame("c")
    assert morphs.shape == (len(arkit.morph_names),)
    assert channels.shape == (len(arkit.channel_names),)
    c = engine.get("c")
    assert (c.rig, c.tenant, c.fps, c.lod, c.state) == ("arkit52", "t2", 30, 2, SessionState.READY)


def test_unknown_duplicate_and_malformed_ids_are_refused(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    with pytest.raises(SessionExistsError):
        engine.create_session("a", t=0.0)
    with pytest.raises(ValueError, match="must be 1-128 characters"):
        engine.create_session("no spaces", t=0.0)
    with pytest.raises(SessionNotFoundError, match="no session 'x'"):
        engine.get("x")
    with pytest.raises(SessionNotFoundError):
        engine.push_text("x", "hi ", 0.0)
    with pytest.raises(SessionNotFoundError):
        engine.delete_session("x")
    assert engine.find("x") is None and engine.find("a") is engine.get("a")


def test_capture_is_fresh_for_one_step_and_drives_the_face(engine: Engine) -> None:
    engine.create_session("open", t=0.0, rig="arkit52")
    engine.create_session("shut", t=0.0, rig="arkit52")
    engine.push_capture("open", capture(0.8), still(), 0.0, source="livelink")
    engine.step(0.0)
    out = engine.outputs("arkit52")
    assert out is not None and out.fresh.tolist() == [True, False]
    engine.step(1 / FPS)
    assert engine.outputs("arkit52").fresh.tolist() == [False, False]  # type: ignore[union-attr]
    for k in range(2, 20):  # capture keeps coming
        engine.push_capture("open", capture(0.8), still(), k / FPS)
        engine.step(k / FPS)
    jaw = engine.rig_of("open").morph_names.index("jawOpen")
    assert engine.frame("open")[0][jaw] > 0.5 > engine.frame("shut")[0][jaw]
    s = engine.get("open")
    assert (s.state, s.source, s.capture_frames) == (SessionState.ACTIVE, "livelink", 19)
    assert engine.get("shut").source == "api"  # no source named: unchanged


def test_lost_capture_degrades_once_and_capture_brings_it_back(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    engine.push_capture("a", capture(0.5), still(), 0.0)
    engine.step(0.0)
    assert kinds(engine.take_events(), "a") == [(STATE, "active")]
    engine.step(0.4)
    assert engine.take_events() == []  # still within CAPTURE_TIMEOUT_S
    engine.step(0.6)
    events = engine.take_events()
    assert kinds(events, "a") == [(STATE, "degraded")] and events[0].t == 0.6
    run(engine, 0.7, 1.0)
    assert engine.take_events() == []  # announced once, not every tick
    engine.push_capture("a", capture(0.5), still(), 2.0)
    engine.step(2.0)
    assert kinds(engine.take_events(), "a") == [(STATE, "active")]


def test_text_speaks_then_stops_and_events_come_out_once_in_order(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    engine.create_session("quiet", t=0.0)
    engine.push_text("a", "Hello there, how are you today? ", 0.0)
    engine.step(0.0)
    assert engine.get("a").speaking and not engine.get("quiet").speaking
    run(engine, 0.0, 4.0)
    events = engine.take_events()
    assert kinds(events, "a") == [(SPEAKING, True), (SPEAKING, False)]
    assert kinds(events, "quiet") == []
    assert events[0].t < events[1].t
    assert engine.take_events() == []  # taken: nothing twice


def test_interrupt_stops_speech_at_once(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    engine.push_text("a", "This is a long sentence that would take a few seconds to say. ", 0.0)
    run(engine, 0.0, 0.5)
    assert engine.get("a").speaking
    engine.interrupt("a", 0.5)
    run(engine, 0.5, 0.2)
    assert not engine.get("a").speaking
    assert kinds(engine.take_events(), "a") == [(SPEAKING, True), (SPEAKING, False)]
    engine.push_text("a", "again and ", 1.0, interrupt=True)  # barge-in then new words
    run(engine, 1.0, 0.1)
    assert engine.get("a").speaking


def test_emotion_and_conversation_state_are_announced(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    engine.set_emotion("a", {"happy": 0.7, "surprised": 0.2}, 0.0, intensity=0.8)
    assert engine.get("a").emotion == "happy"
    engine.set_conversation_state("a", ConversationState.THINKING, 0.1)
    engine.set_conversation_state("a", "listening", 0.2)
    engine.set_conversation_state("a", "idle", 0.3)
    assert kinds(engine.take_events(), "a") == [
        (EMOTION, ("happy", 0.8)),
        (STATE, "thinking"),
        (STATE, "ready"),  # thinking ends when listening starts
        (EMOTION, ("listening", LISTENING_INTENSITY)),
        (EMOTION, ("neutral", 1.0)),
    ]
    with pytest.raises(ValueError):
        engine.set_conversation_state("a", "asleep", 0.4)


def test_look_at_turns_the_eyes(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    engine.create_session("b", t=0.0)
    engine.look_at("a", 0.8, 0.0)
    run(engine, 0.0, 1.0)
    eye = engine.rig_of("a").channel_names.index("LeftEyeYaw")
    assert abs(engine.frame("a")[1][eye] - engine.frame("b")[1][eye]) > 0.1


def test_removing_a_session_in_the_middle_keeps_the_others_intact(engine: Engine) -> None:
    ids = ["s0", "s1", "s2", "s3"]
    for sid in ids:
        engine.create_session(sid, t=0.0, rig="arkit52")
    engine.push_text("s3", "Still talking after the removal, all the way through. ", 0.0)
    jaw = engine.rig_of("s0").morph_names.index("jawOpen")
    levels = {"s0": 0.1, "s1": 0.9, "s2": 0.6}

    def feed(t: float) -> None:
        for sid, level in levels.items():
            engine.push_capture(sid, capture(level), still(), t)
        engine.step(t)

    for k in range(30):
        feed(k / FPS)
    engine.set_emotion("s1", {"happy": 1.0}, 0.5)  # pending events die with the session
    before = {sid: float(engine.frame(sid)[0][jaw]) for sid in ("s0", "s2")}
    moved_from = engine.row_of("s3")
    engine.delete_session("s1")
    del levels["s1"]
    assert "s1" not in engine and len(engine) == 3
    assert engine.row_of("s3") != moved_from  # the last row filled the hole
    assert sorted(engine.row_of(s) for s in ("s0", "s2", "s3")) == [0, 1, 2]
    for k in range(30, 60):
        feed(k / FPS)
    out = engine.outputs("arkit52")
    assert out is not None and out.morphs.shape[0] == 3
    for sid in ("s0", "s2"):  # each row still follows its own capture
        assert engine.frame(sid)[0][jaw] == pytest.approx(before[sid], abs=0.05)
        assert out.morphs[engine.row_of(sid), jaw] == engine.frame(sid)[0][jaw]
    assert engine.get("s3").speaking  # its speech moved with its row
    assert all(e.session != "s1" for e in engine.take_events())


def test_degrade_marks_lost_input_and_recover_only_undoes_that(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    engine.degrade("a", 1.0)
    assert engine.get("a").state is SessionState.DEGRADED
    engine.recover("a", 2.0)
    engine.set_thinking("a", True, 3.0)
    engine.recover("a", 4.0)  # not degraded: nothing to undo
    assert engine.get("a").state is SessionState.THINKING
    assert kinds(engine.take_events(), "a") == [
        (STATE, "degraded"),
        (STATE, "ready"),
        (STATE, "thinking"),
    ]


def test_pending_events_are_bounded_per_session(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    for k in range(MAX_PENDING_EVENTS + 10):
        engine.set_emotion("a", {"happy": 1.0}, k * 0.01, intensity=k / 1000)
    events = engine.take_events()
    assert len(events) == MAX_PENDING_EVENTS
    assert events[-1].value == ("happy", (MAX_PENDING_EVENTS + 9) / 1000)  # oldest dropped


def test_the_same_inputs_give_the_same_outputs() -> None:
    """Sans-I/O: nothing but the pushed inputs and the step times decides the output."""
    faces = []
    for _ in range(2):
        engine = Engine()
        engine.create_session("a", t=0.0)
        engine.push_text("a", "Hello world. ", 0.1)
        engine.push_capture("a", capture(0.3), still(), 0.2)
        run(engine, 0.0, 1.0)
        out = engine.outputs("cc4-extended")
        assert out is not None
        faces.append((out.morphs.copy(), out.channels.copy()))
    np.testing.assert_array_equal(faces[0][0], faces[1][0])
    np.testing.assert_array_equal(faces[0][1], faces[1][1])


def test_timed_speech_moves_the_mouth_from_its_start_not_from_its_push(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    open_ = engine.rig_of("a").morph_names.index("V_Open")
    utterance = from_text("Bob bought a map.")
    end = 1.0 + float(utterance.keys.times[-1])
    engine.play("a", utterance, start=1.0, t=0.0)
    peaks = {"before": 0.0, "during": 0.0}
    for k in range(1, round((end + 0.5) * FPS)):
        engine.step(k / FPS)
        when = "before" if k / FPS < 1.0 else "during"
        peaks[when] = max(peaks[when], float(engine.frame("a")[0][open_]))
    assert peaks["before"] < 0.05 and peaks["during"] > 0.3
    events = engine.take_events()
    assert kinds(events, "a") == [(SPEAKING, True), (SPEAKING, False)]  # queued, then done
    assert end <= events[1].t <= end + 0.5


def test_streamed_frames_move_the_mouth_where_they_are_spliced(engine: Engine) -> None:
    engine.create_session("a", t=0.0)
    engine.create_session("b", t=0.0)
    frames = from_text("Hello world.", start=0.5).keys  # sampled elsewhere, streamed in
    engine.play_frames("a", frames.times, frames.values, 0.0)
    open_ = engine.rig_of("a").morph_names.index("V_Open")
    peak = {"a": 0.0, "b": 0.0}
    for k in range(1, 2 * FPS):
        engine.step(k / FPS)
        for sid, highest in peak.items():
            peak[sid] = max(highest, float(engine.frame(sid)[0][open_]))
    assert peak["a"] > 0.3 and peak["b"] < 0.05
    assert kinds(engine.take_events(), "a")[0] == (SPEAKING, True)
    assert not engine.get("b").speaking


def test_only_the_runtime_reaches_the_engine() -> None:
    """The shell's one door into the core is ``Runtime`` (issue 17): no other module reads a
    ``.engine`` attribute (a runtime's engine), so routes, voice paths and the cluster go
    through Runtime's methods and the engine's surface stays the one listed in engine.py."""
    src = Path(avatar_engine.__file__).parent
    allowed = {src / "server" / "runtime.py"}
    readers = []
    for path in sorted(src.rglob("*.py")):
        if path in allowed or (src / "engine") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "engine":
                readers.append(f"{path.relative_to(src)}:{node.lineno}")
    assert readers == []


def test_a_burst_of_captures_is_the_same_as_one_push_each() -> None:
    """``push_captures`` (one write per block and rig) is the batch twin of ``push_capture``
    in order: two rigs, a session named twice (its last frame kept, both counted), a degraded
    session brought back, one silent session; same rows, outputs, metadata and events."""
    ids = ["a", "b", "c", "d"]
    one, batch = Engine(), Engine()
    for engine in (one, batch):
        for i, sid in enumerate(ids):
            engine.create_session(sid, t=0.0, rig="arkit52" if i % 2 else None)
        engine.step(1.0)  # no capture yet: all stay READY
        engine.degrade("c", 1.0)
    rng = np.random.default_rng(7)
    names = ["a", "b", "c", "a"]
    arkit = rng.random((len(names), ARKIT_COUNT), dtype=np.float32)
    rotations = rng.standard_normal((len(names), ROTATION_COUNT), dtype=np.float32)
    for i, sid in enumerate(names):
        one.push_capture(sid, arkit[i], rotations[i], 1.01, source="livelink")
    batch.push_captures(names, arkit, rotations, 1.01, source="livelink")
    for engine in (one, batch):
        engine.step(1.02)
    assert [(e.session, e.kind, e.value) for e in one.take_events()] == [
        (e.session, e.kind, e.value) for e in batch.take_events()
    ]
    for sid in ids:
        a, b = one.get(sid), batch.get(sid)
        assert (a.state, a.source, a.capture_frames, a.last_capture_t) == (
            b.state, b.source, b.capture_frames, b.last_capture_t,
        )  # fmt: skip
        for x, y in zip(one.frame(sid), batch.frame(sid), strict=True):
            np.testing.assert_array_equal(x, y)
    assert batch.get("a").capture_frames == 2
    with pytest.raises(SessionNotFoundError):
        batch.push_captures(["a", "nobody"], arkit[:2], rotations[:2], 1.03)
    assert batch.get("a").capture_frames == 2  # nothing stored


@pytest.mark.parametrize("backend", available_backends())
def test_a_group_where_nobody_spoke_gets_what_the_full_speech_path_gives(backend: str) -> None:
    """While no row holds a speech slot the stage writes the silent morphs without sampling
    (speech_stage.py, ``_silence``); once one row holds a slot every row goes through the
    kernels again, and the rows that never spoke get the very same values and flags."""
    engine = Engine(backend=backend)
    for sid in ("a", "b", "c"):
        engine.create_session(sid, t=0.0)
    group = engine.group(engine.get("a").rig)
    speech = group.animator.speech_morphs
    engine.step(1.0)
    shortcut = speech[:2].copy()
    engine.push_text("c", "", 1.0)  # a slot for c, nothing said: the full path from now on
    engine.step(1.0 + 1 / FPS)
    np.testing.assert_array_equal(speech[:2], shortcut)
    assert not group.animator.speaking[:3].any() and not group.animator.in_word[:3].any()
    engine.push_text("c", "Hello there. ", 1.1)
    run(engine, 1.1, 0.5)
    assert group.animator.speaking[2] > 0
    engine.delete_session("c")  # its slot goes: back to the shortcut, and c's flag with it
    engine.step(2.0)
    np.testing.assert_array_equal(speech[:2], shortcut)
    assert not group.animator.speaking[:2].any()
