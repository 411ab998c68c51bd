"""Data-channel messages without aiortc's per-message task: the one module that reaches into
aiortc's SCTP, DTLS and ICE internals.

aiortc's ``RTCDataChannel.send`` queues the message and schedules a task
(``ensure_future(_data_channel_flush())``) that walks nine coroutines down to the UDP socket; a
received packet goes from the socket through an ``asyncio.Queue`` to the DTLS task, then through
SCTP's chunk objects and an event emitter. Per viewer per frame that is most of the cost of a
WebRTC viewer, on the server and on a load generator alike. What a small unordered message
really needs is one DATA chunk, one DTLS record and one ``sendto``; what a receiver needs is one
DTLS decryption, the chunk's header, and a SACK for every second packet (RFC 9260 6.2, as
browsers' SCTP stacks do).

:class:`DatagramPath` sends one SCTP packet through a connected peer's DTLS and ICE path
synchronously. :class:`FastSender` sends a small message on an unordered channel in the calling
step, booking the chunk exactly where aiortc's own ``_send``/``_transmit`` would (TSN, sent
queue, flight size, T3 timer), so aiortc's SACK, abandonment and FORWARD TSN handling see no
difference; anything outside that simple case (association not established, data queued ahead,
congestion window full, a large or ordered message) goes through ``channel.send`` as before.
:class:`LeanReceiver` takes a peer's incoming datagrams for itself: an in-order, single-chunk
DATA packet is decrypted, handed to a callback and acknowledged here; everything else (STUN,
other chunks, out-of-order TSNs) goes to aiortc's own code as before.

These are aiortc's private attributes, so they are used only with an aiortc release this was
tested against (:data:`AIORTC_TESTED`): with another one :func:`internals_ok` is False, senders
and receivers fall back to aiortc's public path and a warning is logged once, and
``tests/test_rtc_datapath.py`` fails until the new release is checked and added.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from array import array
from collections.abc import Callable, Iterable
from functools import cache, partial
from importlib.metadata import version
from typing import Any, Final

from aiortc.rtcdatachannel import RTCDataChannel
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    SCTP_DATA_UNORDERED,
    USERDATA_MAX_LENGTH,
    WEBRTC_BINARY,
    DataChunk,
    RTCSctpTransport,
    tsn_plus_one,
)
from aiortc.utils import uint32_gt, uint32_gte
from google_crc32c import value as crc32c
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from avatar_engine.kernels.backends import require_native, resolve_backend

log = logging.getLogger("avatar_engine.rtc_datapath")

AIORTC_TESTED: Final = ("1.16.",)
"""aiortc release prefixes whose internals this module was checked against."""
_new_chunk = object.__new__
_UNORDERED_WHOLE: Final = SCTP_DATA_UNORDERED | SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG
_ESTABLISHED: Final = RTCSctpTransport.State.ESTABLISHED
_DTLS_CONNECTED: Final = DtlsState.CONNECTED
_HEADER = struct.Struct("!HHL")
_CHECKSUM = struct.Struct("<L")
_DATA = struct.Struct("!BBHLHHL")
_SACK = struct.Struct("!BBHLLHH")
_BINARY: Final = WEBRTC_BINARY.to_bytes(4, "big")
_DATA_HEAD: Final = 28
"""Common header (12 bytes) and a DATA chunk's header (16 bytes)."""
_ROW = struct.Struct("=QQiHH12s28s")
"""A peer's row for ``_core.rtc_send_group`` (see ``native/src/register_rtc.cpp``)."""
PYOPENSSL_TESTED: Final = ("26.",)
CRYPTOGRAPHY_TESTED: Final = ("50.",)
"""pyOpenSSL and cryptography release prefixes the native group send was checked with: it
reaches their private ``Connection._ssl``/``_from_ssl`` and the OpenSSL in their cffi binding."""
SACK_EVERY: Final = 2
"""A lean receiver acknowledges every second packet (RFC 9260 6.2's delayed SACK)."""


