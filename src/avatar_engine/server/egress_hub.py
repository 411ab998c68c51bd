"""Egress adapters attached to sessions (REST or config): the engine as a capture source.

A session on a rig whose morphs carry the ARKit names (``arkit52``, ``oculus15``) can be
mirrored to Unreal's Live Link or a VMC receiver. Each tick, every attached target gets the
session's composed face; sending never blocks (see :mod:`avatar_engine.transport.egress`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from avatar_engine.rigs.arkit import ARKIT_NAMES
from avatar_engine.rigs.profile import RigProfile
from avatar_engine.transport.egress import LiveLinkEgress, SessionEgress, VmcEgress

MAX_TARGETS_PER_SESSION = 8


class EgressRequest(BaseModel):
    """Body of ``POST /sessions/{id}/egress``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["livelink", "vmc"]
    host: Annotated[str, Field(min_length=1, max_length=253)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    subject: Annotated[str, Field(min_length=1, max_length=64)] = "avatar-engine"
    """Live Link subject name the target sees."""
    names: Literal["perfect_sync", "vrm0", "vrm1"] = "perfect_sync"
    """VMC blendshape names."""


@dataclass(eq=False)
class AttachedEgress:
    id: str
    session: str
    request: EgressRequest
    adapter: SessionEgress


def check_rig(rig: RigProfile) -> None:
    """Egress speaks ARKit: the rig must carry the ARKit names."""
    if not set(ARKIT_NAMES) & set(rig.morph_names):
        raise ValueError(
            f"egress sends ARKit weights; rig {rig.name!r} has no ARKit-named morphs "
            "(create the session with rig arkit52 or oculus15)"
        )


def parse_egress_url(url: str) -> tuple[str, EgressRequest]:
    """``livelink://HOST:PORT/SESSION`` or ``vmc://HOST:PORT/SESSION`` (the config form)."""
    parts = urlsplit(url)
    session = parts.path.strip("/")
    if parts.scheme not in ("livelink", "vmc") or not parts.hostname or not session:
        raise ValueError(f"egress {url!r}: expected livelink://HOST:PORT/SESSION or vmc://...")
    kind: Literal["livelink", "vmc"] = "livelink" if parts.scheme == "livelink" else "vmc"
    return session, EgressRequest(kind=kind, host=parts.hostname, port=parts.port)


class EgressHub:
    """Every attached target, driven once per tick."""

    def __init__(self) -> None:
        self.by_session: dict[str, dict[str, AttachedEgress]] = {}
        self._ids = itertools.count(1)

    async def attach(self, session: str, rig: RigProfile, request: EgressRequest) -> AttachedEgress:
        check_rig(rig)
        targets = self.by_session.setdefault(session, {})
        if len(targets) >= MAX_TARGETS_PER_SESSION:
            raise ValueError(f"a session has at most {MAX_TARGETS_PER_SESSION} egress targets")
        target: LiveLinkEgress | VmcEgress
        if request.kind == "livelink":
            target = LiveLinkEgress(request.host, request.port or 11111, subject=request.subject)
        else:
            target = VmcEgress(request.host, request.port or 39539, names=request.names)
        await target.open()
        attached = AttachedEgress(
            f"e{next(self._ids)}", session, request,
            SessionEgress(target, rig.morph_names, rig.channel_names),
        )  # fmt: skip
        targets[attached.id] = attached
        return attached

    def detach(self, session: str, egress_id: str) -> bool:
        attached = self.by_session.get(session, {}).pop(egress_id, None)
        if attached is None:
            return False
        attached.adapter.target.close()
        if not self.by_session.get(session):
            self.by_session.pop(session, None)
        return True

    def drop_session(self, session: str) -> None:
        for egress_id in list(self.by_session.get(session, {})):
            self.detach(session, egress_id)

    def push(
        self,
        session: str,
        morphs: npt.NDArray[np.float32],
        channels: npt.NDArray[np.float32],
        t: float,
    ) -> None:
        for attached in self.by_session.get(session, {}).values():
            attached.adapter.push(morphs, channels, t)

    def describe(self, session: str) -> list[dict[str, Any]]:
        return [
            {"id": a.id, **a.request.model_dump(), **a.adapter.target.stats()}
            for a in self.by_session.get(session, {}).values()
        ]

    def close(self) -> None:
        for session in list(self.by_session):
            self.drop_session(session)
