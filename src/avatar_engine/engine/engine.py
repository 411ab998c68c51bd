"""The engine: sessions grouped by rig, and one batched call per stage per tick.

Sans-I/O: the engine never reads a clock or touches a socket. The shell pushes inputs with the
time they arrived (``push_capture``, ``push_text``, ``play``, ``set_emotion``...), calls
:meth:`Engine.step` with the tick time, then takes out what happened (:meth:`Engine.take_events`)
and each rig's output rows to encode (:meth:`Engine.outputs`). That narrow surface is all the
shell uses (the server's ``Runtime`` is its one caller); ``tests/test_engine.py`` drives it alone.

Per rig group and tick: capture rows are retargeted (one call), speech is sampled and mapped
(one call each), then the animator runs emotion, procedural life, smoothing, the compositor
and the constraints for every session at once.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from avatar_engine.animation.animator import Animator
from avatar_engine.animation.emotion import Easing
from avatar_engine.engine.sessions import (
    ConversationState,
    Session,
    SessionEvent,
    SessionEventKind,
    SessionState,
    check_session_id,
)
from avatar_engine.engine.speech_stage import SpeechStage
from avatar_engine.kernels.retarget import Retargeter
from avatar_engine.rigs.arkit import ARKIT_COUNT, ROTATION_COUNT, ROTATION_NAMES
from avatar_engine.rigs.profile import RigProfile, load_rig
from avatar_engine.rows import BlockField, RowTable
from avatar_engine.speech.lipsync import Utterance
from avatar_engine.speech.stream import StreamOptions
from avatar_engine.types import F32

CAPTURE_TIMEOUT_S: Final = 0.5
"""Capture older than this is 'lost': the session degrades and procedural life takes over
(the animator fades it over its own hand-over time)."""
LISTENING_INTENSITY: Final = 0.6
"""How strongly a listening avatar shows the ``listening`` emotion."""


class SessionNotFoundError(KeyError):
    """No session of that id (here, or for this caller: another tenant's is not found either)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        return f"no session {self.session_id!r}"


class SessionExistsError(ValueError):
    """A session of that id already exists (the shell answers 409)."""

    pass


class RigGroup:
    """Every session on one rig: one row table that every stage allocates its blocks from
    (capture input here, the animator's planes and state, speech slots), and the stages
    compiled for that rig. Adding or removing a session is one table operation."""

    _capture = BlockField[np.float32]()
    """(rows, 52) the last ARKit capture frame, before retargeting."""
    _rotations = BlockField[np.float32]()
    _capture_t = BlockField[np.float64]()
    _capture_live = BlockField[np.bool_]()
    _capture_fresh = BlockField[np.bool_]()
    """Capture arrived since the previous step."""
    _channels = BlockField[np.float32]()
    _fresh = BlockField[np.bool_]()

    def __init__(self, rig: RigProfile, backend: str | None) -> None:
        if set(rig.channel_names) - set(ROTATION_NAMES):
            raise ValueError(f"rig {rig.name!r}: channels must be Live Link rotation names")
        self.rig = rig
        self.rows: RowTable[str] = RowTable(capacity=8)
        declare = self.rows.declare
        self._capture = declare("capture", (ARKIT_COUNT,), np.float32)
        self._rotations = declare("rotations", (ROTATION_COUNT,), np.float32)
        self._capture_t = declare("capture_t", (), np.float64)
        self._capture_live = declare("capture_live", (), np.bool_)
        self._capture_fresh = declare("capture_fresh", (), np.bool_)
        self.retarget = Retargeter(rig, backend=backend)
        self.animator = Animator(rig, rows=self.rows, backend=backend)
        self.speech = SpeechStage(rig, self.rows, backend)
        # The animator's nine channels are ROTATION_NAMES; the rig lists some of them.
        self._channel_index = np.array(
            [ROTATION_NAMES.index(n) for n in rig.channel_names], np.intp
        )
        self._channels = declare("group.channels", (len(self._channel_index),), np.float32)
        self._fresh = declare("group.fresh", (), np.bool_)

    def add(self, session_id: str) -> int:
        """A row for a new session, every block at its default, seeded from its id."""
        row = self.rows.add(session_id)
        self.animator.start_session(row, seed=zlib.crc32(session_id.encode()))
        return row

    def remove(self, session_id: str) -> None:
        """Swap-remove the session's row from every block (hooks move slots and streams)."""
        self.rows.remove(session_id)

    def row_of(self, session_id: str) -> int:
        """The session's row now (a removal may move it)."""
        return self.rows.row(session_id)

    def rows_for(self, session_ids: list[str]) -> npt.NDArray[np.intp]:
        """The rows of several sessions now, in order (a burst's)."""
        return np.array(self.rows.rows(session_ids), np.intp)

    def store_capture(self, row: int, arkit: F32, rotations: F32 | None, t: float) -> None:
        """Keep a capture frame for the next step (rotations stay as they were if None)."""
        self._capture[row] = arkit
        if rotations is not None:
            self._rotations[row] = rotations
        self._capture_t[row] = t
        self._capture_live[row] = True
        self._capture_fresh[row] = True

    def store_captures(
        self, rows: npt.NDArray[np.intp], arkit: F32, rotations: F32, t: float
    ) -> None:
        """Keep one capture frame for each of ``rows`` (distinct) in one write per block: the
        batch twin of :meth:`store_capture` (a burst of a hundred phones is one call)."""
        self._capture[rows] = arkit
        self._rotations[rows] = rotations
        self._capture_t[rows] = t
        self._capture_live[rows] = True
        self._capture_fresh[rows] = True

    def lost_capture(self, t: float) -> list[str]:
        """Sessions whose capture just went quiet (vectorised; only changes are returned)."""
        n = len(self.rows)
        if not n:
            return []
        live = self._capture_live[:n]
        stale = live & (t - self._capture_t[:n] > CAPTURE_TIMEOUT_S)
        rows = np.flatnonzero(stale)
        live[rows] = False
        return [self.rows.ids[r] for r in rows.tolist()]

    def step(self, t: float) -> list[tuple[str, bool]]:
        """Run every stage for every session of this rig; returns speaking changes."""
        n = len(self.rows)
        if not n:
            return []
        anim = self.animator
        fresh = self._capture_fresh[:n]
        self._fresh[:n] = fresh
        if fresh.any():
            capture_morphs = anim.capture_morphs[:n]
            self.retarget.run(self._capture[:n], capture_morphs)
            anim.capture_channels[:n] = self._rotations[:n]
            anim.capture_new[:n] = fresh
            fresh[:] = False
        changes = self.speech.step(t, n, anim.speech_morphs, anim.speaking, anim.in_word)
        anim.step(t)
        np.take(anim.out_c[:n], self._channel_index, axis=1, out=self._channels[:n])
        return [(self.rows.ids[c.row], c.speaking) for c in changes]

    @property
    def morphs(self) -> F32:
        """This tick's morph rows (S, M): a view of the animator's output."""
        return self.animator.out_m[: len(self.rows)]

    @property
    def channels(self) -> F32:
        """This tick's channel rows (S, C) in the rig's channel order."""
        return self._channels[: len(self.rows)]

    @property
    def fresh_rows(self) -> npt.NDArray[np.bool_]:
        """Rows whose capture arrived since the previous step (read by the encoder stage)."""
        return self._fresh[: len(self.rows)]


class RigOutputs(NamedTuple):
    """One rig group's rows after a step: what the encoder stage reads (row = session row)."""

    morphs: F32
    """(S, M) morph weights in the rig's morph order."""
    channels: F32
    """(S, C) channel values in the rig's channel order."""
    fresh: npt.NDArray[np.bool_]
    """(S,) rows whose capture arrived since the previous step."""


class Engine:
    """All sessions of one process and the per-tick pipeline, behind a narrow surface.

    In the manner of a sans-I/O protocol object: the shell pushes inputs in (each with the time
    it arrived), calls :meth:`step` with the tick time, then takes out what happened
    (:meth:`take_events`) and what to encode (:meth:`outputs`, :meth:`frame`). Nothing here
    reads a clock, so tests drive it with plain numbers.
    """

    def __init__(self, *, backend: str | None = None, default_rig: str = "cc4-extended") -> None:
        self.backend = backend
        self.default_rig = default_rig
        self._sessions: dict[str, Session] = {}
        self._groups: dict[str, RigGroup] = {}
        self._with_events: set[str] = set()
        """Sessions holding events not yet taken (only those are visited)."""
        self.ticks = 0
        self.last_t: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def create_session(
        self,
        session_id: str,
        *,
        t: float,
        rig: str | None = None,
        tenant: str = "default",
        fps: int = 60,
        lod: int = 0,
        source: str = "api",
    ) -> Session:
        """A new session at time ``t`` on ``rig`` (default: the engine's), READY; its rig's
        stages are compiled on the rig's first session. Raises ValueError for a malformed id
        or an unknown rig, :class:`SessionExistsError` for a taken one."""
        check_session_id(session_id)
        if session_id in self._sessions:
            raise SessionExistsError(f"session {session_id!r} exists")
        profile = load_rig(rig or self.default_rig)
        group = self._groups.get(profile.name)
        if group is None:
            group = self._groups[profile.name] = RigGroup(profile, self.backend)
        group.add(session_id)
        session = Session(
            id=session_id, rig=profile.name, tenant=tenant, fps=fps, lod=lod, created_t=t,
            source=source, with_events=self._with_events,
        )  # fmt: skip
        self._sessions[session_id] = session
        return session

    def delete_session(self, session_id: str) -> Session:
        """Remove a session; the rows of the others may move (see :meth:`row_of`)."""
        session = self.get(session_id)
        self._groups[session.rig].remove(session_id)
        del self._sessions[session_id]
        self._with_events.discard(session_id)
        return session

    def degrade(self, session_id: str, t: float) -> None:
        """Mark a session's input as lost (e.g. adopted from a node that died): DEGRADED until
        capture arrives again."""
        self.get(session_id).set_state(SessionState.DEGRADED, t)

    def recover(self, session_id: str, t: float) -> None:
        """DEGRADED back to READY (what degraded it works again); any other state stays."""
        session = self.get(session_id)
        if session.state is SessionState.DEGRADED:
            session.set_state(SessionState.READY, t)

    # -- queries -----------------------------------------------------------------------------

    def get(self, session_id: str) -> Session:
        """The session; raises :class:`SessionNotFoundError`."""
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFoundError(session_id) from None

    def find(self, session_id: str) -> Session | None:
        """The session, or None when there is none of that id."""
        return self._sessions.get(session_id)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def iter_sessions(self) -> Iterator[Session]:
        """Every session, in creation order (do not create or delete while iterating)."""
        return iter(self._sessions.values())

    def rig_of(self, session_id: str) -> RigProfile:
        """The compiled rig a session runs on."""
        return self._groups[self.get(session_id).rig].rig

    def row_of(self, session_id: str) -> int:
        """The session's row in its rig's :class:`RigOutputs` (changes when one is deleted)."""
        return self._where(session_id)[2]

    def rows_of(self, rig: str) -> RowTable[str]:
        """The row table of one rig's sessions, for owners of per-row slots outside the engine
        (each rig's encoder streams) to follow moves with ``on_move``; KeyError before the
        rig's first session."""
        return self._groups[rig].rows

    def group(self, rig: str) -> RigGroup:
        """White-box access to one rig's stages, for stage benchmarks and tests; the shell
        reads :meth:`outputs` instead."""
        return self._groups[rig]

    def _where(self, session_id: str) -> tuple[Session, RigGroup, int]:
        session = self.get(session_id)
        group = self._groups[session.rig]
        return session, group, group.row_of(session_id)

    # -- inputs ------------------------------------------------------------------------------

    def push_capture(
        self,
        session_id: str,
        arkit: F32,
        rotations: F32 | None,
        t: float,
        *,
        source: str | None = None,
    ) -> None:
        """Store a validated capture frame (52 ARKit weights, 9 rotations) for the next tick;
        ``source`` names the capture path the session is now fed by."""
        session, group, row = self._where(session_id)
        group.store_capture(row, arkit, rotations, t)
        session.last_capture_t = t
        session.capture_frames += 1
        if source is not None:
            session.source = source
        session.set_state(SessionState.ACTIVE, t)

    def push_captures(
        self,
        session_ids: Sequence[str],
        arkit: F32,
        rotations: F32,
        t: float,
        *,
        source: str | None = None,
    ) -> None:
        """A burst of capture frames, all arrived at ``t``: ``arkit[i]`` (52 weights) and
        ``rotations[i]`` (9) are ``session_ids[i]``'s. The same as :meth:`push_capture` for each
        ``i`` in order (a session named twice keeps its last frame and counts both), with one
        write per row block and rig instead of one per frame. Raises
        :class:`SessionNotFoundError` before storing anything if one id is unknown."""
        last = {session_id: i for i, session_id in enumerate(session_ids)}
        counts = Counter(session_ids) if len(last) < len(session_ids) else None
        known = self._sessions
        try:
            sessions = [known[session_id] for session_id in last]
        except KeyError as exc:
            raise SessionNotFoundError(exc.args[0]) from None
        rigs = {session.rig for session in sessions}
        if len(rigs) == 1 and counts is None:  # the usual burst: one rig, no id twice
            group = self._groups[rigs.pop()]
            group.store_captures(group.rows_for(list(last)), arkit, rotations, t)
        else:
            by_rig: dict[str, tuple[list[int], list[str]]] = {}
            for session, i in zip(sessions, last.values(), strict=True):
                frames, ids = by_rig.setdefault(session.rig, ([], []))
                frames.append(i)
                ids.append(session.id)
            for rig, (frames, ids) in by_rig.items():
                group = self._groups[rig]
                take = np.array(frames, np.intp)
                group.store_captures(group.rows_for(ids), arkit[take], rotations[take], t)
        active = SessionState.ACTIVE
        for session in sessions:
            session.last_capture_t = t
            session.capture_frames += 1 if counts is None else counts[session.id]
            if source is not None:
                session.source = source
            if session.state is not active:
                session.set_state(active, t)

    def push_text(
        self,
        session_id: str,
        delta: str,
        t: float,
        *,
        options: StreamOptions | None = None,
        interrupt: bool = False,
    ) -> None:
        """Streamed text (LLM deltas): words are scheduled as soon as they are complete."""
        _, group, row = self._where(session_id)
        if interrupt:
            group.speech.interrupt(row, t)
        if delta:
            group.speech.push_text(row, delta, t, options)

    def interrupt(self, session_id: str, t: float) -> None:
        """Barge-in: stop speech at once and ease to neutral."""
        _, group, row = self._where(session_id)
        group.speech.interrupt(row, t)

    def play(self, session_id: str, utterance: Utterance, start: float, t: float) -> None:
        """Play timed speech (TTS timings, recognised audio) whose time 0 is ``start``."""
        _, group, row = self._where(session_id)
        group.speech.play(row, utterance, start, t)

    def play_frames(self, session_id: str, times: np.ndarray, channels: F32, t: float) -> None:
        """Splice already-sampled speech channel frames (streamed audio) at ``times``."""
        _, group, row = self._where(session_id)
        group.speech.play_frames(row, times, channels, t)

    def set_emotion(
        self,
        session_id: str,
        mix: Mapping[str, float],
        t: float,
        *,
        intensity: float = 1.0,
        transition_s: float = 0.4,
        hold_s: float = float("inf"),
        easing: Easing | str = Easing.CUBIC,
    ) -> None:
        """Blend to an emotion ``mix`` (name -> weight) over ``transition_s``, held for
        ``hold_s``; announced as an EMOTION event naming the strongest component."""
        session, group, row = self._where(session_id)
        group.animator.set_emotion(
            row, mix, intensity=intensity, transition=transition_s, hold=hold_s,
            easing=Easing.SPRING if easing == Easing.SPRING else Easing.CUBIC,
        )  # fmt: skip
        name = max(mix, key=lambda k: mix[k]) if mix else "neutral"
        session.emotion = name
        session.emit(SessionEventKind.EMOTION, (name, float(intensity)), t)

    def set_thinking(self, session_id: str, on: bool, t: float) -> None:
        """Thinking on (gaze aversion, brow furrow; state THINKING) or off (back to READY if
        it was thinking)."""
        session, group, row = self._where(session_id)
        group.animator.set_thinking(row, on)
        if on:
            session.set_state(SessionState.THINKING, t)
        elif session.state is SessionState.THINKING:
            session.set_state(SessionState.READY, t)

    def set_conversation_state(
        self, session_id: str, state: ConversationState | str, t: float
    ) -> None:
        """Thinking, listening or idle: thinking drives the animator's thinking layer;
        listening shows the ``listening`` emotion at :data:`LISTENING_INTENSITY`; idle (and
        thinking) ends any listening face. Raises ValueError for another name."""
        state = ConversationState(state)
        self.set_thinking(session_id, state is ConversationState.THINKING, t)
        if state is ConversationState.LISTENING:
            self.set_emotion(session_id, {"listening": 1.0}, t, intensity=LISTENING_INTENSITY)
        elif state is ConversationState.IDLE:
            self.set_emotion(session_id, {}, t)

    def look_at(self, session_id: str, yaw: float, pitch: float) -> None:
        """Aim the gaze (channel units: 1.0 is the eye channel's full scale)."""
        _, group, row = self._where(session_id)
        group.animator.look_at(row, yaw, pitch)

    # -- the tick and what comes out ---------------------------------------------------------

    def step(self, t: float) -> None:
        """Advance every session to time ``t``."""
        for group in self._groups.values():
            for session_id in group.lost_capture(t):
                self._sessions[session_id].set_state(SessionState.DEGRADED, t)
            for session_id, speaking in group.step(t):
                session = self._sessions[session_id]
                session.speaking = speaking
                session.emit(SessionEventKind.SPEAKING, speaking, t)
        self.ticks += 1
        self.last_t = t

    def take_events(self) -> list[SessionEvent]:
        """Every event since the previous call, grouped by session, in order within each
        (bounded per session: :data:`~avatar_engine.engine.sessions.MAX_PENDING_EVENTS`)."""
        events: list[SessionEvent] = []
        for session_id in self._with_events:
            queued = self._sessions[session_id].events
            events.extend(queued)
            queued.clear()
        self._with_events.clear()
        return events

    def outputs(self, rig: str) -> RigOutputs | None:
        """One rig's output rows after the last step (views, valid until the next change),
        or None when no session runs on that rig."""
        group = self._groups.get(rig)
        if group is None or not len(group.rows):
            return None
        return RigOutputs(group.morphs, group.channels, group.fresh_rows)

    def frame(self, session_id: str) -> tuple[F32, F32]:
        """Views of a session's current morph and channel rows (valid until the next change)."""
        _, group, row = self._where(session_id)
        return group.morphs[row], group.channels[row]
