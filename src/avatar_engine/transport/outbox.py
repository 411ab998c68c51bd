"""Per-subscriber outbox: bounded, latest-wins for frames, never growing with a slow reader.

The tick encodes a frame once per stream group and offers the same bytes to every subscriber's
outbox. A subscriber whose writer has not taken the previous frame yet loses it (counted as a
skip) instead of queueing it, so a stalled client costs one frame slot and a few control
messages of memory, and never delays anyone else. After a skip, chained deltas would no longer
apply, so the outbox holds deltas back until the next keyframe reaches it and tells the owner
to ask for one.

PONGs are not counted as control messages: a client that pings in a burst is a client that
reads, and must not be dropped for it. They are bounded on their own
(:data:`MAX_PENDING_PONGS`): a reader that has filled them waits in :meth:`pong_room` until
the writer took them (it stops reading its socket: TCP backpressure), so a reading client
loses no PONG and a pinging client that does not read still costs bounded memory. A PONG
that arrives with no room anyway (a transport that cannot wait) is dropped and counted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

MAX_CONTROL_MESSAGES: Final = 32
"""Hello and events waiting for one subscriber; more means a dead reader."""
MAX_PENDING_PONGS: Final = 64
"""PONGs waiting for one subscriber; beyond this a PONG is dropped (``pongs_dropped``)."""
CLOSE_NOT_READING: Final = (1008, f"not reading: over {MAX_CONTROL_MESSAGES} control messages")
"""WebSocket close code and reason for a subscriber whose control messages overflowed."""
MAX_AUDIO_MESSAGES: Final = 100
"""Voice packets waiting for one subscriber (2 s of 20 ms packets; the server sends at most
about 0.3 s ahead). A reader that far behind loses the newest packets, counted, rather than
the connection: its client conceals the gap (docs/protocol.md 3.8)."""


class DirectPath(Protocol):
    """A path that bypasses the outbox for frames (the fan-out's direct link to a socket): it may
    be used only while the outbox holds nothing, and the frames it carried count as the
    outbox's offered and sent."""

    def outbox_busy(self, busy: bool) -> None:
        """The outbox started (True) or stopped (False) holding something, awaiting a keyframe
        or being closed."""

    @property
    def frames_direct(self) -> int:
        """Frames the path carried itself."""


class OutboxOverflowError(Exception):
    """Control messages piled up: the subscriber is not reading and will be disconnected."""


class Outbox:
    """What one subscriber's writer task sends next."""

    __slots__ = (
        "_audio_pending",
        "_awaiting",
        "_busy",
        "_control",
        "_direct",
        "_frame",
        "_offered",
        "_on_resync",
        "_pongs_pending",
        "_sent",
        "_taken",
        "_wake",
        "audio_dropped",
        "audio_sent",
        "close_reason",
        "closed",
        "frames_skipped",
        "pongs_dropped",
    )

    def __init__(self, on_resync: Callable[[], None] | None = None) -> None:
        self._control: deque[bytes] = deque()
        self._frame: bytes | None = None
        self._wake = asyncio.Event()
        self._on_resync = on_resync
        self._awaiting = False
        self.closed = False
        self.close_reason: tuple[int, str] | None = None
        """Set when the outbox closed itself (overflow): what the transport tells the peer."""
        self._offered = 0
        self._sent = 0
        self.frames_skipped = 0
        self._direct: DirectPath | None = None
        self._busy = False
        self._audio_pending = 0
        self.audio_sent = 0
        self.audio_dropped = 0
        self._pongs_pending = 0
        self._taken = asyncio.Event()
        self.pongs_dropped = 0

    def attach(self, path: DirectPath | None) -> None:
        """Let ``path`` carry frames while this outbox holds nothing (it is told each time that
        changes); its frames count as this outbox's."""
        self._direct = path
        if path is not None:
            path.outbox_busy(self._busy)

    @property
    def frames_offered(self) -> int:
        """Frames offered to this subscriber (through the outbox or its direct path)."""
        return self._offered + self._carried()

    @frames_offered.setter
    def frames_offered(self, value: int) -> None:  # subclasses that count for themselves
        self._offered = value - self._carried()

    @property
    def frames_sent(self) -> int:
        """Frames taken by the writer or carried by the direct path."""
        return self._sent + self._carried()

    @frames_sent.setter
    def frames_sent(self, value: int) -> None:
        self._sent = value - self._carried()

    def _carried(self) -> int:
        return self._direct.frames_direct if self._direct is not None else 0

    @property
    def awaiting_keyframe(self) -> bool:
        """A frame was lost: only a keyframe may follow."""
        return self._awaiting

    @awaiting_keyframe.setter
    def awaiting_keyframe(self, value: bool) -> None:
        self._awaiting = value
        self._changed()

    def _changed(self) -> None:
        """Tell the direct path when the outbox starts or stops holding anything."""
        busy = bool(self._control) or self._frame is not None or self._awaiting or self.closed
        if busy != self._busy:
            self._busy = busy
            if self._direct is not None:
                self._direct.outbox_busy(busy)

    def put_audio(self, message: bytes) -> None:
        """Queue a voice packet behind the control messages already queued (same reliable,
        ordered path: a hello before the packets it announces, a VOICE_CUT after the packets
        it cuts), bounded separately by :data:`MAX_AUDIO_MESSAGES`."""
        if self._audio_pending >= MAX_AUDIO_MESSAGES:
            self.audio_dropped += 1
            return
        self._audio_pending += 1
        self._control.append(message)
        self._changed()
        self._wake.set()

    def put_pong(self, message: bytes) -> None:
        """Queue a PONG in order with the control messages; never closes the outbox."""
        if self._pongs_pending >= MAX_PENDING_PONGS:
            self.pongs_dropped += 1
            return
        self._pongs_pending += 1
        self._control.append(message)
        self._changed()
        self._wake.set()

    async def pong_room(self) -> None:
        """Wait until a PONG fits: the writer took the pending ones, or the outbox closed."""
        while self._pongs_pending >= MAX_PENDING_PONGS and not self.closed:
            self._taken.clear()
            await self._taken.wait()

    def put_control(self, message: bytes) -> None:
        """Queue a control message (hello, event) in order; a subscriber that lets too many pile up
        is closed (not reading) and this raises :class:`OutboxOverflowError`."""
        pending = len(self._control) - self._audio_pending - self._pongs_pending
        if pending >= MAX_CONTROL_MESSAGES:
            self.close_reason = CLOSE_NOT_READING
            self.close()
            raise OutboxOverflowError("subscriber is not reading its control messages")
        self._control.append(message)
        self._changed()
        self._wake.set()

    def offer_frame(self, message: bytes, *, keyframe: bool) -> None:
        """Offer this tick's frame. Deltas only decode on top of every frame since the last
        keyframe, so once one is lost the outbox passes nothing but a keyframe."""
        self._offered += 1
        if keyframe:
            if self._frame is not None:
                self.frames_skipped += 1
            self._awaiting = False
        elif self._frame is not None or self._awaiting:
            self.frames_skipped += 1
            self._need_keyframe()
            return  # keep what is pending (still decodable); drop this delta
        self._frame = message
        self._changed()
        self._wake.set()

    def take_direct(self) -> bool:
        """May this tick's frame bypass the outbox (sent by the fan-out pass on a path that counts
        nothing itself, e.g. a data channel)? Only when nothing waits here, so every ordering
        the writer keeps still holds; counted as offered and sent."""
        if self._busy:
            return False
        self._offered += 1
        self._sent += 1
        return True

    def _need_keyframe(self) -> None:
        if not self._awaiting:
            self.awaiting_keyframe = True
            if self._on_resync is not None:
                self._on_resync()

    async def next_messages(self) -> tuple[list[bytes], bytes | None]:
        """Wait until something is pending, then take it all: (control messages, frame).

        Both empty means the outbox was closed. Transports with two channels (WebRTC) send the
        control messages reliably and the frame on the unreliable channel.
        """
        while not self._control and self._frame is None:
            if self.closed:
                return [], None
            self._wake.clear()
            await self._wake.wait()
        controls = list(self._control)
        self._control.clear()
        self.audio_sent += self._audio_pending
        self._audio_pending = 0
        self._pongs_pending = 0
        self._taken.set()
        frame, self._frame = self._frame, None
        if frame is not None:
            self._sent += 1
        self._changed()
        return controls, frame

    def close(self) -> None:
        """Close the outbox: the writer drains what it holds and stops; waiters wake up."""
        self.closed = True
        self._changed()
        self._wake.set()
        self._taken.set()