@cache
def internals_ok() -> bool:
    """True when the installed aiortc is one this module was tested against (else the public,
    slower path is used everywhere, and this is logged once)."""
    installed = version("aiortc")
    ok = installed.startswith(AIORTC_TESTED)
    if not ok:
        log.warning(
            "aiortc %s is not one the data-channel fast path was tested with (%s): using "
            "aiortc's own send and receive",
            installed,
            ", ".join(AIORTC_TESTED),
        )
    return ok


@cache
def native_ok() -> bool:
    """True when frames may go through the native group send (:func:`send_to_peers`): the
    native backend is chosen, aiortc's internals are known, and the pyOpenSSL and cryptography
    releases are ones it was tested with (else the Python reference sends, and this is logged
    once)."""
    if not internals_ok() or resolve_backend(None) != "native":
        return False
    if not hasattr(require_native(), "rtc_send_group"):
        return False  # a build without POSIX sockets
    installed = {name: version(name) for name in ("pyOpenSSL", "cryptography")}
    ok = installed["pyOpenSSL"].startswith(PYOPENSSL_TESTED) and installed[
        "cryptography"
    ].startswith(CRYPTOGRAPHY_TESTED)
    if not ok:
        log.warning(
            "pyOpenSSL %s / cryptography %s are not releases the native WebRTC send was "
            "tested with (%s / %s): sending frames from Python",
            installed["pyOpenSSL"],
            installed["cryptography"],
            ", ".join(PYOPENSSL_TESTED),
            ", ".join(CRYPTOGRAPHY_TESTED),
        )
    return ok


def _address_of(cdata: Any) -> int:
    """The address a cffi pointer (or function) holds, as an int."""
    return int(_ffi.cast("uintptr_t", _ffi.cast("void *", cdata)))


@cache
def _openssl_functions() -> tuple[int, int, int]:
    """``SSL_write``, ``BIO_read`` and ``ERR_clear_error`` of the OpenSSL that holds
    pyOpenSSL's sessions (cryptography's, reached only through its cffi binding)."""
    return (_address_of(_lib.SSL_write), _address_of(_lib.BIO_read),
            _address_of(_lib.ERR_clear_error))  # fmt: skip


@cache
def _openssl_readers() -> tuple[int, int, int, int]:
    """``BIO_write``, ``SSL_read``, ``SSL_get_error`` and ``ERR_clear_error`` of that OpenSSL
    (for ``_core.rtc_open``)."""
    return (_address_of(_lib.BIO_write), _address_of(_lib.SSL_read),
            _address_of(_lib.SSL_get_error), _address_of(_lib.ERR_clear_error))  # fmt: skip


def _sockaddr(host: str, port: int) -> bytes | None:
    """``struct sockaddr_in``/``sockaddr_in6`` of an address (None: a scoped IPv6 one)."""
    family = struct.pack("=H", socket.AF_INET)
    with contextlib.suppress(OSError):
        return family + port.to_bytes(2, "big") + socket.inet_pton(socket.AF_INET, host) + bytes(8)
    if "%" in host:
        return None
    family = struct.pack("=H", socket.AF_INET6)
    ip = socket.inet_pton(socket.AF_INET6, host)
    return family + port.to_bytes(2, "big") + bytes(4) + ip + bytes(4)


def sctp_packet(sctp: RTCSctpTransport, chunk: bytes) -> bytes:
    """One SCTP packet of ``chunk`` on ``sctp``'s association, with its CRC32c."""
    header = _HEADER.pack(sctp._local_port, sctp._remote_port, sctp._remote_verification_tag)
    return header + _CHECKSUM.pack(crc32c(header + b"\0\0\0\0" + chunk)) + chunk


def data_chunk(tsn: int, stream: int, data: bytes) -> bytes:
    """One unordered, whole, binary DATA chunk of ``data`` (padded to 4 bytes)."""
    length = 16 + len(data)
    body = _DATA.pack(0, _UNORDERED_WHOLE, length, tsn, stream, 0, WEBRTC_BINARY) + data
    return body + b"\0" * (-length % 4)


