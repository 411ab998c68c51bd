"""asyncio UDP receivers: Live Link Face, VMC, iFacialMocap and our msgpack publish.

Each receiver owns a non-blocking UDP socket on the event loop (``loop.add_reader``); when it
becomes readable, :meth:`DatagramReceiver.drain` reads every datagram waiting in one call
(:mod:`avatar_engine.ingest.recv_batch`), so a burst of many phones' packets is read at once
rather than one per pass of the event loop. Each datagram goes into a sans-I/O parser from
:mod:`avatar_engine.formats` (or :mod:`avatar_engine.ingest.publish`) and validated frames go
to a :class:`~avatar_engine.ingest.sink.CaptureSink`. Per datagram, in this order, each step
taken for the whole batch at once where it can be (the senders' state is a
:class:`~avatar_engine.ingest.peers.PeerTable`: columns, not objects):

1. the sender's row (at most ``max_peers`` senders kept between batches; the least recently
   heard are forgotten) counts the packet;
2. oversize datagrams are dropped (``too_large``) before anything else looks at them;
3. the sender's packet token bucket refuses floods (``rate_limited``) before parsing;
4. the parser validates; a failure is dropped and counted under its reason;
5. each frame is routed to a session (``unrouted`` if refused), checked against the sender's
   frame token bucket, and the batch's frames are delivered together.

A batch counts exactly as its datagrams would one at a time, in order; only the log lines of a
batch's drops are one per sender and reason. ``receive_batch`` and ``datagram_received`` never
raise: anything unexpected is counted as ``internal_error`` and logged at a bounded rate, so
one bad packet (or a bug) can never stop a receive loop. Drops are logged at most once per
``log_interval`` per (sender, reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final

import numpy as np

from avatar_engine.codec import Ping, PublishHello, encode_pong
from avatar_engine.formats import ifacialmocap, vmc
from avatar_engine.formats.livelink import (
    VALUE_COUNT,
    LiveLinkPacketError,
    parse_batch,
)
from avatar_engine.formats.rotation import DEGREES_PER_UNIT
from avatar_engine.ingest.admission import ADMITTED, NOT_HEARD, RATE_LIMITED, TOO_LARGE
from avatar_engine.ingest.limits import DEFAULT_LOG_INTERVAL, LogLimiter
from avatar_engine.ingest.peers import PeerTable
from avatar_engine.ingest.publish import PublishDecoder, PublishDropError, PublishFrame
from avatar_engine.ingest.range_check import CENTER, HALF, range_check_backend
from avatar_engine.ingest.recv_batch import Address, batch_rows, recv_backend
from avatar_engine.ingest.routing import Router
from avatar_engine.ingest.sink import BatchCaptureSink, CaptureSink, SourceBatch, SourceKind
from avatar_engine.ingest.stats import SourceStats
from avatar_engine.rigs.arkit import ARKIT_COUNT
from avatar_engine.types import F32, I64, U8

logger = logging.getLogger("avatar_engine.ingest")

Clock = Callable[[], float]

_REFUSED: Final = {
    TOO_LARGE: ("too_large", "over the datagram size limit"),
    NOT_HEARD: ("unexpected_peer", "not the configured sender"),
    RATE_LIMITED: ("rate_limited", "packet rate over the limit"),
}
"""Drop reason and log detail of each admission status but ADMITTED."""

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


class _Frames:
    """The frames decoded from one batch's datagrams one at a time (:meth:`emit_frame`), routed
    and delivered together when the batch is done."""

    __slots__ = ("arkit", "defaults", "device_ids", "frame_times", "keys", "rotations", "rows")

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.keys: list[str] = []
        self.defaults: list[str] = []
        self.arkit: list[F32] = []
        self.rotations: list[F32] = []
        self.device_ids: list[str] = []
        self.frame_times: list[float | None] = []

    def clear(self) -> None:
        for column in (self.rows, self.keys, self.defaults, self.arkit, self.rotations,
                       self.device_ids, self.frame_times):  # fmt: skip
            column.clear()


class DatagramReceiver:
    """The shared receive path; subclasses implement :meth:`decode` (or :meth:`decode_batch`)."""

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
        self.config = c = config or self.default_config
        self._sink = sink
        self._batch_sink = sink if isinstance(sink, BatchCaptureSink) else None
        self._router = router or Router()
        self._clock = clock
        self.totals = SourceStats()
        self.totals.key = self.kind
        self._log = LogLimiter(logger, c.log_interval)
        self.sock: socket.socket | None = None
        self.bound: tuple[str, int] | None = None
        # One byte more than the largest datagram accepted: a longer one is cut to the row and
        # then seen as too large.
        row = c.max_datagram + 1
        self._rows = np.zeros((batch_rows(row), row), np.uint8)
        self._sizes = np.zeros(len(self._rows), np.int64)
        self._recv = recv_backend()
        limits = (c.max_packet_rate_hz, c.packet_burst), (c.max_frame_rate_hz, c.frame_burst)
        self.peers = PeerTable(c.max_peers, len(self._rows), *limits, self.new_peer_state)
        self._pending = _Frames()
        self._heard_all = np.ones(len(self._rows), np.uint8)

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
        ``addresses[i]``): admitted together (steps 1-3 of the module docstring), decoded,
        and their frames routed and delivered together. Never raises: anything unexpected is
        counted as ``internal_error`` (per datagram where a datagram's bytes are involved)."""
        try:
            now = self._clock()
            taken, rows = self.admit(addresses, now)
            if taken:
                self.decode_batch(len(addresses), taken, rows, now)
            pending = self._pending
            if pending.rows:
                self.deliver(pending.rows, pending.keys, pending.defaults,
                             np.stack(pending.arkit), np.stack(pending.rotations),
                             pending.device_ids, pending.frame_times, now)  # fmt: skip
        except Exception as exc:  # the last line of defence: a receive loop never raises
            self.internal_error(addresses[0] if addresses else (), exc)
        finally:
            if self._pending.rows:
                self._pending.clear()
            self.peers.forget_oldest()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """One datagram taken on its own (what asyncio's datagram protocol would call; tests and
        the fuzzer use it): a batch of one. It never raises."""
        row = self._rows[0]
        size = min(len(data), len(row))
        row[:size] = np.frombuffer(data, np.uint8, size)
        self._sizes[0] = len(data)
        self.receive_batch([addr])

    def internal_error(self, addr: Address, exc: Exception) -> None:
        """Count and log (rate-limited) an unexpected error on a datagram from ``addr``."""
        self.totals.drop("internal_error")
        self._log.log(
            "internal_error",
            self._clock(),
            f"{self.kind}: internal error on a datagram from {addr!r}: {exc!r}",
            logging.ERROR,
        )

    def admit(self, addresses: list[Address], now: float) -> tuple[list[int], list[int]]:
        """Steps 1-3 of the receive path for a batch: which datagrams may be parsed (indices
        into the batch, in order) and their senders' rows; the rest are dropped and counted."""
        n = len(addresses)
        sizes = self._sizes[:n]
        rows = self.peers.rows_for(addresses, now)
        heard = self.heard(rows)
        status, admitted = self.peers.admit(
            rows, sizes, self._heard_all[:n] if heard is None else heard,
            self.config.max_datagram, now)  # fmt: skip
        self.totals.packets_at(n, int(sizes.sum()), now)
        senders = rows.tolist()
        if admitted == n:
            return list(range(n)), senders
        taken: list[int] = []
        refused: Counter[tuple[int, int]] = Counter()
        for i, code in enumerate(status.tolist()):
            if code == ADMITTED:
                taken.append(i)
            else:
                refused[senders[i], code] += 1
        for (row, code), count in refused.items():
            reason, detail = _REFUSED[code]
            self.drop(row, reason, detail, now, count)
        return taken, [senders[i] for i in taken]

    def drop(self, row: int, reason: str, detail: str, now: float, n: int = 1) -> None:
        """Refuse ``n`` packets or values from the sender of ``row`` for ``reason``: counted per
        sender and in total, logged at most once per interval per sender and reason."""
        drops = self.peers.drops[row]
        drops[reason] = drops.get(reason, 0) + n
        self.totals.drop(reason, n)
        label = self.peers.label[row]
        self._log.log(
            f"{label}/{reason}", now, f"{self.kind}: dropped from {label}: {reason}: {detail}"
        )

    def clamped(self, row: int, n: int) -> None:
        """Count ``n`` values that arrived outside 0..1 and were clamped (they are not drops: the
        frame is used)."""
        if n:
            self.peers.clamped[row] += n
            self.totals.clamped += n

    def _host(self, row: int) -> str:
        """The sender's host (VMC and iFacialMocap route by it)."""
        address = self.peers.address[row]
        return "" if address is None else str(address[0])

    def emit_frame(self, row: int, key: str, default_session: str, arkit: F32, rotations: F32,
                   *, device_id: str = "", frame_time: float | None = None) -> None:  # fmt: skip
        """A validated frame decoded from a datagram of ``row``'s sender, kept (copied) to be
        routed and delivered with the rest of the batch's."""
        pending = self._pending
        pending.rows.append(row)
        pending.keys.append(key)
        pending.defaults.append(default_session)
        pending.arkit.append(np.array(arkit, np.float32))
        pending.rotations.append(np.array(rotations, np.float32))
        pending.device_ids.append(device_id)
        pending.frame_times.append(frame_time)

    def deliver(self, rows: list[int], keys: list[str], defaults: list[str], arkit: F32,
                rotations: F32, device_ids: list[str], frame_times: list[float | None],
                now: float) -> None:  # fmt: skip
        """Step 5 for a batch's frames (row ``j`` of ``arkit`` and ``rotations`` from the sender
        of ``rows[j]``): each routed to a session (``unrouted`` if refused), checked against its
        sender's frame bucket (``rate_limited``), then all handed to the sink in one call (a
        batch sink) or one call each, and counted."""
        routed = self._route(rows, keys, defaults, now)
        if not routed:
            return
        peers = self.peers
        key_of, session_of = peers.key, peers.session
        ids: list[str] = []
        senders: list[int] = []
        for j, session in routed:
            row = rows[j]
            key_of[row] = keys[j]
            session_of[row] = session
            ids.append(session)
            senders.append(row)
        if len(routed) < len(rows):
            kept = [j for j, _ in routed]
            keys = [keys[j] for j in kept]
            device_ids = [device_ids[j] for j in kept]
            frame_times = [frame_times[j] for j in kept]
            at = np.array(kept, np.intp)
            arkit, rotations = arkit[at], rotations[at]
        label = peers.label
        sources = SourceBatch(self.kind, keys, [label[r] for r in senders], device_ids,
                              frame_times)  # fmt: skip
        delivered = self._hand_over(ids, arkit, rotations, sources, senders, now)
        if delivered:
            peers.count_frames(np.array(delivered, np.int64), now)
            self.totals.frames_at(now, len(delivered))

    def _route(self, rows: list[int], keys: list[str], defaults: list[str],
               now: float) -> list[tuple[int, str]]:  # fmt: skip
        """The frames that get a session and a frame token: (index, session) in order; the
        rest are dropped and counted."""
        peers, kind = self.peers, self.kind
        resolve, label = self._router.resolve, peers.label
        sessions = [resolve(kind, keys[j], defaults[j], label[r]) for j, r in enumerate(rows)]
        routed = [(j, session) for j, session in enumerate(sessions) if session is not None]
        if len(routed) < len(rows):
            for j, session in enumerate(sessions):
                if session is None:
                    self.drop(rows[j], "unrouted", f"no session for {kind}:{keys[j]}", now)
        got, taken = peers.take_frames(np.array([rows[j] for j, _ in routed], np.int64), now)
        if taken < len(routed):
            passed = got.tolist()
            limited = Counter(rows[j] for (j, _), ok in zip(routed, passed, strict=True) if not ok)
            for row, n in limited.items():
                self.drop(row, "rate_limited", "frame rate over the limit", now, n)
            routed = [r for r, ok in zip(routed, passed, strict=True) if ok]
        return routed

    def _hand_over(self, ids: list[str], arkit: F32, rotations: F32, sources: SourceBatch,
                   senders: list[int], now: float) -> list[int]:  # fmt: skip
        """Give the routed frames to the sink; returns the senders of those it took (a failing
        call is counted ``sink_error``)."""
        if self._batch_sink is not None:
            try:
                self._batch_sink.on_frames(ids, arkit, rotations, now, sources)
            except Exception as exc:
                for row, n in Counter(senders).items():
                    self.drop(row, "sink_error", repr(exc), now, n)
                return []
            return senders
        delivered: list[int] = []
        for j, session in enumerate(ids):
            try:
                self._sink.on_frame(session, arkit[j], rotations[j], now, sources.at(j))
            except Exception as exc:
                self.drop(senders[j], "sink_error", repr(exc), now)
            else:
                delivered.append(senders[j])
        return delivered

    # -- for subclasses ---------------------------------------------------------------------

    def new_peer_state(self) -> Any:
        """Per-sender decoder state (VMC accumulates across datagrams, publish keeps hellos)."""
        return None

    def heard(self, rows: I64) -> U8 | None:
        """Which datagrams' senders (``rows``) are heard at all (1) and which not (0); None:
        every sender (iFacialMocap listens to its phone only)."""
        return None

    def decode_batch(self, n: int, taken: list[int], rows: list[int], now: float) -> None:
        """Decode the admitted datagrams (indices ``taken`` of the batch's ``n``, from senders
        ``rows``): by default one :meth:`decode` each, an error counted against that datagram
        alone. A format that parses a batch in one pass overrides this (Live Link)."""
        data, sizes = self._rows, self._sizes
        for i, row in zip(taken, rows, strict=True):
            try:
                self.decode(data[i, : sizes[i]].tobytes(), row, now)
            except Exception as exc:  # one bad datagram never stops the rest
                self.internal_error(self.peers.address[row] or (), exc)

    def decode(self, data: bytes, row: int, now: float) -> None:
        """Decode one datagram of this format from ``row``'s sender and :meth:`emit_frame` its
        frames or :meth:`drop` it."""
        raise NotImplementedError

    # -- reporting --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This receiver's totals and per-sender counters, JSON-ready (``/stats``)."""
        now = self._clock()
        peers = self.peers
        return {
            "kind": self.kind,
            "bound": None if self.bound is None else f"{self.bound[0]}:{self.bound[1]}",
            "totals": self.totals.snapshot(now),
            "sources": {peers.label[r]: peers.snapshot(r, now) for r in peers.rows()},
        }


