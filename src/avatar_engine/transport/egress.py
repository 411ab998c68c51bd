"""Egress adapters: the engine as a capture source for tools people already run.

* :class:`LiveLinkEgress` sends a session's face, expressed in ARKit 52, as Live Link Face v6
  packets, so Unreal's Live Link (and MetaHuman) shows the engine's lip-sync and emotions with
  no plugin. Frame times are a time-of-day timecode, as a phone's, for Take Recorder.
* :class:`VmcEgress` sends blendshapes (Perfect Sync names or VRM presets) and the head/eye bones
  (with rest positions) to a VMC receiver (VSeeFace, Warudo, EVMC4U) on port 39539.

Any rig can be sent: a rig whose morphs carry ARKit names is gathered by name; any other rig
with an ``arkit52`` mapping (cc4-extended, the default) is turned back into ARKit weights by
the least-squares inverse of that mapping (:class:`ArkitInverse`), so text-, audio- and
capture-driven sessions all leave as the ARKit weights their composed face amounts to.

Both are fire-and-forget UDP: :meth:`send` never blocks and never raises for network trouble.
When the socket's write buffer holds more than ``max_buffered`` bytes (the receiver is gone and
the OS pushes back) frames are dropped and counted instead of queued, so a dead target costs
memory bounded by ``max_buffered``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, cast

import numpy as np

from avatar_engine.formats.livelink import DEFAULT_PORT as LIVELINK_PORT
from avatar_engine.formats.livelink import build_packet
from avatar_engine.formats.rotation import DEGREES_PER_UNIT
from avatar_engine.formats.vmc import DEFAULT_PORT as VMC_PORT
from avatar_engine.formats.vmc import (
    BonePositions,
    NameSet,
    build_vmc_frame,
    check_bone_positions,
)
from avatar_engine.rigs.arkit import ARKIT_COUNT, ARKIT_NAMES, ROTATION_COUNT, NameBinding
from avatar_engine.rigs.profile import RigProfile, load_rig
from avatar_engine.speech.visemes import VISEMES
from avatar_engine.types import F32, F64

logger = logging.getLogger("avatar_engine.egress")

DEFAULT_MAX_BUFFERED: Final = 64 * 1024
DEVICE_ID_LENGTH: Final = 36
"""The app sends a UUID string; some parsers (PyLiveLinkFace) read exactly 36 bytes."""
DEVICE_NAMESPACE: Final = uuid.UUID("5b4c7d1e-8f4a-4c55-9a53-7a1f0f2e6c11")
"""uuid5 namespace of the device ids derived from subject names (stable across restarts)."""
SECONDS_PER_DAY: Final = 86400
Timecode = Literal["time_of_day", "stream"]


class _UdpSender(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector transport is not a registered DatagramTransport subclass: cast, not check.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        self.errors += 1  # ICMP port unreachable while nobody listens: normal for egress

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class ArkitInverse:
    """A rig's morph row back to ARKit 52 weights, from the rig's own mappings.

    Retargeting computes ``morphs = clamp(A @ arkit * gain + offset)`` (A: the rig's ``arkit52``
    map) and speech adds ``V @ visemes`` (V: its ``visemes`` map; cc4-extended drives its own
    ``V_*`` morphs, which no ARKit shape reaches). The inverse undoes gain and offset, takes the
    least-squares ARKit weights ``pinv(A) @ x``, then explains what ARKit cannot reproduce (the
    residual) as visemes ``pinv(V) @ r`` and adds those visemes' ARKit shapes (the ``arkit52``
    rig's viseme mapping, what an ARKit face does for the same sound). One (52, morphs) matrix,
    precomputed; the result is clamped to 0..1.

    A captured frame lies in A's span, so it comes back exactly wherever no limit clamped it;
    speech comes back as the ARKit mouth shapes of its visemes; emotion and idle motion as the
    ARKit weights that best reproduce them. ARKit shapes the mapping never drives come back 0.
    """

    __slots__ = ("_scale", "matrix", "offset")

    def __init__(self, rig: RigProfile) -> None:
        arkit = rig.sparse_map("arkit52", ARKIT_NAMES).to_dense()  # (morphs, 52)
        inverse = np.linalg.pinv(arkit)  # (52, morphs)
        if "visemes" in rig.mapping_sources():
            visemes = rig.sparse_map("visemes", VISEMES).to_dense()  # (morphs, 15)
            as_arkit = load_rig("arkit52").sparse_map("visemes", VISEMES).to_dense()  # (52, 15)
            residual = np.eye(rig.morph_count) - arkit @ inverse
            inverse = inverse + as_arkit @ np.linalg.pinv(visemes) @ residual
        self.matrix: F64 = np.asarray(inverse, dtype=np.float64)
        self.offset: F64 = rig.offset.astype(np.float64)
        gain = rig.gain.astype(np.float64)
        self._scale: F64 = np.divide(1.0, gain, out=np.zeros_like(gain), where=gain != 0)

    def apply(self, morphs: F32, out: F32) -> None:
        """Recover ARKit weights (clipped to 0..1) from a rig's morph row through the precomputed
        inverse."""
        out[:] = np.clip(self.matrix @ ((morphs - self.offset) * self._scale), 0.0, 1.0)


class ArkitView:
    """Gathers a rig's morph and channel rows into ARKit 52 + 9 rotations, bound once.

    By name when the rig's morphs carry ARKit names (``arkit52``, ``oculus15``; missing shapes
    are sent as 0), else through ``inverse`` (see :meth:`for_rig`).
    """

    __slots__ = ("_binding", "_channels", "_inverse", "arkit", "rotations")

    def __init__(
        self,
        morph_names: Sequence[str],
        channel_names: Sequence[str],
        *,
        inverse: ArkitInverse | None = None,
    ) -> None:
        self._binding = NameBinding(list(morph_names), on_unknown="skip")
        self._channels = NameBinding(list(channel_names), on_unknown="skip")
        self._inverse = inverse
        self.arkit = np.zeros(ARKIT_COUNT, dtype=np.float32)
        self.rotations = np.zeros(ROTATION_COUNT, dtype=np.float32)

    @classmethod
    def for_rig(cls, rig: RigProfile) -> ArkitView:
        """By name if the rig has ARKit-named morphs, else by its ``arkit52`` mapping's inverse.

        Raises ValueError for a rig with neither (nothing relates its morphs to ARKit).
        """
        if NameBinding(list(rig.morph_names), on_unknown="skip").arkit_columns:
            return cls(rig.morph_names, rig.channel_names)
        if "arkit52" not in rig.mapping_sources():
            raise ValueError(
                f"egress sends ARKit weights; rig {rig.name!r} has neither ARKit-named morphs "
                "nor an arkit52 mapping to derive them from"
            )
        return cls(rig.morph_names, rig.channel_names, inverse=ArkitInverse(rig))

    @property
    def method(self) -> str:
        """``names`` or ``inverse_mapping`` (reported by the egress list)."""
        return "names" if self._inverse is None else "inverse_mapping"

    def gather(self, morphs: F32, channels: F32 | None) -> tuple[F32, F32]:
        """The rig's morph and channel rows as ARKit 52 weights and 9 rotations, in buffers reused
        each call."""
        if self._inverse is not None:
            self._inverse.apply(morphs, self.arkit)
        else:
            b = self._binding
            self.arkit[b.arkit_targets] = morphs[b.arkit_columns]
        if channels is not None:
            c = self._channels
            self.rotations[c.rotation_targets] = channels[c.rotation_columns]
        return self.arkit, self.rotations


class _Egress:
    def __init__(self, host: str, port: int, max_buffered: int) -> None:
        self.host = host
        self.port = port
        self.max_buffered = max_buffered
        self.sent = 0
        self.dropped = 0
        self._proto: _UdpSender | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(
            _UdpSender, remote_addr=(self.host, self.port)
        )
        self._proto = proto

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    def _send(self, datagrams: Sequence[bytes]) -> bool:
        transport = None if self._proto is None else self._proto.transport
        # Selector datagram transports buffer when the kernel refuses (typeshed omits the
        # method on DatagramTransport, hence getattr).
        buffered = getattr(transport, "get_write_buffer_size", lambda: 0)
        if transport is None or buffered() > self.max_buffered:
            self.dropped += 1
            return False
        for datagram in datagrams:
            transport.sendto(datagram)
        self.sent += 1
        return True

    def stats(self) -> dict[str, Any]:
        errors = 0 if self._proto is None else self._proto.errors
        return {
            "target": f"{self.host}:{self.port}",
            "sent": self.sent,
            "dropped": self.dropped,
            "socket_errors": errors,
        }


def device_id_for(subject: str) -> str:
    """A stable 36-character device id for a subject (uppercase UUID, like the app's)."""
    return str(uuid.uuid5(DEVICE_NAMESPACE, subject)).upper()


def seconds_of_day(epoch: float) -> float:
    """Local time of day in seconds, like a phone's system-clock timecode."""
    t = time.localtime(epoch)
    return t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + (epoch % 1.0)


class LiveLinkEgress(_Egress):
    """Live Link Face v6 out: looks like a phone to Unreal.

    ``rotation_scale`` divides engine channel units back into the app's units (1.0, the
    default, makes a Live Link -> engine -> Live Link round trip the identity).

    Frame times are timecode frames at ``fps``. ``timecode="time_of_day"`` (the default) does
    what the app does with its system clock: the frame number counts frames since local
    midnight, so Take Recorder and other devices on the same clock line up; the first packet
    anchors the stream time ``t`` to the wall clock and later ones advance by ``t`` (steady,
    no jumps from clock adjustments), wrapping at midnight. ``timecode="stream"`` counts from
    ``t = 0`` instead (reproducible, for tests and recordings).

    ``device_id`` must be 36 characters (the app sends a UUID and some parsers read exactly
    36 bytes); by default it is derived from the subject, so a restarted server is the same
    device to Unreal.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = LIVELINK_PORT,
        *,
        subject: str = "avatar-engine",
        device_id: str | None = None,
        fps: int = 60,
        rotation_scale: float = 1.0,
        timecode: Timecode = "time_of_day",
        clock: Callable[[], float] = time.time,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        super().__init__(host, port, max_buffered)
        device = device_id_for(subject) if device_id is None else device_id
        if len(device.encode("utf-8")) != DEVICE_ID_LENGTH:
            raise ValueError(f"a Live Link device id is {DEVICE_ID_LENGTH} characters (a UUID)")
        if timecode not in ("time_of_day", "stream"):
            raise ValueError(f"timecode {timecode!r} is not time_of_day or stream")
        self.subject = subject
        self.device_id = device
        self.fps = fps
        self.rotation_scale = rotation_scale
        self.timecode: Timecode = timecode
        self._clock = clock
        self._day_offset: float | None = None
        self._values = np.zeros(ARKIT_COUNT + ROTATION_COUNT, dtype=np.float32)

    def frame_seconds(self, t: float) -> float:
        """The timecode (seconds) of the frame at stream time ``t``."""
        if self.timecode == "stream":
            return max(t, 0.0)
        if self._day_offset is None:
            self._day_offset = seconds_of_day(self._clock()) - t
        return (t + self._day_offset) % SECONDS_PER_DAY

    def packet(self, arkit: F32, rotations: F32 | None, t: float) -> bytes:
        """The datagram :meth:`send` would send (sans-I/O, for tests and tools)."""
        self._values[:ARKIT_COUNT] = arkit
        if rotations is None:
            self._values[ARKIT_COUNT:] = 0.0
        else:
            self._values[ARKIT_COUNT:] = rotations
            if self.rotation_scale != 1.0:
                self._values[ARKIT_COUNT:] /= self.rotation_scale
        frames = self.frame_seconds(t) * self.fps
        whole = math.floor(frames)
        return build_packet(
            self.device_id,
            self.subject,
            self._values,
            frame_number=int(whole) & 0x7FFFFFFF,
            subframe=float(frames - whole),
            fps=(self.fps, 1),
        )

    def send(self, arkit: F32, rotations: F32 | None, t: float) -> bool:
        """Send one frame (52 ARKit weights, 9 channels); False if it was dropped."""
        return self._send((self.packet(arkit, rotations, t),))


class VmcEgress(_Egress):
    """VMC out (Performer -> Marionette): blendshapes by ``names`` plus Head/eye bones.

    Bones carry ``bone_positions`` (rest local positions, default
    :data:`~avatar_engine.formats.vmc.HUMANOID_REST_POSITIONS`) so receivers that synchronise
    bone positions keep the head on the neck.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = VMC_PORT,
        *,
        names: NameSet = "perfect_sync",
        bundle: bool = True,
        bones: bool = True,
        degrees_per_unit: float = DEGREES_PER_UNIT,
        bone_positions: BonePositions | None = None,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        super().__init__(host, port, max_buffered)
        self.names: NameSet = names
        self.bundle = bundle
        self.bones = bones
        self.degrees_per_unit = degrees_per_unit
        self.bone_positions = (
            None if bone_positions is None else check_bone_positions(bone_positions)
        )

    def datagrams(self, arkit: F32, rotations: F32 | None, t: float) -> list[bytes]:
        """The VMC/OSC datagrams of one frame (one bundle, or one message per datagram)."""
        return build_vmc_frame(
            arkit,
            rotations,
            names=self.names,
            degrees_per_unit=self.degrees_per_unit,
            bundle=self.bundle,
            time=t,
            bones=self.bones,
            bone_positions=self.bone_positions,
        )

    def send(self, arkit: F32, rotations: F32 | None, t: float) -> bool:
        """Send one frame; False when it was dropped because the socket is not writable or backed
        up."""
        return self._send(self.datagrams(arkit, rotations, t))


class SessionEgress:
    """One session's face to one egress target, with the rig's names bound once.

    The engine calls :meth:`push` per tick with the session's morph row and channel row, in
    its rig's order; nothing is allocated per frame except the packet bytes (and, for a rig
    sent through its inverse mapping, one matrix-vector product).
    """

    __slots__ = ("target", "view")

    def __init__(
        self,
        target: LiveLinkEgress | VmcEgress,
        morph_names: Sequence[str],
        channel_names: Sequence[str],
        *,
        view: ArkitView | None = None,
    ) -> None:
        self.target = target
        self.view = ArkitView(morph_names, channel_names) if view is None else view

    def push(self, morphs: F32, channels: F32 | None, t: float) -> bool:
        """Send the session's current face to its target; False when the frame was dropped."""
        arkit, rotations = self.view.gather(morphs, channels)
        return self.target.send(arkit, rotations, t)


__all__ = [
    "ArkitInverse",
    "ArkitView",
    "LiveLinkEgress",
    "SessionEgress",
    "VmcEgress",
]
