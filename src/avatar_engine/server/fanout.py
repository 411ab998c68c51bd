"""Fan-out at the socket floor: a group's frame framed once, written to every viewer's socket in
one pass, with no task wake-up and no ASGI call per viewer per frame, and no Python work at all
for a viewer that keeps up.

Server-to-client WebSocket frames are unmasked (RFC 6455 5.1), so one frame's bytes serve every
viewer of a (session, LOD, mode, bits) group. :class:`StreamProtocol` is uvicorn's websockets
sans-I/O protocol with three changes for ``/sessions/{id}/stream`` connections only:

- it does not negotiate permessage-deflate (frames of a few dozen quantized bytes gain nothing
  from it, and a compressed frame differs per connection, so it could not be shared);
- it opens a :class:`DirectLink` to its transport and hands it to the ASGI app through a
  context variable the connection's ASGI task inherits (the app and the runtime need no new
  argument: a :class:`~avatar_engine.server.streams.Subscriber` made for a WebSocket stream
  picks it up);
- it marks the link blocked while its transport holds unsent bytes, while an ASGI send is in
  flight and once its close frame is sent, so a direct write never overtakes or follows a
  message the app's writer task sends.

Struct of arrays: every direct link of the process is a row of :data:`LINKS` (descriptor,
*blocked* bits, frames written directly), and each group keeps its viewers' rows in an array
(:class:`~avatar_engine.server.streams.ViewerSet`). The bits are the one place the "may this
viewer take a direct write" state lives: the protocol sets and clears its bits, and the
viewer's outbox sets :data:`BLOCKED_OUTBOX` while anything waits in it (a control or voice
message, a frame, an awaited keyframe) or it is closed. :func:`offer_to_all` is then one
native call per group (:func:`group_backend`): per viewer with no bit set, one non-blocking
``send()`` and its counter up, GIL released; it returns only the exceptions. A blocked viewer's
frame goes to its outbox as before (latest wins, private keyframe after a loss) and its writer
task sends it; a short write's remainder, a full socket or a broken one go to that viewer's
transport as any write would. Every promise of the outbox (ordering, the stalled-viewer
bound, the counters: a direct write is counted as offered and sent, in the table) still
holds. Handshake, query parameters, JWT scopes and close codes stay in the ASGI app unchanged.
"""

from __future__ import annotations

import errno
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from functools import cache
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

import numpy as np
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from avatar_engine.kernels.backends import require_native, resolve_backend
from avatar_engine.types import B1, I32, I64, U8

if TYPE_CHECKING:
    from websockets.http11 import Request

    from avatar_engine.transport.outbox import Outbox

STREAM_PATH = re.compile(r"^/sessions/[^/]+/stream$")
"""The URL whose connections get a direct link (viewers' streams; publish and voice do not)."""

_LINK: ContextVar[DirectLink | None] = ContextVar("avatar_engine_direct_link", default=None)


def frame_header(size: int) -> bytes:
    """Header of one unmasked, final, binary server frame of ``size`` bytes (RFC 6455 5.2)."""
    if size < 126:
        return bytes((0x82, size))
    if size < 1 << 16:
        return struct.pack("!BBH", 0x82, 126, size)
    return struct.pack("!BBQ", 0x82, 127, size)


BLOCKED_CLOSED: Final = 1
"""The connection is lost, or its close frame was sent: nothing more may be written."""
BLOCKED_PAUSED: Final = 2
"""The transport holds unsent bytes (its high-water mark is 0): a write would overtake them."""
BLOCKED_ASGI: Final = 4
"""An ASGI send of this connection is in flight (awaiting the paused transport)."""
BLOCKED_OUTBOX: Final = 8
"""Something waits in the viewer's outbox (or it awaits a keyframe, or it is closed)."""