def chunk_template(channel: RTCDataChannel) -> dict[str, Any]:
    """The attributes of a DATA chunk of ``channel`` as aiortc's ``_send`` and ``_transmit``
    leave them once it is sent (per message only the TSN, data, size and send time differ)."""
    chunk = DataChunk(_UNORDERED_WHOLE)
    chunk.stream_id = channel.id
    chunk.protocol = WEBRTC_BINARY
    chunk._abandoned = chunk._acked = chunk._retransmit = False
    chunk._in_flight = True
    chunk._book_size = 0
    chunk._expiry = None
    chunk._max_retransmits = channel.maxRetransmits
    chunk._misses = 0
    chunk._sent_count = 1
    chunk._sent_time = None
    return dict(vars(chunk))


class DatagramPath:
    """A connected peer's DTLS connection and nominated ICE pair: one SCTP packet in, one DTLS
    record out on the pair's UDP socket, in the calling step (aiortc does the same in a chain
    of coroutines)."""

    __slots__ = ("_open_args", "addr", "dtls", "protocol", "row", "ssl")

    def __init__(self, sctp: RTCSctpTransport) -> None:
        self.dtls = sctp.transport
        assert self.dtls._ssl is not None, "DTLS is connected"
        self.ssl: SSL.Connection = self.dtls._ssl
        pair = self.dtls.transport._connection._nominated[1]
        self.protocol: Any = pair.protocol
        """aioice's ``StunProtocol`` of the pair: its ``transport`` is the UDP socket."""
        self.addr: tuple[str, int] = pair.remote_addr
        native = native_ok()
        self.row = self.native_row(sctp, 0) if native else None
        """The peer's row for ``_core.rtc_seal_send`` (None: packets are sealed in Python)."""
        self._open_args = (
            (_address_of(self.ssl._ssl), _address_of(self.ssl._into_ssl), *_openssl_readers())
            if native
            else None
        )

    def open_record(self, record: bytes) -> bytes | None:
        """The SCTP packet a received DTLS record holds: b"" when it holds none (a partial
        record, an alert), None when the peer closed DTLS (native ``_core.rtc_open`` when
        :func:`native_ok`, else pyOpenSSL's ``bio_write`` and ``recv``)."""
        if self._open_args is not None:
            packet: bytes | None = require_native().rtc_open(record, *self._open_args)
            return packet
        ssl = self.ssl
        ssl.bio_write(record)
        try:
            return ssl.recv(2048)
        except SSL.ZeroReturnError:
            return None
        except SSL.Error:
            return b""

    def seal_send(self, packet: bytes) -> None:
        """:meth:`send_packet`, natively (``_core.rtc_seal_send``) when this peer has a row."""
        if self.row is None:
            self.send_packet(packet)
        elif self.writable():
            require_native().rtc_seal_send(packet, self.row, *_openssl_functions())

    def writable(self) -> bool:
        """The UDP transport is open and holds nothing unsent (a datagram sent around it
        would overtake what it holds)."""
        transport = self.protocol.transport
        return (
            transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
        )

    def native_row(self, sctp: RTCSctpTransport, stream: int) -> bytes | None:
        """This peer's 64-byte row for the native group send (``register_rtc.cpp``): its
        ``SSL*`` and write BIO, the UDP socket's descriptor, the SCTP common header and stream,
        the pair's ``sockaddr``; None if the address is not one the row can hold."""
        address = _sockaddr(*self.addr[:2])
        if address is None:
            return None
        header = _HEADER.pack(sctp._local_port, sctp._remote_port, sctp._remote_verification_tag)
        return _ROW.pack(
            _address_of(self.ssl._ssl),
            _address_of(self.ssl._from_ssl),
            self.protocol.transport.get_extra_info("socket").fileno(),
            stream,
            len(address),
            header + bytes(4),
            address,
        )

    def send_packet(self, packet: bytes) -> None:
        """Encrypt one SCTP packet as one DTLS record and send it (nothing once the DTLS
        connection is shut down: aiortc's own path reports the close)."""
        ssl = self.ssl
        transport = self.protocol.transport
        if transport is None or transport.is_closing():
            return
        try:
            ssl.send(packet)
            record = ssl.bio_read(2048)
        except SSL.Error:
            return
        transport.sendto(record, self.addr)


