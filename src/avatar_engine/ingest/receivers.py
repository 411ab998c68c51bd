"""asyncio UDP receivers: Live Link Face, VMC, iFacialMocap and our msgpack publish.

Each receiver owns a non-blocking UDP socket on the event loop (``loop.add_reader``); when it
becomes readable, :meth:`DatagramReceiver.drain` reads every datagram waiting in one call
(:mod:`avatar_engine.ingest.recv_batch`), so a burst of many phones' packets is read at once
rather than one per pass of the event loop. Each datagram goes into a sans-I/O parser from
:mod:`avatar_engine.formats` (or :mod:`avatar_engine.ingest.publish`) and validated frames go
to a :class:`~avatar_engine.ingest.sink.CaptureSink`. Per datagram, in this order:

1. the sender's peer entry (bounded LRU of ``max_peers`` senders) counts the packet;
2. oversize datagrams are dropped (``too_large``) before anything else looks at them;
3. the sender's packet token bucket refuses floods (``rate_limited``) before parsing;
4. the parser validates; a failure is dropped and counted under its reason;
5. each frame is routed to a session (``unrouted`` if refused), checked against the sender's
   frame token bucket, and delivered.

``datagram_received`` never raises: anything unexpected is counted as ``internal_error`` and
logged at a bounded rate, so one bad packet (or a bug) can never stop a receive loop. Drops are
logged at most once per ``log_interval`` per (sender, reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from avatar_engine.codec import Ping, PublishHello, encode_pong
from avatar_engine.formats import ifacialmocap, vmc
from avatar_engine.formats.livelink import (
    VALUE_COUNT,
    LiveLinkHead,
    LiveLinkPacketError,
    parse_batch,
    parse_packet,
)
from avatar_engine.formats.rotation import DEGREES_PER_UNIT, MAX_ROTATION_UNITS
from avatar_engine.ingest.limits import DEFAULT_LOG_INTERVAL, LogLimiter, TokenBucket
from avatar_engine.ingest.publish import PublishDecoder, PublishDropError, PublishFrame
from avatar_engine.ingest.recv_batch import Address, batch_rows, recv_backend
from avatar_engine.ingest.routing import Router
from avatar_engine.ingest.sink import BatchCaptureSink, CaptureSink, SourceInfo, SourceKind
from avatar_engine.ingest.stats import SourceStats
from avatar_engine.rigs.arkit import ARKIT_COUNT
from avatar_engine.types import F32

logger = logging.getLogger("avatar_engine.ingest")

Clock = Callable[[], float]

SOCKET_RECEIVE_BUFFER: Final = 1 << 20
"""SO_RCVBUF requested for every receiver: a burst while the loop is busy waits in the kernel."""


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """Limits of one receiver; every one is documented in docs/ingest.md ("Rate limits")."""

    host: str = "127.0.0.1"
    """Loopback by default (safe); bind 0.0.0.0 to hear a phone on the LAN."""
    port: int = 0
    max_datagram: int = 65507
    max_packet_rate_hz: float = 240.0
    """Datagrams per second per sender (token bucket rate)."""
    packet_burst: float = 60.0
    max_frame_rate_hz: float = 120.0
    """Frames per second per sender: phones send 60 (30 when hot); 2x covers jitter."""
    frame_burst: float = 30.0
    max_peers: int = 256
    """Senders tracked at once (stats, buckets, decoder state); the oldest is forgotten."""
    log_interval: float = DEFAULT_LOG_INTERVAL


class Peer:
    """One sender: its stats, its rate buckets and its decoder state."""

    __slots__ = ("address", "frame_bucket", "label", "packet_bucket", "state", "stats")

    def __init__(self, address: Address, config: ReceiverConfig, now: float) -> None:
        self.address = address
        self.label = f"{address[0]}:{address[1]}" if len(address) >= 2 else str(address)
        self.stats = SourceStats()
        self.packet_bucket = TokenBucket(config.max_packet_rate_hz, config.packet_burst, now)
        self.frame_bucket = TokenBucket(config.max_frame_rate_hz, config.frame_burst, now)
        self.state: Any = None


class DatagramReceiver:
    """The shared receive path; subclasses implement :meth:`decode`."""

    kind: ClassVar[SourceKind]
    """Which input this receiver is (each subclass names its own)."""
    default_config: ClassVar[ReceiverConfig] = ReceiverConfig()

    def __init__(
        self,
        sink: CaptureSink,
        router: Router | None = None,
        *,
        config: ReceiverConfig | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config or self.default_config
        self._sink = sink
        self._batch_sink = sink if isinstance(sink, BatchCaptureSink) else None
        self._router = router or Router()
        self._clock = clock
        self._peers: OrderedDict[Address, Peer] = OrderedDict()
        self.totals = SourceStats()
        self.totals.key = self.kind
        self._log = LogLimiter(logger, self.config.log_interval)
        self.sock: socket.socket | None = None
        self.bound: tuple[str, int] | None = None
        # One byte more than the largest datagram accepted: a longer one is cut to the row and
        # then seen as too large.
        row = self.config.max_datagram + 1
        self._rows = np.zeros((batch_rows(row), row), np.uint8)
        self._sizes = np.zeros(len(self._rows), np.int64)
        self._recv = recv_backend()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Bind ``config.host:config.port`` (0 = ephemeral), enlarge the socket's receive buffer
        (bursts from many phones wait in the kernel) and read it whenever it becomes readable;
        returns the bound address."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.config.host, self.config.port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
        )
        family, _, proto, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # not fatal: the OS default buffer still works
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_RECEIVE_BUFFER)
            sock.bind(address)
            loop.add_reader(sock.fileno(), self.drain)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        name = sock.getsockname()
        self.bound = (str(name[0]), int(name[1]))
        return self.bound

    def close(self) -> None:
        """Stop reading and close the socket (idempotent); frames already delivered stay
        delivered."""
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    def error_received(self, exc: Exception) -> None:
        """Socket errors (ICMP port unreachable after a handshake, ...): count and carry on."""
        self.totals.drop("socket_error")
        self._log.log("socket_error", self._clock(), f"{self.kind}: socket error: {exc}")

    def send(self, data: bytes, address: Address) -> bool:
        """One datagram from this receiver's port (a handshake, a PONG); never blocks, and a
        failure is counted as a socket error (False)."""
        if self.sock is None:
            return False
        try:
            self.sock.sendto(data, address)
        except OSError as exc:
            self.error_received(exc)
            return False
        return True

    def drain(self) -> int:
        """Read every datagram waiting on the socket (at most one batch) and handle each; returns
        how many were read. Called when the socket becomes readable and before a tick, so a
        burst is carried by one tick. Never raises."""
        if self.sock is None:
            return 0
        try:
            addresses = self._recv(self.sock, self._rows, self._sizes)
        except OSError as exc:
            self.error_received(exc)
            return 0
        if addresses:
            self.receive_batch(addresses)
        return len(addresses)

    def receive_batch(self, addresses: list[Address]) -> None:
        """The datagrams of one batch read (``self._rows[i, :self._sizes[i]]`` from
        ``addresses[i]``), each as :meth:`datagram_received` would take it. A format whose
        datagrams parse in one vectorised pass overrides this (Live Link)."""
        rows, sizes = self._rows, self._sizes
        for i, addr in enumerate(addresses):
            self.datagram_received(rows[i, : sizes[i]].tobytes(), addr)

    # -- receive path -----------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """One datagram: decode, validate, route and deliver it. It never
        raises: an unexpected error is counted and logged (rate-limited) so one bad packet cannot
        stop the receiver."""
        try:
            self._receive(data, addr)
        except Exception as exc:  # the last line of defence: a receive loop never raises
            self.internal_error(addr, exc)

    def internal_error(self, addr: Address, exc: Exception) -> None:
        """Count and log (rate-limited) an unexpected error on a datagram from ``addr``."""
        self.totals.drop("internal_error")
        self._log.log(
            "internal_error",
            self._clock(),
            f"{self.kind}: internal error on a datagram from {addr!r}: {exc!r}",
            logging.ERROR,
        )

    def _peer(self, addr: Address, now: float) -> Peer:
        peer = self._peers.get(addr)
        if peer is None:
            peer = Peer(addr, self.config, now)
            peer.state = self.new_peer_state()
            self._peers[addr] = peer
            if len(self._peers) > self.config.max_peers:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(addr)
        return peer

    def _receive(self, data: bytes, addr: Address) -> None:
        now = self._clock()
        peer = self.admit(addr, len(data), now)
        if peer is not None:
            self.decode(data, peer, now)

    def admit(self, addr: Address, size: int, now: float) -> Peer | None:
        """Steps 1-3 of the receive path (module docstring) for a datagram of ``size`` bytes:
        its sender's peer entry if it may be parsed, None if it was dropped (and counted)."""
        peer = self._peer(addr, now)
        peer.stats.packet(size, now)
        self.totals.packet(size, now)
        if size > self.config.max_datagram:
            self.drop(peer, "too_large", f"{size} bytes", now)
            return None
        if not self.accept_peer(peer):
            self.drop(peer, "unexpected_peer", "not the configured sender", now)
            return None
        if not peer.packet_bucket.take(now):
            self.drop(peer, "rate_limited", "packet rate over the limit", now)
            return None
        return peer

    def drop(self, peer: Peer, reason: str, detail: str, now: float, n: int = 1) -> None:
        """Refuse ``n`` packets or values from ``peer`` for ``reason``: counted per peer and in
        total, logged at most once per interval per peer and reason."""
        peer.stats.drop(reason, n)
        self.totals.drop(reason, n)
        self._log.log(
            f"{peer.label}/{reason}",
            now,
            f"{self.kind}: dropped from {peer.label}: {reason}: {detail}",
        )

    def clamped(self, peer: Peer, n: int) -> None:
        """Count ``n`` values that arrived outside 0..1 and were clamped (they are not drops: the
        frame is used)."""
        if n:
            peer.stats.clamped += n
            self.totals.clamped += n

    def deliver(
        self,
        peer: Peer,
        key: str,
        default_session: str,
        arkit: F32,
        rotations: F32,
        now: float,
        *,
        device_id: str = "",
        frame_time: float | None = None,
    ) -> None:
        """Route a validated frame and hand it to the sink."""
        session = self.route(peer, key, default_session, now)
        if session is None:
            return
        info = SourceInfo(self.kind, key, peer.label, device_id, frame_time)
        try:
            self._sink.on_frame(session, arkit, rotations, now, info)
        except Exception as exc:
            self.drop(peer, "sink_error", repr(exc), now)
            return
        peer.stats.frame(now)
        self.totals.frame(now)

    def route(self, peer: Peer, key: str, default_session: str, now: float) -> str | None:
        """Step 5 of the receive path up to the sink: the session a validated frame drives, or
        None when it is dropped (``unrouted``, or the sender's frame rate: ``rate_limited``)."""
        session = self._router.resolve(self.kind, key, default_session, peer.label)
        if session is None:
            self.drop(peer, "unrouted", f"no session for {self.kind}:{key}", now)
            return None
        if not peer.frame_bucket.take(now):
            self.drop(peer, "rate_limited", "frame rate over the limit", now)
            return None
        peer.stats.key = key
        peer.stats.session_id = session
        return session

    def deliver_batch(self, peers: list[Peer], session_ids: list[str], arkit: F32,
                      rotations: F32, now: float, infos: list[SourceInfo]) -> None:  # fmt: skip
        """Frames already routed (:meth:`route`) handed to a batch sink in one call; each counts
        as delivered, or all as ``sink_error`` if the call raises."""
        assert self._batch_sink is not None
        try:
            self._batch_sink.on_frames(session_ids, arkit, rotations, now, infos)
        except Exception as exc:
            for peer in peers:
                self.drop(peer, "sink_error", repr(exc), now)
            return
        for peer in peers:
            peer.stats.frame(now)
        self.totals.frames_at(now, len(peers))

    # -- for subclasses ---------------------------------------------------------------------

    def new_peer_state(self) -> Any:
        """Per-sender decoder state (VMC accumulates across datagrams, publish keeps hellos)."""
        return None

    def accept_peer(self, peer: Peer) -> bool:
        """Whether datagrams from this new sender are accepted at all (iFacialMocap listens to its
        phone only)."""
        return True

    def decode(self, data: bytes, peer: Peer, now: float) -> None:
        """Decode one datagram of this format and :meth:`deliver` its frames or :meth:`drop` it."""
        raise NotImplementedError

    # -- reporting --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This receiver's totals and per-sender counters, JSON-ready (``/stats``)."""
        now = self._clock()
        return {
            "kind": self.kind,
            "bound": None if self.bound is None else f"{self.bound[0]}:{self.bound[1]}",
            "totals": self.totals.snapshot(now),
            "sources": {p.label: p.stats.snapshot(now) for p in self._peers.values()},
        }