class LinkTable:
    """Every direct link of the process, as a struct of arrays: a row per link holds its socket's
    descriptor, its *blocked* bits (a write may go directly only while they are all clear) and
    the frames written directly to it. Rows are reused once a link is released; the arrays
    double when full (callers read them from here at each use)."""

    send_threads: int = 1
    """Threads a tick's pass writes with (``--send-threads``); a link's writes stay on one."""

    def __init__(self, capacity: int = 256) -> None:
        self.fd = np.full(capacity, -1, np.int32)
        self.blocked = np.full(capacity, BLOCKED_CLOSED, np.uint8)
        self.sent = np.zeros(capacity, np.int64)
        self._free = list(range(capacity - 1, -1, -1))

    def open(self, fd: int) -> int:
        """A row for a new link's socket ``fd`` (no bit set, nothing sent yet)."""
        if not self._free:
            n = len(self.fd)
            self.fd = np.concatenate([self.fd, np.full(n, -1, np.int32)])
            self.blocked = np.concatenate([self.blocked, np.full(n, BLOCKED_CLOSED, np.uint8)])
            self.sent = np.concatenate([self.sent, np.zeros(n, np.int64)])
            self._free = list(range(2 * n - 1, n - 1, -1))
        row = self._free.pop()
        self.fd[row], self.blocked[row], self.sent[row] = fd, 0, 0
        return row

    def release(self, row: int) -> None:
        """Free a row (its link is closed and no group lists it any more)."""
        self.fd[row], self.blocked[row], self.sent[row] = -1, BLOCKED_CLOSED, 0
        self._free.append(row)


LINKS = LinkTable()
"""The process's direct links (one event loop per process: only its thread touches them)."""


class DirectLink:
    """One stream connection's row in :data:`LINKS`, for frames that bypass the ASGI send.

    The row is released when the connection is lost and no group lists the link (a group
    holds it from its viewer's join to its leave: :meth:`hold`, :meth:`drop`), so a row a group
    still writes to always belongs to this connection.
    """

    __slots__ = ("_final_sent", "_holds", "asgi_sending", "protocol", "row", "transport")

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self.protocol = protocol
        self.transport = protocol.transport
        self.row = LINKS.open(self.transport.get_extra_info("socket").fileno())
        """This link's row in :data:`LINKS` (-1 once released)."""
        self.asgi_sending = 0
        """ASGI sends of this connection in flight (:data:`BLOCKED_ASGI` while any)."""
        self._holds = 0
        self._final_sent = 0

    def block(self, bit: int, on: bool) -> None:
        """Set (``on``) or clear one of the ``BLOCKED_*`` bits of this link's row."""
        if self.row >= 0:
            if on:
                LINKS.blocked[self.row] |= bit
            else:
                LINKS.blocked[self.row] &= ~bit & 0xFF

    @property
    def open(self) -> bool:
        """The connection is not lost and its close frame not sent."""
        return self.row >= 0 and not LINKS.blocked[self.row] & BLOCKED_CLOSED

    @property
    def paused(self) -> bool:
        """The transport holds unsent bytes."""
        return self.row >= 0 and bool(LINKS.blocked[self.row] & BLOCKED_PAUSED)

    @property
    def frames_direct(self) -> int:
        """Frames written to this connection directly (counted by the send loop)."""
        return int(LINKS.sent[self.row]) if self.row >= 0 else self._final_sent

    def hold(self) -> None:
        """A group lists this link (its row must stay this connection's)."""
        self._holds += 1

    def drop(self) -> None:
        """A group no longer lists this link; release the row if the connection is gone."""
        self._holds -= 1
        self._release_if_unused()

    def lost(self) -> None:
        """The connection is gone (before its socket closes, so no write reaches another)."""
        self.block(BLOCKED_CLOSED, True)
        self._release_if_unused()

    def _release_if_unused(self) -> None:
        if self._holds <= 0 and self.row >= 0 and not self.open:
            self._final_sent = int(LINKS.sent[self.row])
            LINKS.release(self.row)
            self.row = -1

    def outbox_busy(self, busy: bool) -> None:
        """The viewer's outbox holds something (or awaits a keyframe, or is closed): frames go
        through it until it is empty again (:data:`BLOCKED_OUTBOX`)."""
        self.block(BLOCKED_OUTBOX, busy)

    def finish(self, wire: bytes, sent: int) -> None:
        """The kernel took ``sent`` bytes of a direct write (``-errno``: none). The transport's
        buffer was empty, so its write keeps the byte order: it sends the remainder (and then
        pauses this link until it has), or reports a broken socket and closes the connection,
        as any failed write does."""
        self.transport.write(wire[max(sent, 0) :])


