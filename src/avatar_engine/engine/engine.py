"""The engine: sessions grouped by rig, and one batched call per stage per tick.

Sans-I/O: the engine never reads a clock or touches a socket. The shell pushes inputs with the
time they arrived, calls :meth:`Engine.step` with the tick time, and reads each rig group's
output rows (``morphs``, ``channels``) to encode.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.engine.rows import RowTable
from avatar_engine.engine.sessions import Session, SessionState, check_session_id
from avatar_engine.kernels.retarget import Retargeter
from avatar_engine.rigs.arkit import ARKIT_COUNT, ROTATION_COUNT, ROTATION_NAMES
from avatar_engine.rigs.profile import RigProfile, load_rig

F32 = npt.NDArray[np.float32]

CAPTURE_TIMEOUT_S: Final = 0.5
"""Capture older than this is 'lost': the session degrades and procedural life takes over."""


class SessionNotFoundError(KeyError):
    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        return f"no session {self.session_id!r}"


class SessionExistsError(ValueError):
    pass


@dataclass(slots=True)
class _Rotations:
    """Where the rig's channels come from in the nine Live Link rotations."""

    rig_columns: npt.NDArray[np.intp]
    source_columns: npt.NDArray[np.intp]


class RigGroup:
    """Every session on one rig: their rows, and the stages compiled for that rig."""

    def __init__(self, rig: RigProfile, backend: str | None) -> None:
        self.rig = rig
        self.retarget = Retargeter(rig, backend=backend)
        n_channels = len(rig.channel_names)
        self.rows = RowTable(
            {
                "capture": (ARKIT_COUNT, np.float32),
                "rotations": (ROTATION_COUNT, np.float32),
                "capture_t": (1, np.float64),
                "capture_live": (1, np.bool_),
                "morphs": (rig.morph_count, np.float32),
                "channels": (n_channels, np.float32),
            }
        )
        pairs = [
            (i, ROTATION_NAMES.index(name))
            for i, name in enumerate(rig.channel_names)
            if name in ROTATION_NAMES
        ]
        self._rot = _Rotations(
            np.array([p[0] for p in pairs], dtype=np.intp),
            np.array([p[1] for p in pairs], dtype=np.intp),
        )

    def lost_capture(self, t: float) -> list[str]:
        """Sessions whose capture just went quiet (vectorised; only changes are returned)."""
        if not len(self.rows):
            return []
        live = self.rows.block("capture_live")[:, 0]
        stale = live & (t - self.rows.block("capture_t")[:, 0] > CAPTURE_TIMEOUT_S)
        rows = np.flatnonzero(stale)
        live[rows] = False
        return [self.rows.ids[r] for r in rows.tolist()]

    def step(self, t: float) -> None:
        """Run every stage for every session of this rig (one call per stage)."""
        if not len(self.rows):
            return
        morphs = self.rows.block("morphs")
        capture = self.rows.block("capture")
        self.retarget.run(capture, morphs)
        channels = self.rows.block("channels")
        channels[:, self._rot.rig_columns] = self.rows.block("rotations")[
            :, self._rot.source_columns
        ]

    def row_of(self, session_id: str) -> int:
        return self.rows.row(session_id)


class Engine:
    """All sessions of one process and the per-tick pipeline."""

    def __init__(self, *, backend: str | None = None, default_rig: str = "cc4-extended") -> None:
        self.backend = backend
        self.default_rig = default_rig
        self.sessions: dict[str, Session] = {}
        self.groups: dict[str, RigGroup] = {}
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
        check_session_id(session_id)
        if session_id in self.sessions:
            raise SessionExistsError(f"session {session_id!r} exists")
        rig_name = rig or self.default_rig
        profile = load_rig(rig_name)
        group = self.groups.get(profile.name)
        if group is None:
            group = self.groups[profile.name] = RigGroup(profile, self.backend)
        group.rows.add(session_id)
        session = Session(
            id=session_id, rig=profile.name, tenant=tenant, fps=fps, lod=lod, created_t=t,
            source=source,
        )  # fmt: skip
        self.sessions[session_id] = session
        return session

    def delete_session(self, session_id: str) -> Session:
        session = self.get(session_id)
        self.groups[session.rig].rows.remove(session_id)
        del self.sessions[session_id]
        return session

    def get(self, session_id: str) -> Session:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise SessionNotFoundError(session_id) from None

    # -- inputs ------------------------------------------------------------------------------

    def push_capture(self, session_id: str, arkit: F32, rotations: F32 | None, t: float) -> None:
        """Store a validated capture frame (52 ARKit weights, 9 rotations) for the next tick."""
        session = self.get(session_id)
        group = self.groups[session.rig]
        row = group.row_of(session_id)
        group.rows.block("capture")[row] = arkit
        if rotations is not None:
            group.rows.block("rotations")[row] = rotations
        group.rows.block("capture_t")[row, 0] = t
        group.rows.block("capture_live")[row, 0] = True
        session.last_capture_t = t
        session.capture_frames += 1
        session.set_state(SessionState.ACTIVE, t)

    # -- the tick ----------------------------------------------------------------------------

    def step(self, t: float) -> None:
        """Advance every session to time ``t``."""
        for group in self.groups.values():
            for session_id in group.lost_capture(t):
                self.sessions[session_id].set_state(SessionState.DEGRADED, t)
            group.step(t)
        self.ticks += 1
        self.last_t = t

    def frame(self, session_id: str) -> tuple[F32, F32]:
        """Views of a session's current morph and channel rows (valid until the next change)."""
        session = self.get(session_id)
        group = self.groups[session.rig]
        row = group.row_of(session_id)
        morphs: F32 = group.rows.block("morphs")[row]
        channels: F32 = group.rows.block("channels")[row]
        return morphs, channels

    def iter_groups(self) -> Iterator[RigGroup]:
        return iter(self.groups.values())
