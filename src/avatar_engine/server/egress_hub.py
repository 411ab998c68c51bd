"""Egress adapters attached to sessions (REST or config): the engine as a capture source.

A session on any rig that relates to ARKit (ARKit-named morphs, like ``arkit52``, or an
``arkit52`` mapping, like the default ``cc4-extended``) can be mirrored to Unreal's Live Link
or a VMC receiver. Each tick, every attached target gets the
session's composed face; sending never blocks (see :mod:`avatar_engine.transport.egress`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from avatar_engine.formats.vmc import EGRESS_BONES, BonePositions, check_bone_positions
from avatar_engine.rigs.profile import RigProfile
from avatar_engine.server.inputs import RequestBody, enum_values
from avatar_engine.transport.egress import ArkitView, LiveLinkEgress, SessionEgress, VmcEgress
from avatar_engine.types import F32

MAX_TARGETS_PER_SESSION = 8


def _bone_schema(schema: dict[str, Any]) -> None:
    """The JSON schema of ``bone_positions`` says what :func:`check_bone_positions` checks:
    exactly the egress bones, three coordinates each within 10 m."""
    for variant in schema.get("anyOf", [schema]):
        if variant.get("type") == "object":
            variant["required"] = list(EGRESS_BONES)
            variant["propertyNames"] = {"enum": list(EGRESS_BONES)}
            for item in variant.get("additionalProperties", {}).get("prefixItems", []):
                item.update(minimum=-10.0, maximum=10.0)


class EgressKind(StrEnum):
    """The protocol an egress target speaks; the value is the request's ``kind`` and the
    config URL's scheme."""

    LIVELINK = "livelink"
    """Unreal's Live Link Face UDP (ARKit 52 and head/eye rotations)."""
    VMC = "vmc"
    """VMC over OSC/UDP (VSeeFace, Warudo, VRM tools)."""


if TYPE_CHECKING:  # to mypy the field is the enum itself
    EgressKindField = EgressKind
else:
    EgressKindField = enum_values(EgressKind)


class EgressRequest(RequestBody):
    """Body of ``POST /sessions/{id}/egress``."""

    kind: EgressKindField
    host: Annotated[str, Field(min_length=1, max_length=253)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    subject: Annotated[str, Field(min_length=1, max_length=64)] = "avatar-engine"
    """Live Link subject name the target sees."""
    names: Literal["perfect_sync", "vrm0", "vrm1"] = "perfect_sync"
    """VMC blendshape names."""
    timecode: Literal["time_of_day", "stream"] = "time_of_day"
    """Live Link frame times: local time of day, as a phone sends, or stream time from 0."""
    bone_positions: Annotated[BonePositions | None, Field(json_schema_extra=_bone_schema)] = None
    """VMC rest local positions of exactly Head, LeftEye, RightEye (metres, Unity axes) of the
    receiving avatar; default: an assumed adult humanoid (vmc.HUMANOID_REST_POSITIONS)."""

    @field_validator("bone_positions")
    @classmethod
    def _all_three_bones(cls, value: BonePositions | None) -> BonePositions | None:
        return None if value is None else check_bone_positions(value)


@dataclass(eq=False)
class AttachedEgress:
    """One egress target attached to a session: its id (for DELETE), the request that made it and
    the adapter that sends."""

    id: str
    session: str
    request: EgressRequest
    adapter: SessionEgress


def parse_egress_url(url: str) -> tuple[str, EgressRequest]:
    """``livelink://HOST:PORT/SESSION`` or ``vmc://HOST:PORT/SESSION`` (the config form)."""
    parts = urlsplit(url)
    session = parts.path.strip("/")
    if parts.scheme not in tuple(EgressKind) or not parts.hostname or not session:
        raise ValueError(f"egress {url!r}: expected livelink://HOST:PORT/SESSION or vmc://...")
    kind = EgressKind(parts.scheme)
    return session, EgressRequest(kind=kind, host=parts.hostname, port=parts.port)


class EgressHub:
    """Every attached target, driven once per tick."""

    def __init__(self) -> None:
        self.by_session: dict[str, dict[str, AttachedEgress]] = {}
        self._ids = itertools.count(1)

    async def attach(self, session: str, rig: RigProfile, request: EgressRequest) -> AttachedEgress:
        """Open a Live Link or VMC sender for ``session``'s frames; ValueError for a rig without
        ARKit names or a session at its target limit."""
        view = ArkitView.for_rig(rig)  # ValueError for a rig unrelated to ARKit
        targets = self.by_session.setdefault(session, {})
        if len(targets) >= MAX_TARGETS_PER_SESSION:
            raise ValueError(f"a session has at most {MAX_TARGETS_PER_SESSION} egress targets")
        target: LiveLinkEgress | VmcEgress
        if request.kind is EgressKind.LIVELINK:
            target = LiveLinkEgress(
                request.host, request.port or 11111, subject=request.subject,
                timecode=request.timecode,
            )  # fmt: skip
        else:
            target = VmcEgress(
                request.host, request.port or 39539, names=request.names,
                bone_positions=request.bone_positions,
            )  # fmt: skip
        adapter = SessionEgress(target, rig.morph_names, rig.channel_names, view=view)
        await target.open()
        attached = AttachedEgress(f"e{next(self._ids)}", session, request, adapter)
        targets[attached.id] = attached
        return attached

    def detach(self, session: str, egress_id: str) -> bool:
        """Close and forget one target; False when the session has no target with that id."""
        attached = self.by_session.get(session, {}).pop(egress_id, None)
        if attached is None:
            return False
        attached.adapter.target.close()
        if not self.by_session.get(session):
            self.by_session.pop(session, None)
        return True

    def drop_session(self, session: str) -> None:
        """Close every target of a deleted session."""
        for egress_id in list(self.by_session.get(session, {})):
            self.detach(session, egress_id)

    def push(
        self,
        session: str,
        morphs: F32,
        channels: F32,
        t: float,
    ) -> None:
        """Send one frame of ``session`` (its rig's morphs and channels at stream time ``t``) to
        each of its targets."""
        for attached in self.by_session.get(session, {}).values():
            attached.adapter.push(morphs, channels, t)

    def describe(self, session: str) -> list[dict[str, Any]]:
        """The session's targets as JSON-ready dicts: request fields, send counters and how ARKit
        values are derived."""
        return [
            {
                "id": a.id,
                **a.request.model_dump(),
                **a.adapter.target.stats(),
                "arkit_from": a.adapter.view.method,
            }
            for a in self.by_session.get(session, {}).values()
        ]

    def close(self) -> None:
        """Close every target (server shutdown)."""
        for session in list(self.by_session):
            self.drop_session(session)