class FrameChannel(Protocol):
    """What :class:`DataChannelLink` needs of an aiortc ``RTCDataChannel``."""

    @property
    def readyState(self) -> str:  # noqa: N802 - aiortc's (and the W3C API's) name
        """``"open"`` while frames can be sent."""

    @property
    def bufferedAmount(self) -> int:  # noqa: N802
        """Bytes queued in the channel and not yet sent (the backlog check)."""

    def send(self, data: bytes) -> None:
        """Queue one message on the channel (unreliable: a lost frame stays lost)."""

    @property
    def lost(self) -> int:
        """Frames the send path handed to the kernel and it refused (a full socket buffer):
        lost as on the network, the viewer sees a gap and gets a keyframe."""


SendMany = Callable[[list[Any], bytes], None]
"""Sends one message on many channels of one kind in one call (``rtc_datapath.send_to_peers``)."""


class DataChannelLink:
    """A WebRTC viewer's unreliable frames channel, for frames sent from the fan-out pass.

    Each peer's SCTP association and DTLS keys are its own, so the bytes on the wire differ
    per peer; what is shared is the one encoded message, and what is saved is the writer
    task's wake-up per viewer per frame. The pass claims a group's links (:meth:`claim`) and
    sends to all of them at once (:meth:`send_all`: one call of their ``send_many``, e.g. one
    native call for every WebRTC peer of the group).
    """

    __slots__ = ("_channel", "_limit", "send_many")

    def __init__(
        self, channel: FrameChannel, max_buffered: int, send_many: SendMany | None = None
    ) -> None:
        self._channel = channel
        self._limit = max_buffered
        self.send_many = send_many
        """Sends to many links' channels at once (None: one ``send`` each)."""

    def claim(self, outbox: Outbox) -> bool:
        """True when a frame may be sent now (the channel is open and not backed up, and
        nothing waits in the outbox: ``outbox.take_direct()`` counts it as sent); False leaves
        it to the outbox."""
        channel = self._channel
        return (
            channel.readyState == "open"
            and channel.bufferedAmount <= self._limit
            and outbox.take_direct()
        )

    @property
    def lost(self) -> int:
        """Frames the channel's send path lost (:attr:`FrameChannel.lost`)."""
        return self._channel.lost

    @staticmethod
    def send_all(links: list[DataChannelLink], message: bytes) -> None:
        """``message`` on every claimed link: one ``send_many`` call per kind of link."""
        by_sender: dict[SendMany | None, list[Any]] = {}
        for link in links:
            by_sender.setdefault(link.send_many, []).append(link._channel)
        for send_many, channels in by_sender.items():
            if send_many is None:
                for channel in channels:
                    channel.send(message)
            else:
                send_many(channels, message)


FrameLink = DirectLink | DataChannelLink
"""Where a viewer's frames may go straight from the fan-out pass."""


class Viewer(Protocol):
    """What the fan-out pass needs of a viewer (a
    :class:`~avatar_engine.server.streams.Subscriber`, which imports this module)."""

    @property
    def outbox(self) -> Outbox:
        """The viewer's outbox: a frame goes direct only while nothing waits in it."""

    @property
    def direct(self) -> FrameLink | None:
        """The viewer's direct link, or None when its frames always go through the outbox."""


V = TypeVar("V", bound=Viewer)


