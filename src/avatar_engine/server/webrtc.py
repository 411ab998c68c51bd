"""WebRTC data channels (aiortc): frames unreliable and unordered, control reliable.

The client's offer carries two data channels: ``frames`` (``ordered=False, maxRetransmits=0``)
and ``control`` (reliable, ordered). The server subscribes the peer with keyframe-relative
deltas, so a lost frame costs one frame and never corrupts the next. Hello, events, pongs and
the voice (AUDIO packets, protocol v1.1) go on ``control``; when the SCTP buffer backs up, the
outbox skips frames instead of queueing. The voice is reliable and ordered because a lost
packet is an audible gap (a lost frame is interpolated over) and a VOICE_CUT must come after
the packets it cuts; at 24 kbps it never competes with the frames for the link.

ICE servers come from the options; none by default, because on loopback none is needed and
aiortc would otherwise reach for a public STUN server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Final

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.wire import AudioCodec, DeltaMode, ProtocolError
from avatar_engine.server.auth import Principal
from avatar_engine.server.fanout import DataChannelLink
from avatar_engine.server.streams import Subscriber
from avatar_engine.transport.rtc_datapath import (
    FastSender,
    LeanReceiver,
    internals_ok,
    send_to_peers,
)

log = logging.getLogger("avatar_engine.webrtc")

MAX_BUFFERED_BYTES: Final = 64 * 1024
"""Skip frames while this much is still queued in SCTP for the peer (a slow receiver)."""
CHANNEL_WAIT_S: Final = 10.0
"""How long an answered peer may take to open its channels before it is closed."""
MAX_CONTROL_BYTES: Final = 4096


@dataclass(eq=False)
class Peer:
    """One answered offer: its connection, channels, subscriber and tasks."""

    pc: RTCPeerConnection
    session: str
    lod: int
    principal: Principal
    bits: int | None = None
    audio: AudioCodec = AudioCodec.OPUS
    channels: dict[str, RTCDataChannel] = field(default_factory=dict)
    subscriber: Subscriber | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class WebRtcGateway:
    """Answers offers and moves a runtime subscriber's messages over data channels."""

    def __init__(self, runtime: Any, ice_servers: tuple[str, ...] = ()) -> None:
        self.runtime = runtime
        self.ice_servers = ice_servers
        self.peers: set[Peer] = set()
        self._closing: set[asyncio.Task[None]] = set()

    def _configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in self.ice_servers])

    async def answer(
        self,
        principal: Principal,
        session_id: str,
        lod: int,
        sdp: str,
        kind: str,
        bits: int | None = None,
        audio: AudioCodec = AudioCodec.OPUS,
    ) -> RTCSessionDescription:
        """Check access, then answer the offer; streaming starts when the channels open."""
        principal.require("subscribe", session_id)
        self.runtime.admit_viewer(principal, session_id)
        if not 0 <= lod <= 3:
            raise ValueError(f"lod must be 0..3, not {lod}")
        if kind != "offer":
            raise ValueError(f"type must be 'offer', not {kind!r}")
        pc = RTCPeerConnection(configuration=self._configuration())
        peer = Peer(pc, session_id, lod, principal, bits, audio)
        self.peers.add(peer)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            peer.channels[channel.label] = channel
            if channel.label == "control":
                channel.on("message", lambda message: self._on_control(peer, message))
            if {"frames", "control"} <= peer.channels.keys() and peer.subscriber is None:
                self._start(peer)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(peer)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises plain exceptions for bad SDP
            await self.close(peer)
            raise ValueError(f"cannot answer this offer: {exc}") from None
        peer.tasks.append(asyncio.create_task(self._expire_if_unopened(peer)))
        return pc.localDescription

    def _start(self, peer: Peer) -> None:
        try:
            peer.subscriber = self.runtime.subscribe(
                peer.principal,
                peer.session,
                lod=peer.lod,
                mode=DeltaMode.KEYFRAME,
                bits=peer.bits or self.runtime.options.quant_bits,
                transport="webrtc",
                audio=peer.audio,
            )
        except Exception as exc:
            log.info("webrtc subscribe refused", extra={"reason": str(exc)})
            self._close_later(peer)
            return
        # Frames go out from the fan-out pass; the writer task sends the rest (and frames
        # whenever the outbox holds one).
        # Both send frames through one FastSender (one DATA chunk and one DTLS record in the
        # calling step, no aiortc task per message), and the acknowledgements come back through
        # a LeanReceiver (see transport/rtc_datapath.py); the fan-out pass sends a group's
        # frame to all its peers in one native call (send_to_peers).
        frames = FastSender(peer.channels["frames"])
        if internals_ok() and peer.pc.sctp is not None:  # the viewer's SACKs, one per 2 frames
            LeanReceiver(peer.pc.sctp, None)
        peer.subscriber.direct = DataChannelLink(frames, MAX_BUFFERED_BYTES, send_to_peers)
        peer.tasks.append(asyncio.create_task(self._write_loop(peer, peer.subscriber, frames)))

    async def _write_loop(self, peer: Peer, sub: Subscriber, frames: FastSender) -> None:
        control = peer.channels["control"]
        while True:
            controls, frame = await sub.outbox.next_messages()
            if not controls and frame is None:
                await self.close(peer)
                return
            if frames.readyState != "open" or control.readyState != "open":
                await self.close(peer)
                return
            for message in controls:
                control.send(message)
            if frame is not None:
                if frames.bufferedAmount > MAX_BUFFERED_BYTES:
                    sub.outbox.frames_skipped += 1  # the peer is not draining: drop, don't queue
                    continue
                frames.send(frame)

    def _on_control(self, peer: Peer, message: object) -> None:
        sub = peer.subscriber
        if sub is None:
            return
        if not isinstance(message, bytes) or len(message) > MAX_CONTROL_BYTES:
            self._close_later(peer)
            return
        try:
            keep = self.runtime.on_client_message(sub, Decoder().feed(message))
        except (ProtocolError, ValueError) as exc:
            log.info("webrtc control rejected", extra={"reason": str(exc)})
            self._close_later(peer)
            return
        if not keep:
            self._close_later(peer)

    async def _expire_if_unopened(self, peer: Peer) -> None:
        await asyncio.sleep(CHANNEL_WAIT_S)
        if peer.subscriber is None:
            await self.close(peer)

    def _close_later(self, peer: Peer) -> None:
        """Close from a synchronous callback; the task is kept until it finishes."""
        task = asyncio.create_task(self.close(peer))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self, peer: Peer) -> None:
        """Unsubscribe the peer and close its connection (once)."""
        if peer not in self.peers:
            return
        self.peers.discard(peer)
        if peer.subscriber is not None:
            self.runtime.unsubscribe(peer.subscriber)
        current = asyncio.current_task()
        for task in peer.tasks:
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            await peer.pc.close()

    async def close_all(self) -> None:
        """Close every peer (at shutdown), all at once: one by one, a hundred peers' DTLS and
        SCTP shutdowns took longer than a process manager waits after SIGTERM."""
        await asyncio.gather(*(self.close(peer) for peer in list(self.peers)))
