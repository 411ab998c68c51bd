"""Session metadata and lifecycle: what a session is, apart from its per-tick rows.

Per-tick numbers live in :class:`~avatar_engine.rows.RowTable` blocks; this module holds
what changes rarely (config, owner, state) and the events a state change produces.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeAlias

SESSION_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
MAX_PENDING_EVENTS: Final = 64
"""Events queued per session between ticks; older ones are dropped first (bounded)."""


class SessionState(StrEnum):
    """The protocol's session states (docs/protocol.md, EVENT STATE)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    READY = "ready"
    ACTIVE = "active"
    THINKING = "thinking"
    DEGRADED = "degraded"
    ERROR = "error"
    DISCONNECTED = "disconnected"


class SessionEventKind(StrEnum):
    """What a :class:`SessionEvent` announces (equal to the protocol's event names)."""

    STATE = "state"
    SPEAKING = "speaking"
    EMOTION = "emotion"


class ConversationState(StrEnum):
    """Where the avatar is in a conversation turn (``POST /sessions/{id}/state``)."""

    THINKING = "thinking"
    """Gaze aversion, brow furrow, no lips."""
    LISTENING = "listening"
    """An attentive face: the ``listening`` emotion at 0.6."""
    IDLE = "idle"
    """Neither: back to neutral."""


def check_session_id(session_id: str) -> str:
    """The id unchanged if it is 1-128 URL- and key-safe characters; else ValueError naming
    the rule."""
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        raise ValueError(
            f"session id {session_id!r} must be 1-128 characters of letters, digits and _.:@- "
            "starting with a letter or digit"
        )
    return session_id


EventValue: TypeAlias = str | bool | tuple[str, float]
"""A state's name, whether the session speaks, or an emotion's (name, intensity)."""


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """Something a session's subscribers are told (taken out by ``Engine.take_events``)."""

    session: str
    kind: SessionEventKind
    """``STATE`` (value: a state name), ``SPEAKING`` (bool) or ``EMOTION`` ((name, intensity))."""
    value: EventValue
    t: float


@dataclass(slots=True)
class Session:
    """One animated face: its rig, owner, and lifecycle state."""

    id: str
    rig: str
    tenant: str
    fps: int
    lod: int
    created_t: float
    source: str = "api"
    state: SessionState = SessionState.READY
    speaking: bool = False
    emotion: str = "neutral"
    last_capture_t: float | None = None
    capture_frames: int = 0
    events: deque[SessionEvent] = field(default_factory=lambda: deque(maxlen=MAX_PENDING_EVENTS))
    with_events: set[str] | None = None
    """The engine's set of sessions holding events: the tick visits only those."""

    def emit(self, kind: SessionEventKind, value: EventValue, t: float) -> None:
        """Queue an event for the subscribers (bounded: the oldest goes first) and mark the
        session for the engine's next ``take_events``."""
        self.events.append(SessionEvent(self.id, kind, value, t))
        if self.with_events is not None:
            self.with_events.add(self.id)

    def set_state(self, state: SessionState, t: float) -> None:
        """Change state; a change (never a repeat) is announced as a STATE event."""
        if state is not self.state:
            self.state = state
            self.emit(SessionEventKind.STATE, state.value, t)

    def describe(self) -> dict[str, object]:
        """The JSON shape of ``GET /sessions/{id}``."""
        return {
            "id": self.id,
            "rig": self.rig,
            "tenant": self.tenant,
            "fps": self.fps,
            "lod": self.lod,
            "state": self.state.value,
            "source": self.source,
            "speaking": self.speaking,
            "emotion": self.emotion,
            "capture_frames": self.capture_frames,
        }