class ViewerSet(Generic[V]):
    """A group's viewers: a set (add, discard, clear, ``in``, iteration, ``len``) that also keeps
    each viewer's row in :data:`LINKS` in an array, in the same order as its list of viewers,
    for the one native call of a group's fan-out pass (-1: no direct link, e.g. WebRTC).

    A set made with ``holds`` (a group's) holds its viewers' links, so their rows are not
    reused while it lists them; one made for a single pass (from any iterable) does not.
    ``on_change`` is called after every add and removal (a :class:`GroupTable` built from the
    set is then stale).
    """

    __slots__ = ("_holds", "_index", "_on_change", "_rows", "members")

    def __init__(
        self,
        viewers: Iterable[V] = (),
        *,
        holds: bool = True,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.members: list[V] = []
        """The viewers, in the order of :meth:`rows` (swap-removal reorders them)."""
        self._index: dict[V, int] = {}
        self._rows = np.full(8, -1, np.int32)
        self._holds = holds
        self._on_change = on_change
        for viewer in viewers:
            self.add(viewer)

    def add(self, viewer: V) -> None:
        """Add a viewer (no change if it is already here)."""
        if viewer in self._index:
            return
        n = len(self.members)
        if n == len(self._rows):
            self._rows = np.concatenate([self._rows, np.full(n, -1, np.int32)])
        link = viewer.direct
        if type(link) is DirectLink:
            self._rows[n] = link.row
            if self._holds:
                link.hold()
        else:
            self._rows[n] = -1
        self._index[viewer] = n
        self.members.append(viewer)
        if self._on_change is not None:
            self._on_change()

    def discard(self, viewer: V) -> None:
        """Remove a viewer if it is here (the last one takes its place)."""
        i = self._index.pop(viewer, None)
        if i is None:
            return
        last = self.members.pop()
        n = len(self.members)
        if i < n:
            self.members[i] = last
            self._index[last] = i
            self._rows[i] = self._rows[n]
        self._rows[n] = -1
        link = viewer.direct
        if self._holds and type(link) is DirectLink:
            link.drop()
        if self._on_change is not None:
            self._on_change()

    def clear(self) -> None:
        """Remove every viewer."""
        for viewer in list(self.members):
            self.discard(viewer)

    def rows(self) -> I32:
        """The viewers' rows in :data:`LINKS`, in the order of :attr:`members`."""
        return self._rows[: len(self.members)]

    def __contains__(self, viewer: object) -> bool:
        return viewer in self._index

    def __iter__(self) -> Iterator[V]:
        return iter(list(self.members))

    def __len__(self) -> int:
        return len(self.members)


def current_link() -> DirectLink | None:
    """The direct link of the stream connection whose ASGI task is running, if any."""
    return _LINK.get()


def send_to_all_reference(wire: bytes, fds: I32) -> I64:
    """The contract of the bare send loop, in Python: one non-blocking write of ``wire`` to each
    socket in ``fds``; per socket the bytes the kernel took (a short write stays short), or
    ``-errno`` (``EAGAIN``: full; ``EPIPE``, ``ECONNRESET``...: broken).

    The native ``_core.send_to_all`` (``native/src/register_fanout.cpp``) does the same with
    ``send(MSG_DONTWAIT | MSG_NOSIGNAL)`` and the GIL released. ``os.write`` matches it here:
    the sockets are non-blocking (asyncio's) and Python ignores ``SIGPIPE``.
    """
    out = np.empty(len(fds), np.int64)
    for i, fd in enumerate(fds.tolist()):
        try:
            out[i] = os.write(fd, wire)
        except OSError as exc:
            out[i] = -(exc.errno or errno.EIO)
    return out


Buffer = bytes | bytearray | memoryview
"""Bytes a send pass reads (the encoder's tick buffer is a view of a bytearray)."""
SendToAll = Callable[[bytes, I32], I64]
SendGroup = Callable[[bytes, I32, I32, U8, I64], tuple[I64, I64, I64]]
SendGroups = Callable[[Buffer, I64, I64, I64, I32, LinkTable], tuple[I64, I64, I64]]


def send_group_reference(
    wire: bytes,
    members: I32,
    fds: I32,
    blocked: U8,
    sent: I64,
) -> tuple[I64, I64, I64]:
    """The contract of one group's fan-out pass, in Python. ``members``: rows of a link table
    (``fds``, ``blocked``, ``sent``), -1 for a viewer with no direct link. Each member whose row
    has no blocked bit takes one non-blocking write of ``wire`` and its ``sent`` count goes up
    (the frame is the link's, whatever the kernel did with it). Returns the positions in
    ``members`` the pass did not finish: (blocked or linkless; written short or not at all;
    and for the latter, the bytes the kernel took or ``-errno``, as
    :func:`send_to_all_reference`).

    The native ``_core.send_group`` does the same with the GIL released."""
    skip: list[int] = []
    fail: list[int] = []
    result: list[int] = []
    for i, row in enumerate(members.tolist()):
        if row < 0 or blocked[row]:
            skip.append(i)
            continue
        sent[row] += 1
        try:
            got = os.write(int(fds[row]), wire)
        except OSError as exc:
            got = -(exc.errno or errno.EIO)
        if got != len(wire):
            fail.append(i)
            result.append(got)
    return (np.array(skip, np.int64), np.array(fail, np.int64), np.array(result, np.int64))


def send_groups_reference(
    payload: Buffer,
    bounds: I64,
    order: I64,
    starts: I64,
    members: I32,
    links: LinkTable,
) -> tuple[I64, I64, I64]:
    """The contract of every group's pass of one tick in one call, straight from the encoder's
    tick buffer: for each message ``k`` in ``order`` (ascending), ``payload[bounds[k]:bounds[k
    + 1]]`` framed as one WebSocket message (:func:`frame_header`) is written to
    ``members[starts[k]:starts[k + 1]]`` (rows of ``links``), each as
    :func:`send_group_reference`; the positions returned are into ``members``, ascending. The
    native ``_core.send_groups`` does the same in one call with the GIL released (with many
    one-viewer groups, the per-group Python of building each wire cost more than its write),
    over ``links.send_threads`` threads (a link's writes on one, so its frames keep their
    order; the outcome is the same, which is why this reference runs one)."""
    if links.send_threads < 1:
        raise ValueError("send_groups: threads must be at least 1")
    fds, blocked, sent = links.fd, links.blocked, links.sent
    data = memoryview(payload).cast("B")
    edges, bounds_at, picks = starts.tolist(), bounds.tolist(), order.tolist()
    if len(bounds_at) < 1 or len(edges) != len(bounds_at):
        raise ValueError("send_groups: bounds and starts need one entry per message + 1")
    if bounds_at[0] < 0 or bounds_at[-1] > len(data):
        raise ValueError("send_groups: bounds must lie within the payload")
    if edges[0] != 0 or edges[-1] != len(members):
        raise ValueError("send_groups: starts must run from 0 to len(members)")
    if any(b < a for a, b in pairwise(edges)) or any(b < a for a, b in pairwise(bounds_at)):
        raise ValueError("send_groups: starts and bounds must not decrease")
    if any(not 0 <= k < len(edges) - 1 for k in picks) or any(b <= a for a, b in pairwise(picks)):
        raise ValueError("send_groups: order must be ascending message indices")
    skip: list[int] = []
    fail: list[int] = []
    result: list[int] = []
    for k in picks:
        a, b = edges[k], edges[k + 1]
        message = data[bounds_at[k] : bounds_at[k + 1]]
        wire = frame_header(len(message)) + message
        s, f, r = send_group_reference(wire, members[a:b], fds, blocked, sent)
        skip.extend((s + a).tolist())
        fail.extend((f + a).tolist())
        result.extend(r.tolist())
    return (np.array(skip, np.int64), np.array(fail, np.int64), np.array(result, np.int64))


@cache
def send_backend(name: str | None = None) -> SendToAll:
    """The bare send loop of a kernel backend (``native``: the C++ loop; any other: the
    reference), by default the fastest available, as for the engine's kernels
    (``AVATAR_ENGINE_BACKEND``)."""
    if resolve_backend(name) == "native":
        send: SendToAll = require_native().send_to_all
        return send
    return send_to_all_reference


@cache
def group_backend(name: str | None = None) -> SendGroup:
    """The fan-out pass of a kernel backend (``native``: the C++ pass; any other: the
    reference), by default the fastest available."""
    if resolve_backend(name) == "native":
        send: SendGroup = require_native().send_group
        return send
    return send_group_reference


@cache
def groups_backend(name: str | None = None) -> SendGroups:
    """Every group's pass of a tick in one call (``native``: the C++ pass; any other: the
    reference), by default the fastest available."""
    if resolve_backend(name) == "native":
        send: SendGroups = require_native().send_groups
        return send
    return send_groups_reference


class GroupTable:
    """Every group's viewer rows of one encoder as one table, for a tick's one native pass:
    message ``k`` (the encoder's stream ``k``) goes to ``sets[k]``, whose rows in :data:`LINKS`
    are ``members[starts[k]:starts[k + 1]]`` (``counts[k]`` of them; 0 for a stream nobody
    watches or a free slot; ``watched`` says which are not 0). Built when a group's viewers
    change (rare), read every tick: no Python work per group in the pass."""

    __slots__ = ("counts", "members", "sets", "starts", "watched")

    def __init__(self, sets: Sequence[ViewerSet[Any] | None]) -> None:
        self.sets = list(sets)
        rows = [s.rows() for s in self.sets if s is not None]
        self.counts = np.array([0 if s is None else len(s) for s in self.sets], np.int64)
        self.watched: B1 = self.counts > 0
        self.starts = np.zeros(len(self.sets) + 1, np.int64)
        np.cumsum(self.counts, out=self.starts[1:])
        self.members = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)


