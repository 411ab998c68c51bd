"""The running server's state: engine, streams, subscribers, auth, quotas, and the tick.

Everything the HTTP/WebSocket routes do goes through one :class:`Runtime`, so the routes stay
thin and the behaviour can be tested without sockets (the tick is driven by a fake clock).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from avatar_engine.codec.messages import (
    Control,
    Message,
    Ping,
    StreamParams,
    encode_event,
    encode_pong,
)
from avatar_engine.codec.wire import AudioCodec, ControlOp, DeltaMode, EventKind
from avatar_engine.engine.engine import Engine, SessionExistsError, SessionNotFoundError
from avatar_engine.engine.sessions import (
    ConversationState,
    Session,
    SessionEventKind,
    SessionState,
)
from avatar_engine.ingest.routing import RoutingConfig
from avatar_engine.ingest.service import IngestConfig, IngestService
from avatar_engine.ingest.sink import SourceBatch, SourceInfo
from avatar_engine.ingest.stats import SourceStats
from avatar_engine.rigs.profile import load_named_rig, resolve_rig_name
from avatar_engine.server.auth import DEFAULT_TENANT, Authenticator, Principal, Scope
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.egress_hub import (
    AttachedEgress,
    EgressHub,
    EgressRequest,
    parse_egress_url,
)
from avatar_engine.server.placement import (
    LocalPlacement,
    Placement,
    PlacementFactory,
    SessionMeta,
)
from avatar_engine.server.quotas import QuotaExceededError
from avatar_engine.server.scheduler import Clock, MonotonicClock, TickScheduler
from avatar_engine.server.streams import RigStreams, StreamKey, Subscriber
from avatar_engine.server.voice_bridge import LiveInputs
from avatar_engine.server.voice_out import VoiceOut
from avatar_engine.speech.lipsync import Utterance
from avatar_engine.speech.stream import StreamOptions

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from avatar_engine.rigs.profile import RigProfile

log = logging.getLogger("avatar_engine.server")

KICK_INTERVAL_S = 0.001
"""Closest spacing of input-driven ticks (capture, speech) between the scheduled ones."""

CAPTURE_PRINCIPAL = Principal("capture", DEFAULT_TENANT, frozenset({"publish"}), None)
"""Who owns sessions that UDP capture sources create (allowlisted by the options)."""

IDLE_SWEEP_S = 1.0
"""How often sessions are checked against ``session_idle_timeout_s``."""

_EVENT_KINDS = {
    SessionEventKind.STATE: EventKind.STATE,
    SessionEventKind.SPEAKING: EventKind.SPEAKING,
    SessionEventKind.EMOTION: EventKind.EMOTION,
}


@dataclass
class Counters:
    """Monotonic counters reported by /stats and /metrics."""

    frames_bytes: int = 0
    subscribers_total: int = 0
    publish_messages: int = 0
    publish_rejected: int = 0
    closed_slow: int = 0
    """Subscribers disconnected because their control messages piled up (not reading)."""


class Runtime:
    """One process's engine and everything attached to it."""

    def __init__(
        self,
        options: ServerOptions,
        clock: Clock | None = None,
        placement: PlacementFactory | None = None,
    ) -> None:
        self.options = options
        self.clock: Clock = clock or MonotonicClock()
        self.t0 = self.clock.now()
        self.engine = Engine(backend=options.backend, default_rig=options.default_rig)
        self.auth = Authenticator(
            secret=options.jwt_secret,
            public_key_path=options.jwt_public_key,
            audience=options.jwt_audience,
        )
        self.placement = _placement(options, self, placement)
        """Where sessions live: this process alone, or a cluster (``--redis``, docs/deploy.md)."""
        self.quotas = self.placement.quotas
        self.scheduler = TickScheduler(self.clock, options.tick_hz, self.tick)
        self.counters = Counters()
        self.rig_streams: dict[str, RigStreams] = {}
        self.subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        self.egress = EgressHub()
        self.voice = VoiceOut(self._splice_face)
        """Sessions' voices and who hears them (docs/voice.md, "Server")."""
        self.live = LiveInputs(self)
        """Live voices in: the voice-agent bridge and streamed ``/audio`` chunks."""
        self.publish_totals = SourceStats()
        """Every WebSocket publish connection's counters summed (drops per reason)."""
        self.publish_totals.key = "publish-ws"
        self._last_used: dict[str, float] = {}
        self._next_sweep = -float("inf")
        self._background: set[asyncio.Task[None]] = set()
        self._kick_pending = False
        self._last_kick = -1.0
        self._reading_capture = False
        self._last_tick_t = -float("inf")
        self.ingest = IngestService(self, self.ensure_capture_session, self.ingest_config(),
                                    clock=self.clock.now)  # fmt: skip

    # -- time ------------------------------------------------------------------------------

    def now(self) -> float:
        """The runtime's clock (monotonic seconds; a fake one in tests)."""
        return self.clock.now()

    def t_ms(self, t: float | None = None) -> int:
        """Stream time: integer milliseconds since the server started (never decreasing)."""
        return int(((self.now() if t is None else t) - self.t0) * 1000)

    # -- sessions --------------------------------------------------------------------------

    def create_session(
        self,
        principal: Principal,
        *,
        session_id: str | None = None,
        rig: str | None = None,
        fps: int = 60,
        lod: int = 0,
        source: str = "api",
    ) -> Session:
        """A new session of the principal's tenant, within its quota (refused if the id is
        taken here or on another node)."""
        principal.require("publish", session_id)
        existing = self.engine.find(session_id) if session_id else None
        if existing is not None and existing.tenant != principal.tenant:
            raise SessionNotFoundError(existing.id)  # another tenant's: never say it exists
        if existing is not None:
            raise SessionExistsError(f"session {session_id!r} exists")
        if rig is not None and rig != self.options.default_rig:
            load_named_rig(rig, self.options.rig_dir)  # a name from a request, never a path
            rig = str(resolve_rig_name(rig, self.options.rig_dir))
        self.placement.check_new(session_id)
        self.quotas.acquire_session(principal.tenant)
        try:
            session = self.engine.create_session(
                session_id or uuid.uuid4().hex[:12],
                t=self.now(),
                rig=rig,
                tenant=principal.tenant,
                fps=fps,
                lod=lod,
                source=source,
            )
        except Exception:
            self.quotas.release_session(principal.tenant)
            raise
        self._attach_configured_egress(session)
        self._last_used[session.id] = self.now()
        self.placement.on_created(session)
        return session

    def _attach_configured_egress(self, session: Session) -> None:
        """Egress targets from the options that name this session (attached in the loop)."""
        for url in self.options.egress:
            target_session, request = parse_egress_url(url)
            if target_session != session.id:
                continue
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            task = loop.create_task(self._attach_egress(session, request, url))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _attach_egress(self, session: Session, request: EgressRequest, url: str) -> None:
        try:
            await self.egress.attach(session.id, self.rig_of(session), request)
        except (ValueError, OSError) as exc:
            log.warning("egress not attached", extra={"egress": url, "reason": str(exc)})

    def rig_of(self, session: Session) -> RigProfile:
        """The compiled rig a session runs on (folder rigs are not reloaded by name)."""
        return self.engine.rig_of(session.id)

    def session_for(
        self, principal: Principal, session_id: str, scope: Scope | None = None
    ) -> Session:
        """The session, if this principal's tenant owns it; with the ``publish`` scope (an
        input) the call counts as activity for idle expiry.

        A session belongs to its tenant: another tenant gets 404 whatever its token's
        ``sessions`` list names. With ``scope``, the principal must also hold that scope for
        this session (403 names what is missing; it says nothing about other tenants).
        """
        if scope is not None:
            principal.require(scope, session_id)
        session = self.engine.get(session_id)
        if session.tenant != principal.tenant:
            raise SessionNotFoundError(session_id)
        if scope == "publish":
            self._last_used[session_id] = self.now()
        return session

    def delete_session(self, principal: Principal, session_id: str) -> None:
        """Delete a session and close its viewers (``admin``, or ``publish`` on it for a token
        that names sessions)."""
        principal.require("admin" if principal.sessions is None else "publish", session_id)
        self._delete(self.session_for(principal, session_id))

    def _delete(self, session: Session) -> None:
        for sub in self.end_here(session):
            sub.outbox.close()
        for sub in self.subscribers.pop(session.id, set()):
            sub.outbox.close()
        self.quotas.release_session(session.tenant)
        self._last_used.pop(session.id, None)
        self.placement.on_deleted(session)

    def end_here(self, session: Session) -> list[Subscriber]:
        """Stop animating a session in this process: its engine row, egress, voice, live
        inputs and capture sources go; returns the viewers of its streams, detached.

        The one teardown of a session: a delete closes those viewers, a cluster node that
        lost the session's lease moves them to the new owner's relay (their entries in
        ``subscribers`` and the quota are the caller's to settle).
        """
        session_id = session.id
        streams = self.rig_streams.get(session.rig)
        viewers = streams.drop_session(session_id) if streams is not None else []
        self.engine.delete_session(session_id)
        self.egress.drop_session(session_id)
        self.voice.drop_session(session_id)
        self.live.drop_session(session_id)
        self.ingest.forget_session(session_id)
        return viewers

    def list_sessions(self, principal: Principal) -> list[Session]:
        """The tenant's sessions this process animates (that the token may see)."""
        return [
            s
            for s in self.engine.iter_sessions()
            if s.tenant == principal.tenant
            and (principal.sessions is None or s.id in principal.sessions)
        ]

    # -- subscribers -----------------------------------------------------------------------

    def streams_of(self, session: Session) -> RigStreams:
        """The encoder and stream groups of the session's rig (made on first use)."""
        streams = self.rig_streams.get(session.rig)
        if streams is None:
            rows = self.engine.rows_of(session.rig)
            streams = RigStreams(self.engine.rig_of(session.id), self.stream_params, rows)
            self.rig_streams[session.rig] = streams
        return streams

    def stream_params(self, key: StreamKey) -> StreamParams:
        """What a stream's hello announces: bits, delta mode, keyframe interval."""
        return StreamParams(
            bits=key.bits, mode=key.mode, keyframe_ms=self.options.keyframe_interval_ms
        )

    def subscribe(
        self,
        principal: Principal,
        session_id: str,
        *,
        lod: int,
        mode: DeltaMode,
        bits: int,
        transport: str,
        audio: AudioCodec = AudioCodec.OFF,
    ) -> Subscriber:
        """A viewer of a session: hello (naming the voice, ``audio``), state, keyframe."""
        principal.require("subscribe", session_id)
        if self.placement.owned_elsewhere(session_id):
            return self.placement.subscribe_remote(principal, session_id, lod=lod, mode=mode,
                                                   bits=bits, transport=transport,
                                                   audio=audio)  # fmt: skip
        session = self.session_for(principal, session_id, "subscribe")
        if not 0 <= lod <= 3:
            raise ValueError(f"lod must be 0..3, not {lod}")
        if bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, not {bits}")
        self.quotas.acquire_subscriber(principal.tenant)
        streams = self.streams_of(session)
        sid = self.placement.sid(session_id, mode, bits)
        key = StreamKey(session_id, lod, mode, bits)
        group = streams.group(key, sid)
        sub = Subscriber(session_id, principal.tenant, transport, key, sid, self.now(), group)
        outbox = sub.outbox
        outbox.put_control(streams.hello(sid, self.stream_params(key), audio))
        outbox.put_control(encode_event(sid, self.t_ms(), EventKind.STATE, session.state.value))
        keyframe = streams.private_keyframe(group)
        if keyframe is not None:
            outbox.offer_frame(keyframe, keyframe=True)
        group.subscribers.add(sub)
        self.subscribers[session_id].add(sub)
        self.counters.subscribers_total += 1
        self.voice.listen(sub, audio, self.t_ms())
        return sub

    def set_lod(self, sub: Subscriber, lod: int) -> None:
        """Move a subscriber to another level; it gets a keyframe of the new level."""
        if not 0 <= lod <= 3:
            raise ValueError(f"lod must be 0..3, not {lod}")
        if self.placement.is_remote(sub):
            self.placement.set_remote_lod(sub, lod)
            return
        if lod == sub.key.lod:
            return
        session = self.engine.get(sub.session)
        streams = self.streams_of(session)
        old = streams.groups.get(sub.key)
        if old is not None:
            old.subscribers.discard(sub)
            streams.drop_if_empty(old)
        sub.key = sub.key._replace(lod=lod)
        group = streams.group(sub.key, sub.sid)
        sub.group = group
        keyframe = streams.private_keyframe(group)
        if keyframe is not None:
            sub.outbox.offer_frame(keyframe, keyframe=True)
        group.subscribers.add(sub)

    def set_audio(self, sub: Subscriber, audio: AudioCodec) -> None:
        """SET_AUDIO: a new hello naming the voice, a keyframe (the hello resets the viewer's
        stream), then the voice in that codec from the packets not yet played."""
        if self.placement.is_remote(sub):
            return  # a relayed viewer keeps the codec it subscribed with (the relay's)
        streams = self.streams_of(self.engine.get(sub.session))
        sub.outbox.put_control(streams.hello(sub.sid, self.stream_params(sub.key), audio))
        self.voice.listen(sub, audio, self.t_ms())
        self.request_keyframe(sub)

    def request_keyframe(self, sub: Subscriber) -> None:
        """A viewer lost a frame: a private keyframe of its group."""
        if self.placement.is_remote(sub):
            self.placement.request_remote_keyframe(sub)
            return
        session = self.engine.get(sub.session)
        streams = self.streams_of(session)
        group = streams.groups.get(sub.key)
        if group is None:
            return
        keyframe = streams.private_keyframe(group)
        if keyframe is not None:
            sub.outbox.offer_frame(keyframe, keyframe=True)

    def on_client_message(self, sub: Subscriber, message: Message) -> bool:
        """Apply a decoded client -> server message; False means the client unsubscribed.

        Raises ValueError for a control that names an impossible LOD.
        """
        if isinstance(message, Ping):
            sub.outbox.put_pong(encode_pong(message.nonce, self.t_ms()))
        elif isinstance(message, Control):
            if message.op is ControlOp.SET_LOD:
                self.set_lod(sub, message.lod)
            elif message.op is ControlOp.REQUEST_KEYFRAME:
                self.request_keyframe(sub)
            elif message.op is ControlOp.SET_AUDIO:
                self.set_audio(sub, message.audio or AudioCodec.OFF)
            elif message.op is ControlOp.UNSUBSCRIBE:
                return False
        return True

    def unsubscribe(self, sub: Subscriber) -> None:
        """A viewer left: release its outbox, voice, relay, quota and group."""
        sub.outbox.close()
        self.voice.forget(sub)
        self.placement.forget(sub)
        subs = self.subscribers.get(sub.session)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self.subscribers[sub.session]
            if sub.session in self._last_used:  # idle from now on, not from its creation
                self._last_used[sub.session] = self.now()
        self.quotas.release_subscriber(sub.tenant)
        session = self.engine.find(sub.session)
        if session is None:
            return
        streams = self.rig_streams.get(session.rig)
        if streams is not None:
            group = streams.groups.get(sub.key)
            if group is not None:
                group.subscribers.discard(sub)
                streams.drop_if_empty(group)

    # -- inputs ----------------------------------------------------------------------------

    def _splice_face(
        self, session_id: str, t_ms: npt.NDArray[np.float64], channels: npt.NDArray[np.float32]
    ) -> None:
        """A voice's face frames (stream ms) into the session's speech curves."""
        self.engine.play_frames(session_id, self.t0 + t_ms / 1000.0, channels, self.now())

    def push_capture(
        self,
        session_id: str,
        arkit: npt.NDArray[np.float32],
        rotations: npt.NDArray[np.float32] | None,
    ) -> None:
        """A capture frame (ARKit weights, head/eye rotations) into a session now."""
        self.engine.push_capture(session_id, arkit, rotations, self.now())

    def has_session(self, session_id: str) -> bool:
        """A session of that id is animated in this process."""
        return session_id in self.engine

    def session_count(self) -> int:
        """Sessions animated in this process."""
        return len(self.engine)

    def push_text(
        self,
        session_id: str,
        delta: str,
        *,
        interrupt: bool = False,
        options: StreamOptions | None = None,
    ) -> None:
        """Streamed text now (``interrupt``: barge-in first); see ``Engine.push_text``."""
        self.engine.push_text(session_id, delta, self.now(), options=options, interrupt=interrupt)

    def interrupt(self, session_id: str) -> None:
        """Barge-in now: the face stops speaking and eases to neutral."""
        self.engine.interrupt(session_id, self.now())

    def play(self, session_id: str, utterance: Utterance, start: float) -> None:
        """Timed speech whose time 0 is ``start`` (server clock seconds)."""
        self.engine.play(session_id, utterance, start, self.now())

    def set_emotion(
        self,
        session_id: str,
        mix: Mapping[str, float],
        *,
        intensity: float = 1.0,
        transition_s: float = 0.4,
        hold_s: float = float("inf"),
        easing: str = "cubic",
    ) -> None:
        """Blend to an emotion mix now; subscribers get an EMOTION event at the next tick."""
        self.engine.set_emotion(
            session_id, mix, self.now(), intensity=intensity, transition_s=transition_s,
            hold_s=hold_s, easing=easing,
        )  # fmt: skip

    def set_conversation_state(self, session_id: str, state: ConversationState | str) -> None:
        """Thinking, listening or idle now (``Engine.set_conversation_state``)."""
        self.engine.set_conversation_state(session_id, state, self.now())

    def degrade(self, session_id: str) -> None:
        """DEGRADED now: a path the session needs cannot run (e.g. its voice)."""
        self.engine.degrade(session_id, self.now())

    def recover(self, session_id: str) -> None:
        """DEGRADED back to READY now (the path runs again); any other state stays."""
        self.engine.recover(session_id, self.now())

    def look_at(self, session_id: str, yaw: float, pitch: float) -> None:
        """Aim the gaze (channel units: 1.0 is the eye channel's full scale)."""
        self.engine.look_at(session_id, yaw, pitch)

    def on_frame(
        self,
        session_id: str,
        arkit: npt.NDArray[np.float32],
        rotations: npt.NDArray[np.float32],
        t_arrival: float,
        source: SourceInfo,
    ) -> None:
        """The capture sink of every ingest path (UDP receivers, WebSocket publish)."""
        session = self.engine.find(session_id)
        if session is None:
            if self.placement.forward_capture(session_id, arkit, rotations, source):
                return  # owned by another node: forwarded there
            self.counters.publish_rejected += 1
            return
        try:
            self.quotas.allow_publish(session.tenant)
        except QuotaExceededError:
            self.counters.publish_rejected += 1
            return
        self.counters.publish_messages += 1
        self._last_used[session_id] = t_arrival
        self.engine.push_capture(session_id, arkit, rotations, t_arrival, source=source.kind)
        if session_id in self.subscribers:
            self.kick()

    def on_frames(
        self,
        session_ids: Sequence[str],
        arkit: npt.NDArray[np.float32],
        rotations: npt.NDArray[np.float32],
        t_arrival: float,
        sources: SourceBatch,
    ) -> None:
        """The batch twin of :meth:`on_frame` (a receiver's burst, of one source kind): the
        quota is taken once per tenant, and the frames stored in one engine call per tenant. A
        group its tenant's budget cannot carry whole, and frames of sessions not animated here,
        go one by one through :meth:`on_frame` (as many as the budget holds, forwarded,
        refused)."""
        find = self.engine.find
        found = [find(session_id) for session_id in session_ids]
        tenants = {session.tenant for session in found if session is not None}
        groups: dict[str, list[int] | None] = {}
        if len(tenants) == 1 and None not in found:  # the usual burst: all here, one tenant
            groups[tenants.pop()] = None  # every frame, in order
        else:
            for i, session in enumerate(found):
                if session is None:
                    self.on_frame(session_ids[i], arkit[i], rotations[i], t_arrival, sources.at(i))
                else:
                    rows = groups.setdefault(session.tenant, [])
                    assert rows is not None
                    rows.append(i)
        kick = False
        for tenant, rows in groups.items():
            ids = list(session_ids) if rows is None else [session_ids[i] for i in rows]
            try:
                self.quotas.allow_publish(tenant, len(ids))
            except QuotaExceededError:
                for i in range(len(session_ids)) if rows is None else rows:
                    source = sources.at(i)
                    self.on_frame(session_ids[i], arkit[i], rotations[i], t_arrival, source)
                continue
            if rows is None:
                frames, turns = arkit, rotations
            else:
                take = np.array(rows, np.intp)
                frames, turns = arkit[take], rotations[take]
            self.engine.push_captures(ids, frames, turns, t_arrival, source=sources.kind)
            self.counters.publish_messages += len(ids)
            self._last_used.update(dict.fromkeys(ids, t_arrival))
            kick = kick or not self.subscribers.keys().isdisjoint(ids)
        if kick:
            self.kick()

    def ensure_capture_session(self, session_id: str, rig: str) -> bool:
        """Session factory for capture sources: create on first valid packet, within quota."""
        if session_id in self.engine:
            return True
        if self.placement.owned_elsewhere(session_id):
            return True  # its frames are forwarded to the owner (on_frame)
        try:
            self.create_session(CAPTURE_PRINCIPAL, session_id=session_id, rig=rig, source="capture")
        except (QuotaExceededError, ValueError) as exc:
            log.warning(
                "capture session refused", extra={"session": session_id, "reason": str(exc)}
            )
            return False
        return True

    def ingest_config(self) -> IngestConfig:
        """The UDP capture receivers and routing, from the options."""
        o = self.options
        return IngestConfig(
            udp_host=o.udp_host,
            livelink_port=o.livelink_port,
            vmc_port=o.vmc_port,
            routing=RoutingConfig(
                create_on_first_packet=o.auto_create_sessions,
                default_rig=o.default_rig,
                allowlist=o.capture_allowlist,
            ),
        )

    def kick(self) -> None:
        """Run a tick soon so new input reaches subscribers without waiting for the next slot.

        Kicks coalesce (every input of one loop iteration shares one) and are spaced at least
        ``KICK_INTERVAL_S`` apart, so a flood of capture packets costs at most that many
        extra ticks per second. Capture read by a tick itself (:meth:`tick` drains the capture
        sockets first) kicks nothing: that tick carries it.
        """
        if self._kick_pending or self._reading_capture:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (tests driving the runtime by hand)
            return
        self._kick_pending = True
        wait = self._last_kick + KICK_INTERVAL_S - self.now()
        if wait > 0:
            loop.call_later(wait, self._kick)
        else:
            loop.call_soon(self._kick)

    def _kick(self) -> None:
        self._kick_pending = False
        self._read_capture()  # first: the tick's time is when its input was all read
        self._last_kick = self.now()
        self.scheduler.ran_at(self._last_kick)  # no scheduled tick between two kicked ones
        try:
            self.tick(self._last_kick)
        except Exception:  # same policy as the scheduler: count, log, keep streaming
            self.scheduler.stats.errors += 1
            log.exception("input-driven tick failed")

    # -- admission of sessions that may live on another node ------------------------------

    def admit_viewer(self, principal: Principal, session_id: str) -> None:
        """Check a viewer may watch the session before its transport is set up (WebRTC); one
        owned by another node is relayed from there."""
        if self.placement.owned_elsewhere(session_id):
            self.placement.authorize(principal, session_id)
        else:
            self.session_for(principal, session_id)

    def admit_publisher(self, principal: Principal, session_id: str) -> None:
        """Check a capture publisher (WebSocket) before its frames flow: the session is made
        on first use here; one owned by another node gets the frames forwarded there."""
        principal.require("publish", session_id)
        if self.placement.owned_elsewhere(session_id):
            self.placement.authorize(principal, session_id)
            return
        if session_id not in self.engine:
            self.create_session(principal, session_id=session_id, source="publish-ws")
        self.session_for(principal, session_id, "publish")

    # -- what a placement asks of the runtime (server/placement.py, PlacementHost) ----------

    def local_session(self, session_id: str) -> Session | None:
        """The session if this process animates it."""
        return self.engine.find(session_id)

    def take_over(self, session_id: str, meta: SessionMeta) -> Session:
        """Animate a session another node animated (degraded until input arrives again)."""
        now = self.now()
        session = self.engine.create_session(
            session_id, t=now, rig=meta.rig, tenant=meta.tenant, fps=meta.fps, lod=meta.lod,
            source=meta.source,
        )  # fmt: skip
        self.engine.degrade(session_id, now)
        return session

    def add_viewer(self, sub: Subscriber, *, counted: bool) -> None:
        """A subscriber made by the placement (relayed viewer, or a relay to other nodes)."""
        self.subscribers[sub.session].add(sub)
        if counted:
            self.counters.subscribers_total += 1

    def remove_viewer(self, sub: Subscriber) -> None:
        """Undo ``add_viewer``."""
        subs = self.subscribers.get(sub.session)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subscribers[sub.session]

    def apply_forwarded_capture(
        self, session_id: str, arkit: npt.NDArray[np.float32],
        rotations: npt.NDArray[np.float32], kind: str,
    ) -> bool:  # fmt: skip
        """A capture frame another node forwarded (its quota checked there)."""
        session = self.engine.find(session_id)
        if session is None:
            return False
        self.engine.push_capture(session_id, arkit, rotations, self.now(), source=kind)
        self.counters.publish_messages += 1
        if session_id in self.subscribers:
            self.kick()
        return True

    def reject_publish(self) -> None:
        """Count one capture frame refused."""
        self.counters.publish_rejected += 1

    # -- the tick --------------------------------------------------------------------------

    def tick(self, t: float) -> None:
        """Advance the engine, push pending events, encode and fan out every due stream.

        Ticks come from the scheduler (nominal slot times) and from kicks (now); a tick whose
        time is not after the last one is skipped, so time always advances for the stages.
        Every capture datagram already waiting in the kernel is read first, so the tick carries
        all of a burst that arrived while the loop was busy (a hundred phones' packets of one
        instant), not the part the loop happened to read.
        """
        if t <= self._last_tick_t:
            return  # a kick already advanced past this slot: nothing new to compute
        self._last_tick_t = t
        self._read_capture()
        if t >= self._next_sweep:
            self._next_sweep = t + IDLE_SWEEP_S
            self.expire_idle(t)
        self.engine.step(t)
        t_ms = self.t_ms(t)
        for event in self.engine.take_events():  # only what changed since the last tick
            kind = _EVENT_KINDS[event.kind]
            for sub in list(self.subscribers.get(event.session, ())):
                try:
                    sub.outbox.put_control(encode_event(sub.sid, t_ms, kind, event.value))
                except Exception:  # an overflowing outbox closes itself
                    self.counters.closed_slow += 1
        for session_id in self.egress.by_session:
            morphs, channels = self.engine.frame(session_id)
            self.egress.push(session_id, morphs, channels, t)
        self.voice.tick(t_ms)  # voice packets first: never after the frame of their t
        for rig_name, streams in self.rig_streams.items():
            out = self.engine.outputs(rig_name)
            if out is None:
                continue
            self.counters.frames_bytes += streams.encode_and_fan_out(
                t_ms, out.morphs, out.channels, out.fresh
            )

    def _read_capture(self) -> None:
        """Drain every capture socket into the engine (the frames kick no further tick)."""
        self._reading_capture = True
        try:
            self.ingest.drain()
        finally:
            self._reading_capture = False

    def expire_idle(self, t: float) -> list[str]:
        """Delete sessions idle (no subscriber, no egress, no input) for
        ``session_idle_timeout_s``.

        Runs once a second from the tick; returns the ids it deleted. Sessions owned by
        another node (cluster mode) are that node's to expire.
        """
        timeout = self.options.session_idle_timeout_s
        if timeout <= 0:
            return []
        idle = [
            sid
            for sid, used in self._last_used.items()
            if t - used >= timeout
            and sid not in self.subscribers
            and sid not in self.egress.by_session  # mirrored to a game engine: in use
        ]
        for sid in idle:
            session = self.engine.find(sid)
            if session is None:
                self._last_used.pop(sid, None)
                continue
            log.info(
                "session expired",
                extra={"session": sid, "idle_s": round(t - self._last_used[sid], 1)},
            )
            self._delete(session)
        return idle

    # -- reporting -------------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        """Counters of the whole process (``/stats``)."""
        subs = [s for group in self.subscribers.values() for s in group]
        return {
            "pid": os.getpid(),
            "clock": {"monotonic_t0": self.t0},
            "sessions": len(self.engine),
            "subscribers": len(subs),
            "subscribers_by_transport": _count(s.transport for s in subs),
            "tick": self.scheduler.stats.summary(),
            "frames": {
                "bytes_out": self.counters.frames_bytes,
                "closed_slow": self.counters.closed_slow,
                "skipped": sum(s.outbox.frames_skipped for s in subs),
                "sent": sum(s.outbox.frames_sent for s in subs),
                "lost": sum(s.frames_lost for s in subs),
            },
            "voice": {
                **self.voice.stats(),
                "dropped": sum(s.outbox.audio_dropped for s in subs),
                "live_inputs": len(self.live.inputs),
            },
            "publish": {
                "messages": self.counters.publish_messages,
                "rejected": self.counters.publish_rejected,
                "websocket": self.publish_totals.snapshot(self.now()),
            },
            "states": _count(s.state.value for s in self.engine.iter_sessions()),
            "sources": self.ingest.stats(),
            **self.placement.stats(),
        }

    # Operations the routes call (server/routes/; owned by helper "routes") --------------
    # A route authenticates and validates, then calls one method here or above: none reads
    # the engine or the placement itself.

    def session(self, session_id: str) -> Session:
        """The session animated here (SessionNotFoundError, a 404, once it is deleted)."""
        return self.engine.get(session_id)

    def input_session(self, principal: Principal, session_id: str) -> Session:
        """The session an input request addresses: the caller's tenant's, with the ``publish``
        scope on it, and within the tenant's publish rate (429 beyond)."""
        session = self.session_for(principal, session_id, "publish")
        self.quotas.allow_publish(principal.tenant)
        return session

    def text_delta(self, session_id: str, delta: str, *, final: bool, interrupt: bool) -> None:
        """A streamed text delta (an LLM's transcript): ``interrupt`` silences the voice too
        (barge-in); ``final`` ends the last word now (a space, unless it ends in one)."""
        if interrupt:
            self.voice.cut(session_id, self.t_ms())
        ending = " " if final and delta and not delta[-1].isspace() else ""
        self.push_text(session_id, delta + ending, interrupt=interrupt)
        self.kick()

    async def add_egress(
        self, principal: Principal, session_id: str, request: EgressRequest
    ) -> AttachedEgress:
        """Mirror a session to a Live Link or VMC receiver (``admin``: the server sends UDP
        where the request says)."""
        session = self.session_for(principal, session_id, "admin")
        return await self.egress.attach(session_id, self.rig_of(session), request)

    def list_egress(self, principal: Principal, session_id: str) -> list[dict[str, object]]:
        """A session's egress targets, with their counters (``admin``)."""
        self.session_for(principal, session_id, "admin")
        return self.egress.describe(session_id)

    def remove_egress(self, principal: Principal, session_id: str, egress_id: str) -> bool:
        """Stop one egress target (``admin``); False if the session has no such target."""
        self.session_for(principal, session_id, "admin")
        return self.egress.detach(session_id, egress_id)

    def health(self) -> dict[str, object]:
        """What ``/health`` reports besides the version: the session count, and the
        placement's fields (a cluster: ``status`` "degraded" while Redis is unreachable)."""
        return {"sessions": self.session_count(), **self.placement.health()}

    def install_placement(self, app: Starlette) -> None:
        """Add what the HTTP app needs of the placement (a cluster: REST inputs for sessions
        owned elsewhere are proxied to their owner); before the app's other middleware."""
        self.placement.install(app)

    async def start(self) -> None:
        """Before the first tick: the placement joins (before any session exists), then the
        UDP capture receivers open."""
        await self.placement.start()
        await self.ingest.start()

    async def leave(self) -> None:
        """Shutdown, first step: the placement hands over what this process held."""
        await self.placement.stop()

    def close_io(self) -> None:
        """Shutdown: close the capture receivers, the egress sockets and the live voices'
        lip-sync process."""
        self.ingest.close()
        self.egress.close()
        self.live.faces.shutdown()


def _placement(
    options: ServerOptions, runtime: Runtime, factory: PlacementFactory | None
) -> Placement:
    """The placement the caller made (the cluster's, with ``--redis``: docs/deploy.md), else
    this process alone. The runtime never imports the cluster package."""
    if factory is not None:
        return factory(runtime)
    if options.redis_url:
        raise ValueError(
            "redis_url is set: pass the cluster's placement "
            "(avatar_engine.cluster.placement.ClusterPlacement)"
        )
    return LocalPlacement(options, runtime.clock)


def _count(items: object) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for item in items:  # type: ignore[attr-defined]
        out[str(item)] += 1
    return dict(out)


__all__ = ["Runtime", "SessionState"]