_CENTER: Final = np.concatenate([np.full(ARKIT_COUNT, 0.5), np.zeros(9)]).astype(np.float32)
_HALF: Final = np.concatenate([np.full(ARKIT_COUNT, 0.5), np.full(9, MAX_ROTATION_UNITS)]).astype(
    np.float32
)
_LOWER: Final = _CENTER - _HALF
_UPPER: Final = _CENTER + _HALF


class _RangeCheck:
    """Clamps rows of 61 values (weights 0..1, rotations +-MAX_ROTATION_UNITS) in place; returns
    how many values of each row were out of range.

    Measured: the obvious ``count_nonzero((a < 0) | (a > 1))`` + clip on two views cost about
    13 us per packet; one fused check on whole rows into preallocated scratch is ~3 us for one
    row, and about the same for a batch of a hundred.
    """

    __slots__ = ("_mask", "_scratch")

    def __init__(self, rows: int = 1) -> None:
        self._scratch = np.empty((rows, ARKIT_COUNT + 9), dtype=np.float32)
        self._mask = np.empty((rows, ARKIT_COUNT + 9), dtype=bool)

    def __call__(self, values: F32) -> npt.NDArray[np.intp]:
        n = len(values)
        scratch, mask = self._scratch[:n], self._mask[:n]
        np.subtract(values, _CENTER, out=scratch)
        np.abs(scratch, out=scratch)
        np.greater(scratch, _HALF, out=mask)
        if not mask.any():
            return np.zeros(n, np.intp)
        np.clip(values, _LOWER, _UPPER, out=values)
        counts: npt.NDArray[np.intp] = np.count_nonzero(mask, axis=1)
        return counts


