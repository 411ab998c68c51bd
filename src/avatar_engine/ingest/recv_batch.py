"""Read every datagram waiting on a UDP socket in one call (a capture burst in one pass).

asyncio's datagram transport reads one datagram per socket per loop iteration: a burst of a
hundred phones' packets costs a hundred passes of the event loop (about 30 us each here,
measured) before a tick can carry it. A receiver instead registers its socket with
``loop.add_reader`` and, when it becomes readable, takes everything queued with one call of
:func:`recv_batch` into preallocated rows.

The contract (:func:`recv_batch_reference`, in Python; the native twin ``_core.recv_batch`` in
``native/src/register_ingest.cpp`` does the same with one ``recvmmsg`` and the GIL released):
datagram ``i`` lands in ``buf[i, :sizes[i]]``, and the returned list holds each one's sender
address as Python's socket module gives it (``(host, port)`` for IPv4, ``(host, port,
flowinfo, scope_id)`` for IPv6). A datagram longer than a row is cut to the row (callers make a
row one byte longer than the largest datagram they accept, so a cut one is seen as too large).
At most ``len(buf)`` datagrams are read; an empty list means nothing was waiting. An error
other than "nothing waiting" after some datagrams ends the batch there; as the first result it
is raised (``OSError``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from avatar_engine.kernels.backends import require_native, resolve_backend

Address = tuple[Any, ...]
RecvBatch = Callable[[socket.socket, npt.NDArray[np.uint8], npt.NDArray[np.int64]], list[Address]]

MAX_BATCH: Final = 256
"""Datagrams one call reads at most: more than a burst of the phones one receiver serves, small
enough that one busy socket cannot hold the event loop for long."""
BATCH_BYTES: Final = 1 << 20
"""Upper bound of one receiver's row buffer; receivers of large datagrams get fewer rows."""


def batch_rows(row_bytes: int) -> int:
    """How many rows of ``row_bytes`` a receiver's buffer holds (1..:data:`MAX_BATCH`)."""
    return max(1, min(MAX_BATCH, BATCH_BYTES // max(1, row_bytes)))


def recv_batch_reference(
    sock: socket.socket, buf: npt.NDArray[np.uint8], sizes: npt.NDArray[np.int64]
) -> list[Address]:
    """The contract in Python (module docstring): one non-blocking ``recvfrom_into`` per row until
    nothing is waiting or the rows are full."""
    addresses: list[Address] = []
    for i in range(len(buf)):
        try:
            n, address = sock.recvfrom_into(buf[i], 0, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            if addresses:
                break
            raise
        sizes[i] = n
        addresses.append(tuple(address))
    return addresses


def recv_batch_native(
    sock: socket.socket, buf: npt.NDArray[np.uint8], sizes: npt.NDArray[np.int64]
) -> list[Address]:
    """The native twin (``_core.recv_batch``: one ``recvmmsg``, GIL released) on ``sock``."""
    addresses: list[Address] = require_native().recv_batch(sock.fileno(), buf, sizes)
    return addresses


def recv_backend(name: str | None = None) -> RecvBatch:
    """The batch reader of a kernel backend (``native``: one ``recvmmsg``, Linux only; any other:
    the reference), by default the fastest available, as for the engine's kernels."""
    if resolve_backend(name) == "native" and hasattr(require_native(), "recv_batch"):
        return recv_batch_native
    return recv_batch_reference