class LiveLinkReceiver(DatagramReceiver):
    """Live Link Face v6 (default port 11111). The session is the subject name.

    ``rotation_scale`` multiplies the nine rotations (Epic does not document their unit; the
    default 1.0 passes the app's values through, like ``convert`` does). A batch read is parsed
    in one pass (:func:`~avatar_engine.formats.livelink.parse_batch`) and range-checked in one
    vectorised pass, after the batch was admitted (so a datagram refused by its sender's rate
    limit is counted as rate limited only).
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
        self.rotation_scale = float(rotation_scale)
        self._clamp = range_check_backend()
        self._clamped = np.zeros(len(self._rows), np.int64)
        self._values = np.zeros((len(self._rows), VALUE_COUNT), np.float32)

    def decode_batch(self, n: int, taken: list[int], rows: list[int], now: float) -> None:
        """Every admitted datagram of a batch: one parse and one range check for all of them,
        then their frames delivered together (a packet is one frame; its session the subject)."""
        values = self._values[:n]
        heads = parse_batch(self._rows, self._sizes, n, values)
        if self.rotation_scale != 1.0:
            values[:, ARKIT_COUNT:] *= np.float32(self.rotation_scale)
        clamped = self._clamped[:n] if self._clamp(values, CENTER, HALF, self._clamped) else None
        good: list[int] = []
        senders: list[int] = []
        keys: list[str] = []
        device_ids: list[str] = []
        frame_times: list[float | None] = []
        for i, row in zip(taken, rows, strict=True):
            head = heads[i]
            if isinstance(head, LiveLinkPacketError):
                self.drop(row, head.reason.value, str(head), now)
                continue
            device_id, subject, frame_time = head
            good.append(i)
            senders.append(row)
            keys.append(subject or device_id or "livelink")
            device_ids.append(device_id)
            frame_times.append(frame_time)
        if not good:
            return
        frames = values if len(good) == n else values[np.array(good, np.intp)]
        if clamped is not None:
            for row, count in zip(senders, clamped[good].tolist(), strict=True):
                self.clamped(row, count)
        self.deliver(senders, keys, keys, frames[:, :ARKIT_COUNT],
                     frames[:, ARKIT_COUNT:], device_ids, frame_times, now)  # fmt: skip


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

    def decode(self, data: bytes, row: int, now: float) -> None:
        """Feed the sender's VMC decoder; every ``Apply`` in the datagram gives a frame."""
        decoder: vmc.VmcDecoder = self.peers.state[row]
        try:
            result = decoder.feed_datagram(data)
        except vmc.VmcPacketError as exc:
            self.drop(row, exc.reason.value, str(exc), now)
            return
        for reason, n in result.issues.items():
            detail = ", ".join(result.unknown_names) if reason == "unknown_name" else "messages"
            self.drop(row, reason, detail, now, n)
        self.clamped(row, result.clamped)
        host = self._host(row)
        for frame in result.frames:
            self.emit_frame(row, host, self.name, frame.arkit, frame.rotations)


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

    def heard(self, rows: I64) -> U8 | None:
        """With a phone configured, only that phone's address is heard."""
        if self._phone_ip is None:
            return None
        return np.array([self._host(row) == self._phone_ip for row in rows.tolist()], np.uint8)

    def decode(self, data: bytes, row: int, now: float) -> None:
        """One iFacialMocap text frame: unknown names are counted, the rest delivered."""
        try:
            frame = ifacialmocap.parse_frame(data, degrees_per_unit=self._degrees_per_unit)
        except ifacialmocap.IfmFrameError as exc:
            self.drop(row, exc.reason.value, str(exc), now)
            return
        if frame.unknown:
            self.drop(row, "unknown_name", ", ".join(frame.unknown[:8]), now, len(frame.unknown))
        self.clamped(row, frame.clamped)
        self._last_frame = now
        self.emit_frame(row, self._host(row), self.name, frame.arkit, frame.rotations)


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

    def decode(self, data: bytes, row: int, now: float) -> None:
        """One msgpack publish message: a hello is remembered, a capture delivered."""
        decoder: PublishDecoder = self.peers.state[row]
        try:
            out = decoder.feed(data)
        except PublishDropError as exc:
            self.drop(row, exc.reason, str(exc), now)
            return
        if isinstance(out, PublishFrame):
            if out.unknown:
                self.drop(row, "unknown_name", f"{out.unknown} names", now, out.unknown)
            self.clamped(row, out.clamped)
            pid = str(out.pid)
            self.emit_frame(row, pid, f"publish-{pid}", out.arkit, out.rotations, frame_time=out.t)
        elif isinstance(out, Ping):
            address = self.peers.address[row]
            if address is not None:
                self.send(encode_pong(out.nonce, out.t_ms), address)
        elif isinstance(out, PublishHello):
            self.peers.key[row] = str(out.pid)


def with_port(config: ReceiverConfig, host: str, port: int) -> ReceiverConfig:
    """A copy of a receiver's config bound elsewhere (ports are the usual override)."""
    return replace(config, host=host, port=port)