class _Routed:
    """The frames of one batch that passed every check, for one :meth:`deliver_batch`."""

    __slots__ = ("infos", "peers", "rows", "sessions")

    def __init__(self) -> None:
        self.peers: list[Peer] = []
        self.sessions: list[str] = []
        self.rows: list[int] = []
        self.infos: list[SourceInfo] = []

    def add(self, peer: Peer, session: str, row: int, info: SourceInfo) -> None:
        """One more frame: ``row`` of the batch's values, for ``session``."""
        self.peers.append(peer)
        self.sessions.append(session)
        self.rows.append(row)
        self.infos.append(info)


class LiveLinkReceiver(DatagramReceiver):
    """Live Link Face v6 (default port 11111). The session is the subject name.

    ``rotation_scale`` multiplies the nine rotations (Epic does not document their unit; the
    default 1.0 passes the app's values through, like ``convert`` does). A batch read is parsed
    in one pass (:func:`~avatar_engine.formats.livelink.parse_batch`) and range-checked in one
    vectorised pass; each datagram is still admitted (peer, size, rate) before its frame is
    used, so the counters are those of one datagram at a time (a datagram refused by its
    sender's rate limit was parsed, in C, and is counted as rate limited only).
    """

    kind = SourceKind.LIVELINK
    default_config = ReceiverConfig(port=11111, max_datagram=1024)

    def __init__(
        self,
        sink: CaptureSink,
        router: Router | None = None,
        *,
        config: ReceiverConfig | None = None,
        clock: Clock = time.monotonic,
        rotation_scale: float = 1.0,
    ) -> None:
        super().__init__(sink, router, config=config, clock=clock)
        self.rotation_scale = np.float32(rotation_scale)
        self._check = _RangeCheck(len(self._rows))
        self._values = np.zeros((len(self._rows), VALUE_COUNT), np.float32)

    def decode(self, data: bytes, peer: Peer, now: float) -> None:
        """One Live Link Face packet is one frame: parse it, scale the rotations and deliver it."""
        try:
            frame = parse_packet(data)
        except LiveLinkPacketError as exc:
            self.drop(peer, exc.reason.value, str(exc), now)
            return
        values = frame.values[None, :]  # a fresh array per packet: safe to modify in place
        self._use(peer, (frame.device_id, frame.subject, frame.frame_time), values, 0, now,
                  self._scaled_and_checked(values))  # fmt: skip

    def receive_batch(self, addresses: list[Address]) -> None:
        """Every datagram of a batch read: one parse and one range check for all of them, then
        each admitted and delivered in order."""
        n = len(addresses)
        now = self._clock()
        values = self._values[:n]
        heads = parse_batch(self._rows, self._sizes, n, values)
        clamped = self._scaled_and_checked(values)
        sizes = self._sizes.tolist()
        routed = _Routed()
        for i, addr in enumerate(addresses):
            try:
                peer = self.admit(addr, sizes[i], now)
                if peer is None:
                    continue
                head = heads[i]
                if isinstance(head, LiveLinkPacketError):
                    self.drop(peer, head.reason.value, str(head), now)
                elif self._batch_sink is None:
                    self._use(peer, head, values, i, now, clamped)
                else:
                    self._route_one(peer, head, i, now, int(clamped[i]), routed)
            except Exception as exc:  # as datagram_received: one bad packet never stops the rest
                self.internal_error(addr, exc)
        if routed.rows:
            take = values[np.array(routed.rows, np.intp)]
            self.deliver_batch(routed.peers, routed.sessions, take[:, :ARKIT_COUNT],
                               take[:, ARKIT_COUNT:], now, routed.infos)  # fmt: skip

    def _route_one(self, peer: Peer, head: LiveLinkHead, i: int, now: float, clamped: int,
                   routed: _Routed) -> None:  # fmt: skip
        """Row ``i`` of a batch up to the sink (as :meth:`_use`), kept for one sink call."""
        device_id, subject, frame_time = head
        self.clamped(peer, clamped)
        key = subject or device_id or "livelink"
        session = self.route(peer, key, key, now)
        if session is not None:
            routed.add(peer, session, i, SourceInfo(self.kind, key, peer.label, device_id,
                                                    frame_time))  # fmt: skip

    def _scaled_and_checked(self, values: F32) -> npt.NDArray[np.intp]:
        if self.rotation_scale != 1.0:
            values[:, ARKIT_COUNT:] *= self.rotation_scale
        return self._check(values)

    def _use(self, peer: Peer, head: LiveLinkHead, values: F32, i: int, now: float,
             clamped: npt.NDArray[np.intp]) -> None:  # fmt: skip
        device_id, subject, frame_time = head
        self.clamped(peer, int(clamped[i]))
        key = subject or device_id or "livelink"
        self.deliver(peer, key, key, values[i, :ARKIT_COUNT], values[i, ARKIT_COUNT:], now,
                     device_id=device_id, frame_time=frame_time)  # fmt: skip


