"""Capture in (the shell): UDP receivers, publish decoding, routing, stats, replay and record.

Receivers turn datagrams into validated ARKit frames and hand them to a
:class:`~avatar_engine.ingest.sink.CaptureSink`; see docs/ingest.md.
"""

from avatar_engine.ingest.receivers import (
    DatagramReceiver,
    IFacialMocapReceiver,
    LiveLinkReceiver,
    PublishUdpReceiver,
    ReceiverConfig,
    VmcReceiver,
)
from avatar_engine.ingest.routing import Router, RoutingConfig
from avatar_engine.ingest.service import IngestConfig, IngestService
from avatar_engine.ingest.sink import (
    CaptureSink,
    CollectingSink,
    SessionFactory,
    SourceInfo,
    SourceKind,
)

__all__ = [
    "CaptureSink",
    "CollectingSink",
    "DatagramReceiver",
    "IFacialMocapReceiver",
    "IngestConfig",
    "IngestService",
    "LiveLinkReceiver",
    "PublishUdpReceiver",
    "ReceiverConfig",
    "Router",
    "RoutingConfig",
    "SessionFactory",
    "SourceInfo",
    "SourceKind",
    "VmcReceiver",
]
