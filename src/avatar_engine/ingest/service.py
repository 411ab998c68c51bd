"""All configured capture receivers behind one object the server starts, queries and stops.

    service = IngestService(sink, factory, IngestConfig(udp_host="0.0.0.0"))
    await service.start()        # binds every enabled port; raises OSError if one is taken
    service.stats()              # {"livelink": {...}, "vmc": {...}, ...}
    service.close()

A port of 0 in the config disables that receiver (ephemeral ports are for tests: pass a
:class:`~avatar_engine.ingest.receivers.ReceiverConfig` through ``overrides`` instead).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from avatar_engine.formats.rotation import DEGREES_PER_UNIT
from avatar_engine.ingest.receivers import (
    Clock,
    DatagramReceiver,
    IFacialMocapReceiver,
    LiveLinkReceiver,
    PublishUdpReceiver,
    ReceiverConfig,
    VmcReceiver,
    with_port,
)
from avatar_engine.ingest.routing import Router, RoutingConfig
from avatar_engine.ingest.sink import CaptureSink, SessionFactory


@dataclass(slots=True)
class IngestConfig:
    """Which receivers run where; every field is documented in docs/ingest.md."""

    udp_host: str = "127.0.0.1"
    livelink_port: int = 11111
    vmc_port: int = 39539
    ifacialmocap_port: int = 0
    """0 = off. iFacialMocap needs ``ifacialmocap_phone`` (the handshake goes to the phone)."""
    ifacialmocap_phone: str | None = None
    publish_udp_port: int = 0
    """0 = off: our msgpack publish over UDP (the WebSocket endpoint needs no UDP port)."""
    livelink_rotation_scale: float = 1.0
    degrees_per_unit: float = DEGREES_PER_UNIT
    vmc_name: str = "vmc"
    ifacialmocap_name: str = "ifacialmocap"
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    overrides: dict[str, ReceiverConfig] = field(default_factory=dict)
    """Per-kind receiver limits (``livelink``, ``vmc``, ``ifacialmocap``, ``publish-udp``)."""


class IngestService:
    """The UDP capture receivers of one process (Live Link, VMC, iFacialMocap, UDP publish), their
    routing to sessions and their stats, started and stopped together."""

    def __init__(
        self,
        sink: CaptureSink,
        factory: SessionFactory | None = None,
        config: IngestConfig | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config or IngestConfig()
        self.router = Router(self.config.routing, factory)
        self._sink = sink
        self._clock = clock
        self.receivers: dict[str, DatagramReceiver] = {}

    def _receiver_config(self, cls: type[DatagramReceiver], port: int) -> ReceiverConfig:
        """The limits of one receiver: its kind's override, else its defaults on ``port``."""
        override = self.config.overrides.get(cls.kind)
        if override is not None:
            return override
        return with_port(cls.default_config, self.config.udp_host, port)

    def _build(self) -> list[DatagramReceiver]:
        c = self.config
        built: list[DatagramReceiver] = []
        if c.livelink_port:
            built.append(
                LiveLinkReceiver(
                    self._sink,
                    self.router,
                    config=self._receiver_config(LiveLinkReceiver, c.livelink_port),
                    clock=self._clock,
                    rotation_scale=c.livelink_rotation_scale,
                )
            )
        if c.vmc_port:
            built.append(
                VmcReceiver(
                    self._sink,
                    self.router,
                    config=self._receiver_config(VmcReceiver, c.vmc_port),
                    clock=self._clock,
                    name=c.vmc_name,
                    degrees_per_unit=c.degrees_per_unit,
                )
            )
        if c.ifacialmocap_port:
            built.append(
                IFacialMocapReceiver(
                    self._sink,
                    self.router,
                    config=self._receiver_config(IFacialMocapReceiver, c.ifacialmocap_port),
                    clock=self._clock,
                    phone_host=c.ifacialmocap_phone,
                    name=c.ifacialmocap_name,
                    degrees_per_unit=c.degrees_per_unit,
                )
            )
        if c.publish_udp_port:
            built.append(
                PublishUdpReceiver(
                    self._sink,
                    self.router,
                    config=self._receiver_config(PublishUdpReceiver, c.publish_udp_port),
                    clock=self._clock,
                )
            )
        return built

    async def start(self) -> dict[str, tuple[str, int]]:
        """Bind every enabled receiver; on failure the ones already bound are closed."""
        bound: dict[str, tuple[str, int]] = {}
        try:
            for receiver in self._build():
                bound[receiver.kind] = await receiver.start()
                self.receivers[receiver.kind] = receiver
        except BaseException:
            self.close()
            raise
        return bound

    def close(self) -> None:
        """Close every receiver's socket (idempotent)."""
        for receiver in self.receivers.values():
            receiver.close()
        self.receivers.clear()

    def drain(self) -> int:
        """Read every datagram waiting on every receiver's socket now (at most one batch each);
        returns how many were read. The runtime calls this before each tick."""
        return sum(receiver.drain() for receiver in self.receivers.values())

    def forget_session(self, session_id: str) -> None:
        """Call when a session is deleted: the next frame from its source re-creates it."""
        self.router.forget(session_id)

    def stats(self) -> dict[str, Any]:
        """Per receiver kind: packets, frames, drops by reason and per-source detail (/stats)."""
        return {kind: rx.stats() for kind, rx in self.receivers.items()}
