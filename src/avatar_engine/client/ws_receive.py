"""The lean WebSocket viewers' receive pass: every ready viewer of a process read and counted
in one call per wake-up, so a load test's viewers cost far less CPU than the server they load.

A viewer process of :mod:`avatar_engine.client.lean` holds hundreds of raw sockets in one
``epoll`` set. Parsing each received chunk in Python costs about 17 us per frame (measured at
1,000 viewers x 60 fps: a whole core, as much as the server's fan-out), so on a small machine
the viewers and the server compete and the load test measures both. The pass here does the
whole wake-up in one native call (``_core.ViewerPass.poll`` in
``native/src/register_viewer.cpp``, the GIL released): ``epoll_wait``, one ``recv`` of up to
64 KiB per ready viewer, the WebSocket frame headers, the few msgpack fields for sequence gaps
and latency, the counters and the latencies, returned in bulk (:meth:`counters`,
:meth:`take_latencies`). Ready descriptors it does not serve (probe viewers, which decode
every frame in Python) come back to the caller.

The contract, shared with the Python reference (``lean.ReferenceReceivePass``, the per-viewer
parse of ``lean._Viewer`` and ``lean.MessageCounter``; parity tests run both on the same
server frames): per ready viewer one ``recv`` (level-triggered, so more waits for the next
wake-up); an incomplete frame is kept for the next ``recv``; BINARY frames are stream messages
(FIN is not checked: the server never fragments, and a first fragment's header fields are read
as those of a whole message; CONTINUATION and TEXT frames are skipped); PING is answered with a
masked PONG; CLOSE, end of stream or a receive error close the viewer (counted in ``closed``,
its descriptor leaves the ``epoll`` set; the caller owns and closes the socket); a masked frame
or one longer than :data:`MAX_FRAME` is not a server we can follow: counted in ``bad`` and
closed. A stream message whose fields are cut short or are not msgpack unsigned integers (or
exceed int64) is counted in ``bad`` and changes nothing else.
"""

from __future__ import annotations

import math
import select
import socket
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from avatar_engine.kernels.backends import native_module, require_native, resolve_backend

MAX_FRAME: Final = 1 << 20
"""The longest WebSocket frame a lean viewer accepts (a schema HELLO is a few KiB; frames are
tens of bytes); a longer one closes it (``kMaxFrame`` in the native pass)."""
PASS_COUNTERS: Final = ("frames", "bytes", "audio", "gaps", "viewers_with_gaps", "closed", "bad")
"""What a pass counts over the viewers it serves, in the native pass's order."""

Window = tuple[float, float, float]
"""(start, end, the server's monotonic start): frames received in [start, end) are counted."""


class OpenViewer(Protocol):
    """What a pass takes over from a viewer that finished its handshake."""

    sock: socket.socket
    buf: bytes
    last_seq: int
    last_t: int
    key_seq: int
    key_t: int


class NativeReceivePass:
    """The pass as one ``_core.ViewerPass.poll`` call per wake-up (Linux)."""

    def __init__(self, ep: select.epoll) -> None:
        self._ep = ep  # the pass waits on its descriptor: keep it open as long as the pass
        self._core = require_native().ViewerPass(ep.fileno())

    def add(self, viewer: OpenViewer) -> None:
        """Serve ``viewer`` (already in the ``epoll`` set) from now on, with its unparsed bytes
        and sequence state."""
        self._core.add(viewer.sock.fileno(), viewer.buf, viewer.last_seq, viewer.last_t,
                       viewer.key_seq, viewer.key_t)  # fmt: skip

    def poll(self, timeout_s: float, window: Window, now: float | None = None,
             ) -> tuple[float, list[int]]:  # fmt: skip
        """Wait up to ``timeout_s``, then read and count every ready viewer served here (the GIL
        released), each frame stamped ``now`` (None: the monotonic clock when the wait
        returned): (the stamp, the ready descriptors not served here)."""
        stamp, foreign = self._core.poll(timeout_s, *window, math.nan if now is None else now)
        return float(stamp), list(foreign)

    def counters(self) -> dict[str, int]:
        """The counts of :data:`PASS_COUNTERS` so far."""
        return dict(zip(PASS_COUNTERS, (int(c) for c in self._core.counters()), strict=True))

    def take_latencies(self) -> npt.NDArray[np.float32]:
        """The tick-to-receive latencies (ms) gathered since the last call, handed over."""
        out: npt.NDArray[np.float32] = self._core.take_latencies()
        return out


def native_receive_available() -> bool:
    """Whether the native pass is built here (Linux, ``_core`` loaded)."""
    core = native_module()
    return core is not None and hasattr(core, "ViewerPass")


def native_receive_wanted(name: str | None = None) -> bool:
    """Whether a process should use the native pass: the kernel backend's choice (``name``, the
    ``AVATAR_ENGINE_BACKEND`` environment variable or the fastest available) is ``native`` and
    the pass is built; otherwise the Python reference serves."""
    return resolve_backend(name) == "native" and native_receive_available()