class VmcReceiver(DatagramReceiver):
    """VMC protocol Marionette side (default port 39539). The session is ``name`` (``vmc``).

    Packet limits are high because unbundled senders use one datagram per message (about 60
    per frame); the frame bucket (one token per ``Apply``) is what holds a flood to the
    declared rate.
    """

    kind = SourceKind.VMC
    default_config = ReceiverConfig(
        port=vmc.DEFAULT_PORT,
        max_datagram=vmc.MAX_DATAGRAM_BYTES,
        max_packet_rate_hz=8000.0,
        packet_burst=2000.0,
    )

    def __init__(
        self,
        sink: CaptureSink,
        router: Router | None = None,
        *,
        config: ReceiverConfig | None = None,
        clock: Clock = time.monotonic,
        name: str = "vmc",
        degrees_per_unit: float = DEGREES_PER_UNIT,
        axis_signs: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__(sink, router, config=config, clock=clock)
        self.name = name
        self._degrees_per_unit = degrees_per_unit
        self._axis_signs = axis_signs

    def new_peer_state(self) -> vmc.VmcDecoder:
        """A VMC decoder per sender: blend values accumulate over datagrams until ``Apply``."""
        return vmc.VmcDecoder(degrees_per_unit=self._degrees_per_unit, axis_signs=self._axis_signs)

    def decode(self, data: bytes, peer: Peer, now: float) -> None:
        """Feed the sender's VMC decoder; every ``Apply`` in the datagram delivers a frame."""
        decoder: vmc.VmcDecoder = peer.state
        try:
            result = decoder.feed_datagram(data)
        except vmc.VmcPacketError as exc:
            self.drop(peer, exc.reason.value, str(exc), now)
            return
        for reason, n in result.issues.items():
            detail = ", ".join(result.unknown_names) if reason == "unknown_name" else "messages"
            self.drop(peer, reason, detail, now, n)
        self.clamped(peer, result.clamped)
        host = str(peer.address[0])
        for frame in result.frames:
            self.deliver(peer, host, self.name, frame.arkit, frame.rotations, now)


class IFacialMocapReceiver(DatagramReceiver):
    """iFacialMocap (port 49983 both ways). Sends the handshake to ``phone_host`` on start and
    again every ``handshake_interval`` seconds while no frame arrives, so restarting the app
    (or the phone waking up) resumes the stream. With a ``phone_host`` set, datagrams from any
    other host are dropped (``unexpected_peer``). The session is ``name`` (``ifacialmocap``).
    """

    kind = SourceKind.IFACIALMOCAP
    default_config = ReceiverConfig(
        port=ifacialmocap.DEFAULT_PORT, max_datagram=ifacialmocap.MAX_FRAME_BYTES
    )

    def __init__(
        self,
        sink: CaptureSink,
        router: Router | None = None,
        *,
        config: ReceiverConfig | None = None,
        clock: Clock = time.monotonic,
        phone_host: str | None = None,
        phone_port: int = ifacialmocap.DEFAULT_PORT,
        version: int = 2,
        name: str = "ifacialmocap",
        handshake_interval: float = 2.0,
        degrees_per_unit: float = DEGREES_PER_UNIT,
    ) -> None:
        super().__init__(sink, router, config=config, clock=clock)
        self.phone_host = phone_host
        self.phone_port = phone_port
        self.handshake = ifacialmocap.HANDSHAKE_V2 if version == 2 else ifacialmocap.HANDSHAKE_V1
        self.name = name
        self.handshake_interval = handshake_interval
        self.handshakes_sent = 0
        self._degrees_per_unit = degrees_per_unit
        self._phone_ip: str | None = None
        self._last_frame: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> tuple[str, int]:
        """Bind, then (with ``phone_host``) resolve the phone and send it the handshake that starts
        its stream."""
        bound = await super().start()
        if self.phone_host is not None:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(self.phone_host, self.phone_port, type=2)  # DGRAM
            self._phone_ip = str(infos[0][4][0])
            self._send_handshake()
        return bound

    def _send_handshake(self) -> None:
        self._timer = None
        if self.sock is None or self._phone_ip is None:
            return
        now = self._clock()
        quiet = self._last_frame is None or now - self._last_frame >= self.handshake_interval
        if quiet and self.send(self.handshake, (self._phone_ip, self.phone_port)):
            self.handshakes_sent += 1
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.handshake_interval, self._send_handshake)

    def close(self) -> None:
        """Stop re-sending the handshake, then close the socket."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().close()

    def accept_peer(self, peer: Peer) -> bool:
        """With a phone configured, only that phone's address is heard."""
        return self._phone_ip is None or peer.address[0] == self._phone_ip

    def decode(self, data: bytes, peer: Peer, now: float) -> None:
        """One iFacialMocap text frame: unknown names are counted, the rest delivered."""
        try:
            frame = ifacialmocap.parse_frame(data, degrees_per_unit=self._degrees_per_unit)
        except ifacialmocap.IfmFrameError as exc:
            self.drop(peer, exc.reason.value, str(exc), now)
            return
        if frame.unknown:
            self.drop(peer, "unknown_name", ", ".join(frame.unknown[:8]), now, len(frame.unknown))
        self.clamped(peer, frame.clamped)
        self._last_frame = now
        self.deliver(peer, str(peer.address[0]), self.name, frame.arkit, frame.rotations, now)


