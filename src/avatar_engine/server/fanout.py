"""Fan-out at the socket floor: a group's frame framed once, written to every viewer's socket in
one pass, with no task wake-up and no ASGI call per viewer per frame.

Server-to-client WebSocket frames are unmasked (RFC 6455 5.1), so one frame's bytes serve every
viewer of a (session, LOD, mode, bits) group. :class:`StreamProtocol` is uvicorn's websockets
sans-I/O protocol with three changes for ``/sessions/{id}/stream`` connections only:

- it does not negotiate permessage-deflate (frames of a few dozen quantized bytes gain nothing
  from it, and a compressed frame differs per connection, so it could not be shared);
- it hands the ASGI app a :class:`DirectLink` to its transport, through a context variable the
  connection's ASGI task inherits (the app and the runtime need no new argument: a
  :class:`~avatar_engine.server.streams.Subscriber` made for a WebSocket stream picks it up);
- it counts ASGI sends in flight and pauses as soon as its transport holds unsent bytes, so a
  direct write never overtakes a message the app's writer task is still sending.

:func:`offer_to_all` writes the framed bytes straight to a viewer's socket when nothing is
waiting for that viewer (no control, voice or frame in its outbox, no keyframe awaited, an
empty transport buffer, no ASGI send in flight); otherwise the frame goes to the viewer's
outbox as before (latest wins, private keyframe after a loss), and its writer task sends it.
The direct writes of one group take one call of a native loop (:func:`send_backend`: one
non-blocking ``send()`` per socket, GIL released); a short write's remainder, a full socket
or a broken one go to that viewer's transport as any write would. So a viewer that keeps up
costs one system call and a few flag checks per frame, and every promise of the outbox
(ordering, the stalled-viewer bound, the counters) still holds: a direct write is counted as
offered and sent. Handshake, query parameters, JWT scopes and close codes stay in
the ASGI app unchanged.
"""

from __future__ import annotations

import errno
import os
import re
import struct
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from avatar_engine.kernels.backends import require_native, resolve_backend

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


class DirectLink:
    """One stream connection's transport, for frames that bypass the ASGI send. Its flags
    (with the viewer's outbox) decide whether a frame may go straight to the socket: see
    :func:`offer_to_all`."""

    __slots__ = ("asgi_sending", "fd", "open", "paused", "protocol", "transport")

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self.protocol = protocol
        self.transport = protocol.transport
        self.fd: int = self.transport.get_extra_info("socket").fileno()
        """The socket's descriptor, for the native send loop (valid while ``open``)."""
        self.open = True
        """False once the connection is lost (set by the protocol before its socket closes,
        so the descriptor written to is always this connection's)."""
        self.paused = False
        """The transport holds unsent bytes (set by the protocol: its high-water mark is 0)."""
        self.asgi_sending = 0
        """ASGI sends of this connection in flight (awaiting a paused transport)."""

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


class DataChannelLink:
    """A WebRTC viewer's unreliable frames channel, for frames sent from the fan-out pass.

    Each peer's SCTP association and DTLS keys are its own, so the bytes on the wire differ
    per peer and aiortc does that work per peer; what is shared is the one encoded message,
    and what is saved is the writer task's wake-up per viewer per frame.
    """

    __slots__ = ("_channel", "_limit")

    def __init__(self, channel: FrameChannel, max_buffered: int) -> None:
        self._channel = channel
        self._limit = max_buffered

    def try_write(self, message: bytes, outbox: Outbox) -> bool:
        """Send ``message`` now if the channel is open and not backed up and nothing waits in
        the outbox (``outbox.take_direct()`` counts it as sent); False leaves it to the outbox."""
        channel = self._channel
        if (
            channel.readyState == "open"
            and channel.bufferedAmount <= self._limit
            and outbox.take_direct()
        ):
            channel.send(message)
            return True
        return False


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


def current_link() -> DirectLink | None:
    """The direct link of the stream connection whose ASGI task is running, if any."""
    return _LINK.get()


def send_to_all_reference(wire: bytes, fds: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    """The contract of the fan-out's send loop, in Python: one non-blocking write of ``wire`` to
    each socket in ``fds``; per socket the bytes the kernel took (a short write stays short), or
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


SendToAll = Callable[[bytes, npt.NDArray[np.int32]], npt.NDArray[np.int64]]


@cache
def send_backend(name: str | None = None) -> SendToAll:
    """The send loop of a kernel backend (``native``: the C++ loop; any other: the reference),
    by default the fastest available, as for the engine's kernels (``AVATAR_ENGINE_BACKEND``)."""
    if resolve_backend(name) == "native":
        send: SendToAll = require_native().send_to_all
        return send
    return send_to_all_reference


def offer_to_all(
    subscribers: Iterable[Viewer], message: bytes, *, keyframe: bool, hold: bool = False
) -> bool:
    """One group's frame to all its viewers in one pass: framed once, written directly to every
    viewer that is keeping up (one native call for all their sockets), offered to the outbox of
    every other.

    ``hold`` (relayed groups): a delta is not offered to a viewer waiting for a keyframe, and
    not counted as its skip. Returns True when a viewer is waiting for a keyframe after this.
    """
    wire = frame_header(len(message)) + message
    need = False
    links: list[DirectLink] = []
    fds: list[int] = []
    for sub in subscribers:
        link = sub.direct
        outbox = sub.outbox
        if type(link) is DirectLink:
            # Straight to the socket only if nothing waits ahead of this frame: not in the
            # transport's buffer, not in an ASGI send, not in the outbox (take_direct, which
            # counts it as sent); and the connection is open. Inline: this runs per viewer.
            if (
                link.open
                and not link.paused
                and not link.asgi_sending
                and not link.protocol.close_sent
                and outbox.take_direct()
            ):
                links.append(link)
                fds.append(link.fd)
                continue
        elif isinstance(link, DataChannelLink) and link.try_write(message, outbox):
            continue
        if hold and not keyframe and outbox.awaiting_keyframe:
            need = True
            continue
        outbox.offer_frame(message, keyframe=keyframe)
        need = need or outbox.awaiting_keyframe
    if links:
        sent = send_backend()(wire, np.array(fds, np.int32))
        for i in np.flatnonzero(sent != len(wire)).tolist():
            links[i].finish(wire, int(sent[i]))
    return need


class StreamProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets sans-I/O protocol, plus a :class:`DirectLink` for stream URLs."""

    link: DirectLink | None = None

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
        self.transport.set_write_buffer_limits(high=0)
        return self.link

    def pause_writing(self) -> None:
        """The transport's buffer is over its mark: direct writes stop, frames go to the outbox."""
        super().pause_writing()
        if self.link is not None:
            self.link.paused = True

    def resume_writing(self) -> None:
        """The buffer drained: direct writes may go again."""
        super().resume_writing()
        if self.link is not None:
            self.link.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        """Mark the direct link closed before uvicorn tears the connection down."""
        if self.link is not None:
            self.link.open = False
        super().connection_lost(exc)

    async def send(self, message: Any) -> None:
        """The ASGI app's send, counted while in progress so the fan-out pass does not write a frame
        into the middle of one."""
        link = self.link
        if link is None:
            await super().send(message)
            return
        link.asgi_sending += 1
        try:
            await super().send(message)
        finally:
            link.asgi_sending -= 1