class FastSender:
    """Small messages on one unordered channel, sent in the calling step. It has the channel's
    ``readyState``, ``bufferedAmount`` and ``send``, so it stands where the channel would."""

    __slots__ = ("_channel", "_path", "_sctp", "_template", "fast", "lost", "row")

    def __init__(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        self._sctp: RTCSctpTransport = channel.transport
        self._path: DatagramPath | None = None
        self._template: dict[str, Any] = {}
        self.row: bytes | None = None
        """The peer's row for the native group send, once the fast path is open (None: this
        peer's frames are sent from Python)."""
        self.fast = 0
        """Messages sent on the fast path (the rest went through ``channel.send``)."""
        self.lost = 0
        """Messages the native send booked but could not send (a full socket buffer, an
        OpenSSL failure): lost as on a congested network, SCTP abandons them."""

    @property
    def readyState(self) -> str:  # noqa: N802 - the channel's (and the W3C API's) name
        """The channel's state."""
        return self._channel.readyState

    @property
    def bufferedAmount(self) -> int:  # noqa: N802
        """Bytes aiortc still queues for the channel (the fast path queues none)."""
        return self._channel.bufferedAmount

    def send(self, data: bytes) -> None:
        """Send ``data``: as one DATA chunk now when the association is idle enough, else
        through the channel (aiortc's queue and task)."""
        if not self.fast_now(data):
            self._channel.send(data)
            return
        path = self._path
        assert path is not None  # fast_now opened it
        tsn = self.book(data, time.time())
        path.send_packet(
            sctp_packet(self._sctp, data_chunk(tsn, self._template["stream_id"], data))
        )

    def book(self, data: bytes, now: float) -> int:
        """Book ``data`` as a DATA chunk sent at ``now`` (``time.time()``), where aiortc's
        ``_send`` and ``_transmit`` would book it (next TSN, sent queue, flight size, T3
        timer), so its SACK, retransmission and abandonment code finds it as its own, and
        counts it in :attr:`fast`; returns the chunk's TSN. Only after :meth:`fast_now` said
        True, before anything else is sent on the association."""
        sctp = self._sctp
        tsn = sctp._local_tsn
        chunk = _new_chunk(DataChunk)
        chunk.__dict__ = self._template | {
            "tsn": tsn,
            "user_data": data,
            "_book_size": len(data),
            "_sent_time": now,
        }
        sctp._local_tsn = (tsn + 1) & 0xFFFFFFFF  # aiortc's tsn_plus_one
        sctp._sent_queue.append(chunk)
        sctp._flight_size += len(data)  # _flight_size_increase of a chunk not yet in flight
        if sctp._t3_handle is None:
            sctp._t3_start()
        self.fast += 1
        return tsn

    def fast_now(self, data: bytes) -> bool:
        """True when ``data`` may go as one DATA chunk now: it fits in one chunk and
        :meth:`open_now`."""
        return 0 < len(data) <= USERDATA_MAX_LENGTH and self.open_now()

    def open_now(self) -> bool:
        """True when a message that fits in one chunk may go as one DATA chunk now: the
        association is up with nothing queued ahead or being abandoned, the congestion window
        has room, DTLS is connected and the UDP transport open and empty."""
        path = self._path
        if path is None:
            if not self._ready():
                return False
            path = self._path
            assert path is not None
        sctp = self._sctp
        return (
            sctp._association_state is _ESTABLISHED
            and not sctp._data_channel_queue
            and not sctp._outbound_queue
            and sctp._forward_tsn_chunk is None
            and sctp._flight_size < sctp._cwnd
            and path.dtls._state is _DTLS_CONNECTED
            and path.writable()
        )

    def _ready(self) -> bool:
        """Open the fast path once the association is up and the channel qualifies (unordered,
        no lifetime, a tested aiortc)."""
        channel = self._channel
        if (
            channel.ordered
            or channel.maxPacketLifeTime is not None
            or channel.id is None
            or self._sctp._association_state is not _ESTABLISHED
            or not internals_ok()
        ):
            return False
        self._path = DatagramPath(self._sctp)
        self._template = chunk_template(channel)
        if native_ok():
            self.row = self._path.native_row(self._sctp, channel.id)
        return True


def send_to_peers(senders: Iterable[FastSender], data: bytes) -> None:
    """``data`` to every sender's peer: one native call builds each packet with the peer's
    next TSN, encrypts it as one DTLS record and sends it (``_core.rtc_send_group``), then
    each chunk is booked in Python (aiortc's state is Python objects; booking after the sends
    keeps that work from delaying the later peers' frames). A sender whose fast path is not
    open now, or with no native row, sends through :meth:`FastSender.send` (the Python
    reference, or aiortc's queue); with :func:`native_ok` False, all do."""
    if not native_ok() or not 0 < len(data) <= USERDATA_MAX_LENGTH:
        for sender in senders:
            sender.send(data)
        return
    batch: list[FastSender] = []
    rows: list[bytes] = []
    tsns = array("I")
    now = time.time()
    for sender in senders:
        if sender.open_now() and (row := sender.row) is not None:
            tsns.append(sender._sctp._local_tsn)  # booked below, after the sends
            rows.append(row)
            batch.append(sender)
        else:
            sender.send(data)
    if not batch:
        return
    failed, _ = require_native().rtc_send_group(data, b"".join(rows), tsns, *_openssl_functions())
    for sender in batch:  # the last peer's frame went out before this Python work
        sender.book(data, now)
    for i in failed:
        batch[i].lost += 1


class LeanReceiver:
    """Takes a connected peer's incoming datagrams, for the two packets that come once per
    frame: a DTLS record holding one whole, unordered, binary DATA chunk with the next TSN goes
    to ``on_message(stream_id, payload)`` (a viewer; None: to aiortc) and is acknowledged every
    :data:`SACK_EVERY` packets (or by :meth:`flush_sack`, which a caller runs on a timer); a
    SACK that only moves the cumulative TSN over plainly sent chunks (no gap, no loss, nothing
    queued or abandoned: the server's steady state) is booked here as aiortc would book it.
    Anything else goes to aiortc: STUN to aioice's handler, other SCTP packets to the
    association (which sends its own SACK)."""

    __slots__ = ("_dtls13", "_originals", "_path", "_sctp", "fast", "on_message", "unacked")

    def __init__(self, sctp: RTCSctpTransport,
                 on_message: Callable[[int, bytes], None] | None) -> None:  # fmt: skip
        self._sctp = sctp
        self._path = DatagramPath(sctp)
        self._dtls13 = self._path.ssl.get_protocol_version_name() != "DTLSv1.2"
        """DTLS 1.3 may answer a record (an ACK); 1.2 never does after the handshake."""
        self.on_message = on_message
        self.unacked = 0
        self.fast = 0
        """Packets handled here (the rest went to aiortc)."""
        # Every local socket of the ICE agent, not only the nominated pair's: the peer may send
        # to another candidate pair that succeeded (aiortc reads them all).
        self._originals: list[tuple[Any, Callable[[bytes, Any], None]]] = []
        protocols: list[Any] = self._path.dtls.transport._connection._protocols
        for protocol in protocols:
            self._originals.append((protocol, protocol.datagram_received))
            protocol.datagram_received = partial(self._datagram, protocol.datagram_received)

    def close(self) -> None:
        """Give the datagrams back to aiortc."""
        for protocol, original in self._originals:
            protocol.datagram_received = original

    def _datagram(self, original: Callable[[bytes, Any], None], data: bytes, addr: Any) -> None:
        if not 19 < data[0] < 64:  # not DTLS (RFC 7983): STUN (consent checks) or other
            original(data, addr)
            return
        packet = self._path.open_record(data)
        if packet is None:  # the peer closed DTLS: aiortc's receive task closes too
            self.close()
            self._path.dtls.transport._connection._queue.put_nowait(None)
            return
        if self._dtls13 or not packet:  # (no whole record, an alert: nothing to hand on)
            with contextlib.suppress(SSL.Error):  # what OpenSSL sends back, if anything
                self._path.protocol.transport.sendto(self._path.ssl.bio_read(2048), self._path.addr)
        if not packet:
            return
        kind = packet[12] if len(packet) >= _DATA_HEAD else -1
        if (kind == 0 and self._take_data(packet)) or (kind == 3 and self._take_sack(packet)):
            self.fast += 1
            return
        self.unacked = 0  # aiortc acknowledges everything so far with this packet
        task = asyncio.ensure_future(self._sctp._handle_data(packet))
        task.add_done_callback(_log_failure)

    def _take_data(self, packet: bytes) -> bool:
        sctp = self._sctp
        length = (packet[14] << 8) | packet[15]
        last = sctp._last_received_tsn
        if (
            self.on_message is None
            or packet[13] & 7 != 7  # unordered, first and last fragment (else: aiortc's order)
            or packet[24:28] != _BINARY
            or 12 + length + (-length % 4) != len(packet)  # one chunk
            or last is None
            or int.from_bytes(packet[16:20], "big") != tsn_plus_one(last)
            or sctp._sack_misordered
        ):
            return False
        sctp._last_received_tsn = tsn_plus_one(last)
        self.on_message((packet[20] << 8) | packet[21], packet[_DATA_HEAD : 12 + length])
        self.unacked += 1
        if self.unacked >= SACK_EVERY:
            self.flush_sack()
        return True

    def _take_sack(self, packet: bytes) -> bool:
        """A SACK of nothing but a new cumulative TSN, booked as aiortc's
        ``_receive_sack_chunk`` would (which then finds nothing to send, retransmit, abandon or
        grow); any other case is aiortc's."""
        sctp = self._sctp
        cum = int.from_bytes(packet[16:20], "big")
        sent = sctp._sent_queue
        if (
            len(packet) != _DATA_HEAD  # gap blocks or duplicates
            or sctp._outbound_queue
            or sctp._data_channel_queue
            or sctp._reconfig_queue
            or sctp._forward_tsn_chunk is not None
            or sctp._forward_tsn_streams
            or sctp._fast_recovery_exit is not None
            or sctp._flight_size >= sctp._cwnd  # (aiortc would grow the window)
            or not uint32_gt(cum, sctp._last_sacked_tsn)
            or uint32_gt(sctp._advanced_peer_ack_tsn, sctp._last_sacked_tsn)
            or any(c._abandoned or c._retransmit or c._acked for c in sent)
        ):
            return False
        sctp._last_sacked_tsn = cum
        sctp._advanced_peer_ack_tsn = cum
        first = True
        while sent and uint32_gte(cum, sent[0].tsn):
            chunk = sent.popleft()
            sctp._flight_size_decrease(chunk)
            if first and chunk._sent_count == 1 and chunk._sent_time is not None:
                sctp._update_rto(time.time() - chunk._sent_time)
            first = False
        if not sent:
            sctp._t3_cancel()
        elif not first:
            sctp._t3_restart()
        return True

    def flush_sack(self) -> None:
        """Acknowledge every packet received so far (cumulative TSN, no gaps)."""
        sctp = self._sctp
        if not self.unacked or sctp._association_state is not _ESTABLISHED:
            return
        self.unacked = 0
        rwnd = max(0, sctp._advertised_rwnd)
        chunk = _SACK.pack(3, 0, 16, sctp._last_received_tsn, rwnd, 0, 0)
        self._path.seal_send(sctp_packet(sctp, chunk))


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("aiortc could not handle a packet: %r", exc)