class PublishUdpReceiver(DatagramReceiver):
    """Our msgpack publish messages over UDP, one message per datagram (docs/protocol.md).

    The session is ``publish-<pid>`` unless routed (``publish-udp:<pid>``). A PING is answered
    with a PONG to the sender so a publisher can measure its round trip.
    """

    kind = SourceKind.PUBLISH_UDP
    default_config = ReceiverConfig(port=0, max_datagram=1472, max_packet_rate_hz=480.0)
    """1472 bytes: docs/protocol.md 3.7 says a UDP publisher MUST stay under it."""

    def new_peer_state(self) -> PublishDecoder:
        """A publish decoder per sender: it keeps the sender's publish hellos for positional
        captures."""
        return PublishDecoder()

    def decode(self, data: bytes, peer: Peer, now: float) -> None:
        """One msgpack publish message: a hello is remembered, a capture delivered."""
        decoder: PublishDecoder = peer.state
        try:
            out = decoder.feed(data)
        except PublishDropError as exc:
            self.drop(peer, exc.reason, str(exc), now)
            return
        if isinstance(out, PublishFrame):
            if out.unknown:
                self.drop(peer, "unknown_name", f"{out.unknown} names", now, out.unknown)
            self.clamped(peer, out.clamped)
            self.deliver(
                peer,
                str(out.pid),
                f"publish-{out.pid}",
                out.arkit,
                out.rotations,
                now,
                frame_time=out.t,
            )
        elif isinstance(out, Ping):
            self.send(encode_pong(out.nonce, out.t_ms), peer.address)
        elif isinstance(out, PublishHello):
            peer.stats.key = str(out.pid)


def with_port(config: ReceiverConfig, host: str, port: int) -> ReceiverConfig:
    """A copy of a receiver's config bound elsewhere (ports are the usual override)."""
    return replace(config, host=host, port=port)
