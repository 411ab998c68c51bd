"""Egress adapters: the engine as a capture source for tools people already run.

* :class:`LiveLinkEgress` sends a session's face, expressed in ARKit 52 (the ``arkit52`` rig's
  morphs), as Live Link Face v6 packets, so Unreal's Live Link (and MetaHuman) shows the
  engine's lip-sync and emotions with no plugin.
* :class:`VmcEgress` sends blendshapes (Perfect Sync names or VRM presets) and the head/eye bones
  to a VMC receiver (VSeeFace, Warudo, VMagicMirror) on port 39539.

Both are fire-and-forget UDP: :meth:`send` never blocks and never raises for network trouble.
When the socket's write buffer holds more than ``max_buffered`` bytes (the receiver is gone and
the OS pushes back) frames are dropped and counted instead of queued, so a dead target costs
memory bounded by ``max_buffered``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Sequence
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from avatar_engine.formats.livelink import DEFAULT_PORT as LIVELINK_PORT
from avatar_engine.formats.livelink import build_packet
from avatar_engine.formats.rotation import DEGREES_PER_UNIT
from avatar_engine.formats.vmc import DEFAULT_PORT as VMC_PORT
from avatar_engine.formats.vmc import NameSet, build_vmc_frame
from avatar_engine.rigs.arkit import ARKIT_COUNT, ROTATION_COUNT, NameBinding

logger = logging.getLogger("avatar_engine.egress")

F32 = npt.NDArray[np.float32]
DEFAULT_MAX_BUFFERED: Final = 64 * 1024


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


class ArkitView:
    """Gathers a rig's morph and channel rows into ARKit 52 + 9 rotations, bound once.

    Egress is defined on the ``arkit52`` rig (morph names are the ARKit names), but any rig
    whose morph names include ARKit names works: missing shapes are sent as 0.
    """

    __slots__ = ("_binding", "_channels", "arkit", "rotations")

    def __init__(self, morph_names: Sequence[str], channel_names: Sequence[str]) -> None:
        self._binding = NameBinding(list(morph_names), on_unknown="skip")
        self._channels = NameBinding(list(channel_names), on_unknown="skip")
        self.arkit = np.zeros(ARKIT_COUNT, dtype=np.float32)
        self.rotations = np.zeros(ROTATION_COUNT, dtype=np.float32)

    def gather(self, morphs: F32, channels: F32 | None) -> tuple[F32, F32]:
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


class LiveLinkEgress(_Egress):
    """Live Link Face v6 out: looks like a phone to Unreal.

    ``rotation_scale`` divides engine channel units back into the app's units (1.0, the
    default, makes a Live Link -> engine -> Live Link round trip the identity). Frame times are
    written as a 60 fps timecode of the ``t`` passed to :meth:`send`.
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
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        super().__init__(host, port, max_buffered)
        self.subject = subject
        self.device_id = device_id or str(uuid.uuid4()).upper()
        self.fps = fps
        self.rotation_scale = rotation_scale
        self._values = np.zeros(ARKIT_COUNT + ROTATION_COUNT, dtype=np.float32)

    def packet(self, arkit: F32, rotations: F32 | None, t: float) -> bytes:
        """The datagram :meth:`send` would send (sans-I/O, for tests and tools)."""
        self._values[:ARKIT_COUNT] = arkit
        if rotations is None:
            self._values[ARKIT_COUNT:] = 0.0
        else:
            self._values[ARKIT_COUNT:] = rotations
            if self.rotation_scale != 1.0:
                self._values[ARKIT_COUNT:] /= self.rotation_scale
        frames = max(t, 0.0) * self.fps
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
    """VMC out (Performer -> Marionette): blendshapes by ``names`` plus Head/eye bones."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = VMC_PORT,
        *,
        names: NameSet = "perfect_sync",
        bundle: bool = True,
        bones: bool = True,
        degrees_per_unit: float = DEGREES_PER_UNIT,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        super().__init__(host, port, max_buffered)
        self.names: NameSet = names
        self.bundle = bundle
        self.bones = bones
        self.degrees_per_unit = degrees_per_unit

    def datagrams(self, arkit: F32, rotations: F32 | None, t: float) -> list[bytes]:
        return build_vmc_frame(
            arkit,
            rotations,
            names=self.names,
            degrees_per_unit=self.degrees_per_unit,
            bundle=self.bundle,
            time=t,
            bones=self.bones,
        )

    def send(self, arkit: F32, rotations: F32 | None, t: float) -> bool:
        return self._send(self.datagrams(arkit, rotations, t))


class SessionEgress:
    """One session's face to one egress target, with the rig's names bound once.

    The engine calls :meth:`push` per tick with the session's ``arkit52``-rig morph row and
    channel row (or any rig whose morph names include ARKit names); nothing is allocated per
    frame except the packet bytes.
    """

    __slots__ = ("target", "view")

    def __init__(
        self,
        target: LiveLinkEgress | VmcEgress,
        morph_names: Sequence[str],
        channel_names: Sequence[str],
    ) -> None:
        self.target = target
        self.view = ArkitView(morph_names, channel_names)

    def push(self, morphs: F32, channels: F32 | None, t: float) -> bool:
        arkit, rotations = self.view.gather(morphs, channels)
        return self.target.send(arkit, rotations, t)


__all__ = [
    "ArkitView",
    "LiveLinkEgress",
    "SessionEgress",
    "VmcEgress",
]