def offer_to_groups(
    table: GroupTable, payload: Buffer, bounds: I64, order: I64, keyframes: B1
) -> None:
    """:func:`offer_to_all` (without ``hold``) for many groups of one tick at once: message
    ``k`` (``payload[bounds[k]:bounds[k + 1]]``, unframed; a keyframe where ``keyframes[k]``) to
    ``table.sets[k]`` for each ``k`` in ``order`` (ascending), one native call for all their
    direct writes; the viewers it returns (blocked, linkless, written short) are handled one by
    one as in :func:`offer_to_all`."""
    skipped, failed, results = groups_backend()(
        payload, bounds, order, table.starts, table.members, LINKS
    )
    if not (len(skipped) or len(failed)):
        return
    data = memoryview(payload).cast("B")

    def message(k: int) -> bytes:
        return bytes(data[int(bounds[k]) : int(bounds[k + 1])])

    def viewers(k: int) -> ViewerSet[Any]:
        found = table.sets[k]
        assert found is not None  # a message with members has its set
        return found

    starts = table.starts
    owner = np.searchsorted(starts, failed, side="right") - 1
    for pos, k, got in zip(failed.tolist(), owner.tolist(), results.tolist(), strict=True):
        body = message(k)
        _finish_short(viewers(k), pos - int(starts[k]), frame_header(len(body)) + body, got)
    by_message: dict[int, list[int]] = {}
    owner = np.searchsorted(starts, skipped, side="right") - 1
    for pos, k in zip(skipped.tolist(), owner.tolist(), strict=True):
        by_message.setdefault(k, []).append(pos - int(starts[k]))
    for k, skip in by_message.items():  # a group's data channels are sent together
        _offer_skipped(viewers(k), skip, message(k), keyframe=bool(keyframes[k]), hold=False)


def _finish_short(viewers: ViewerSet[Any], i: int, wire: bytes, got: int) -> None:
    """Member ``i`` of a pass took ``got`` bytes of ``wire`` (or -errno): its transport goes on."""
    link = viewers.members[i].direct
    assert type(link) is DirectLink  # only linked rows are written
    link.finish(wire, got)


def _offer_skipped(
    viewers: ViewerSet[Any], skipped: list[int], message: bytes, *, keyframe: bool, hold: bool
) -> bool:
    """Members of a pass not written directly (blocked, or no direct link): a data channel
    claims the frame, or the outbox takes it; True when one waits for a keyframe after this."""
    members = viewers.members
    need = False
    claimed: list[DataChannelLink] = []
    for i in skipped:
        sub = members[i]
        outbox = sub.outbox
        link = sub.direct
        if isinstance(link, DataChannelLink) and link.claim(outbox):
            claimed.append(link)
            continue
        if hold and not keyframe and outbox.awaiting_keyframe:
            need = True
            continue
        outbox.offer_frame(message, keyframe=keyframe)
        need = need or outbox.awaiting_keyframe
    if claimed:
        DataChannelLink.send_all(claimed, message)
    return need


def offer_to_all(
    subscribers: ViewerSet[Any] | Iterable[Viewer], message: bytes, *, keyframe: bool,
    hold: bool = False,
) -> bool:  # fmt: skip
    """One group's frame to all its viewers in one pass: framed once, written directly to every
    viewer whose link has no blocked bit (one native call; no Python work per such viewer),
    offered to the outbox of every other.

    ``subscribers``: a group's :class:`ViewerSet`, or any iterable of viewers (a set is made
    for this pass). ``hold`` (relayed groups): a delta is not offered to a viewer waiting for a
    keyframe, and not counted as its skip. Returns True when a viewer is waiting for a keyframe
    after this.
    """
    viewers: ViewerSet[Any] = (
        subscribers if isinstance(subscribers, ViewerSet) else ViewerSet(subscribers, holds=False)
    )
    if not viewers.members:
        return False
    wire = frame_header(len(message)) + message
    skipped, failed, results = group_backend()(
        wire, viewers.rows(), LINKS.fd, LINKS.blocked, LINKS.sent
    )
    for i, got in zip(failed.tolist(), results.tolist(), strict=True):
        _finish_short(viewers, i, wire, got)
    return _offer_skipped(viewers, skipped.tolist(), message, keyframe=keyframe, hold=hold)


def offer_run_to_all(
    viewers: ViewerSet[Any], frames: Sequence[tuple[bytes, bool]], *, hold: bool
) -> bool:
    """Consecutive frames ``(message, keyframe)`` of one group, in order, to all its viewers
    (a relaying node catching up on a channel's backlog).

    One frame is :func:`offer_to_all`. Several are framed, joined into one wire and written by
    one group pass: each viewer that may take a direct write gets them all in one ``send()``
    (its count goes up by their number), so a burst costs a viewer about what one frame does.
    Every other viewer (blocked, waiting for a keyframe, WebRTC) is offered them one by one,
    exactly as one-frame passes would. Returns True when a viewer is waiting for a keyframe
    after this.
    """
    if len(frames) == 1:
        message, keyframe = frames[0]
        return offer_to_all(viewers, message, keyframe=keyframe, hold=hold)
    if not frames or not viewers.members:
        return False
    wire = b"".join(frame_header(len(m)) + m for m, _ in frames)
    rows = viewers.rows()
    skipped, failed, results = group_backend()(wire, rows, LINKS.fd, LINKS.blocked, LINKS.sent)
    written = np.ones(len(rows), bool)
    written[skipped] = False
    LINKS.sent[rows[written]] += len(frames) - 1  # the pass counted one frame each
    for i, got in zip(failed.tolist(), results.tolist(), strict=True):
        _finish_short(viewers, i, wire, got)
    skip = skipped.tolist()
    need = False
    for message, keyframe in frames:
        need = _offer_skipped(viewers, skip, message, keyframe=keyframe, hold=hold) or need
    return need


class StreamProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets sans-I/O protocol, plus a :class:`DirectLink` for stream URLs."""

    link: DirectLink | None = None
    _close_sent: bool = False

    def handle_connect(self, event: Request) -> None:
        """On a stream URL, open the connection's direct link (and refuse per-connection
        compression, so every viewer can share one framed message) before the ASGI app sees the
        connection; other URLs are uvicorn's as is."""
        if self.scheme != "ws" or not STREAM_PATH.match(event.path.partition("?")[0]):
            super().handle_connect(event)
            return
        self.conn.available_extensions = []  # no per-connection compression: shared bytes
        token = _LINK.set(self.open_link())  # copied into the ASGI task created below
        try:
            super().handle_connect(event)
        finally:
            _LINK.reset(token)

    def open_link(self) -> DirectLink:
        """The direct link of this connection. The transport pauses (holding the app's ASGI
        sends and direct writes) as soon as anything waits in user space: a viewer that does
        not keep up then gets the latest frame from its outbox instead of a queue of stale
        ones (uvicorn's default high-water mark is 64 KiB: seconds of frames)."""
        self.link = DirectLink(self)
        self.link.block(BLOCKED_CLOSED, self.close_sent)
        self.transport.set_write_buffer_limits(high=0)
        return self.link

    @property
    def close_sent(self) -> bool:
        """uvicorn's flag (its close frame is sent), which also blocks direct writes."""
        return self._close_sent

    @close_sent.setter
    def close_sent(self, value: bool) -> None:
        self._close_sent = value
        if value and self.link is not None:
            self.link.block(BLOCKED_CLOSED, True)

    def pause_writing(self) -> None:
        """The transport's buffer is over its mark: direct writes stop, frames go to the outbox."""
        super().pause_writing()
        if self.link is not None:
            self.link.block(BLOCKED_PAUSED, True)

    def resume_writing(self) -> None:
        """The buffer drained: direct writes may go again."""
        super().resume_writing()
        if self.link is not None:
            self.link.block(BLOCKED_PAUSED, False)

    def connection_lost(self, exc: Exception | None) -> None:
        """Mark the direct link closed before uvicorn tears the connection down."""
        if self.link is not None:
            self.link.lost()
        super().connection_lost(exc)

    async def send(self, message: Any) -> None:
        """The ASGI app's send, marked in progress so the fan-out pass does not write a frame
        into the middle of one."""
        link = self.link
        if link is None:
            await super().send(message)
            return
        link.asgi_sending += 1
        link.block(BLOCKED_ASGI, True)
        try:
            await super().send(message)
        finally:
            link.asgi_sending -= 1
            link.block(BLOCKED_ASGI, link.asgi_sending > 0)
