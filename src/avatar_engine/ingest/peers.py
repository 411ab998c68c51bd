"""The senders a datagram receiver tracks, as columns: one row per sender.

A burst of a hundred phones' datagrams is admitted, rate-limited and counted by three kernel
calls over the whole burst (:mod:`avatar_engine.ingest.admission`: native loops, a Python
reference) instead of a hundred objects' method calls (principle 2; the Python per datagram
was the largest part of capture-to-frame, docs/performance.md). What is per datagram by nature
stays Python: the address-to-row lookup (one dict probe each) and the rare paths (a new
sender, a drop).

Each row holds a sender's two token buckets (packets, frames), its counters and frame-rate
window (:meth:`PeerTable.snapshot` gives the JSON of
:meth:`~avatar_engine.ingest.stats.SourceStats.snapshot`), and its decoder state. The table
holds ``max_peers`` senders between batches; a batch may bring new ones past that, and the
least recently heard are forgotten when the batch is done, so a row never changes hands in the
middle of a batch. The bound is ``max_peers`` plus one batch of rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from avatar_engine.ingest.admission import admission_backend
from avatar_engine.ingest.recv_batch import Address
from avatar_engine.ingest.stats import RATE_WINDOW, source_snapshot, window_rate_hz
from avatar_engine.types import I64, U8


def peer_label(address: Address) -> str:
    """``host:port``: how stats and logs name a sender."""
    return f"{address[0]}:{address[1]}" if len(address) >= 2 else str(address)


class PeerTable:
    """Rows of per-sender state, looked up by address for a whole batch at once; the columns
    are what the admission kernels read and write (by name)."""

    __slots__ = (
        "_free",
        "_index",
        "_kernels",
        "address",
        "bytes",
        "clamped",
        "drops",
        "frame_burst",
        "frame_last",
        "frame_rate",
        "frame_tokens",
        "frames",
        "key",
        "label",
        "last_seen",
        "max_peers",
        "new_state",
        "packet_burst",
        "packet_last",
        "packet_rate",
        "packet_tokens",
        "packets",
        "seq",
        "session",
        "size",
        "state",
        "used",
        "window_count",
        "window_rate",
        "window_start",
    )

    def __init__(
        self,
        max_peers: int,
        batch: int,
        packet_limit: tuple[float, float],
        frame_limit: tuple[float, float],
        new_state: Callable[[], Any],
        backend: str | None = None,
    ) -> None:
        """``packet_limit`` and ``frame_limit`` are (rate per second, burst) of the two buckets;
        ``new_state`` makes a new sender's decoder state; ``batch`` is the most datagrams one
        :meth:`rows_for` call is given; ``backend`` forces the kernels' (``native``, else the
        reference)."""
        for rate, burst in (packet_limit, frame_limit):
            if not (rate > 0 and burst >= 1):
                raise ValueError("rate must be > 0 and burst >= 1")
        self.max_peers = max_peers
        self.packet_rate, self.packet_burst = (float(v) for v in packet_limit)
        self.frame_rate, self.frame_burst = (float(v) for v in frame_limit)
        self.new_state = new_state
        self._kernels = admission_backend(backend)
        self.size = size = max_peers + batch
        self._index: dict[Address, int] = {}
        self._free = list(range(size - 1, -1, -1))
        self.seq = 0
        """Datagrams counted so far: ``used`` stamps each row with its latest (LRU order)."""
        self.address: list[Address | None] = [None] * size
        self.label: list[str] = [""] * size
        self.state: list[Any] = [None] * size
        self.key: list[str] = [""] * size
        self.session: list[str | None] = [None] * size
        self.drops: list[dict[str, int]] = [{} for _ in range(size)]
        self.used = np.zeros(size, np.int64)
        self.packet_tokens = np.zeros(size)
        self.packet_last = np.zeros(size)
        self.frame_tokens = np.zeros(size)
        self.frame_last = np.zeros(size)
        self.packets = np.zeros(size, np.int64)
        self.bytes = np.zeros(size, np.int64)
        self.frames = np.zeros(size, np.int64)
        self.clamped = np.zeros(size, np.int64)
        self.last_seen = np.zeros(size)
        self.window_start = np.full(size, np.nan)
        """NaN: no frame yet (SourceStats' None)."""
        self.window_count = np.zeros(size, np.int64)
        self.window_rate = np.zeros(size)

    def __len__(self) -> int:
        return len(self._index)

    def rows(self) -> list[int]:
        """The rows of the senders held now, in the order they were first heard."""
        return list(self._index.values())

    # -- a batch ----------------------------------------------------------------------------

    def rows_for(self, addresses: list[Address], now: float) -> I64:
        """The row of each datagram's sender; a new sender gets a fresh row, its buckets full."""
        index = self._index
        found = [index.get(a, -1) for a in addresses]
        if -1 in found:
            for i, row in enumerate(found):
                if row == -1:  # looked up again: the same new sender may come twice
                    found[i] = index.get(addresses[i], -1)
                    if found[i] == -1:
                        found[i] = self._add(addresses[i], now)
        return np.array(found, np.int64)

    def admit(self, rows: I64, sizes: I64, heard: U8, max_size: int, now: float) -> tuple[U8, int]:
        """Count each datagram against its sender and give its status
        (:mod:`~avatar_engine.ingest.admission`: admitted, too large, not heard, rate limited)
        and how many were admitted."""
        status = np.empty(len(rows), np.uint8)
        admitted = self._kernels.admit_datagrams(self, rows, sizes, heard, max_size, now, status)
        return status, admitted

    def take_frames(self, rows: I64, now: float) -> tuple[U8, int]:
        """One frame token per entry of ``rows``, in order: which got one (1), and how many."""
        ok = np.empty(len(rows), np.uint8)
        return ok, self._kernels.take_frames(self, rows, now, ok)

    def count_frames(self, rows: I64, now: float) -> None:
        """Frames delivered at ``now``, one per entry of ``rows``: counted and the rate windows
        moved on, as :meth:`SourceStats.frames_at` per sender."""
        self._kernels.count_frames(self, rows, now, RATE_WINDOW)

    def forget_oldest(self) -> None:
        """After a batch: forget the least recently heard senders beyond ``max_peers``."""
        excess = len(self._index) - self.max_peers
        if excess <= 0:
            return
        held = np.array(self.rows(), np.int64)
        oldest = held[np.argpartition(self.used[held], excess - 1)[:excess]]
        for row in oldest.tolist():
            address = self.address[row]
            assert address is not None
            del self._index[address]
            self.address[row] = None
            self.state[row] = None
            self._free.append(row)

    # -- one sender -------------------------------------------------------------------------

    def _add(self, address: Address, now: float) -> int:
        row = self._free.pop()  # never empty: max_peers between batches, one batch's more
        self._index[address] = row
        self.address[row] = address
        self.label[row] = peer_label(address)
        self.state[row] = self.new_state()
        self.key[row] = ""
        self.session[row] = None
        self.drops[row] = {}
        self.packet_tokens[row] = self.packet_burst
        self.packet_last[row] = now
        self.frame_tokens[row] = self.frame_burst
        self.frame_last[row] = now
        for column in (self.packets, self.bytes, self.frames, self.clamped, self.window_count):
            column[row] = 0
        self.window_start[row] = np.nan
        self.window_rate[row] = 0.0
        return row

    def snapshot(self, row: int, now: float) -> dict[str, Any]:
        """The sender's counters as :meth:`SourceStats.snapshot` gives them (``/stats``)."""
        start = float(self.window_start[row])
        rate = window_rate_hz(None if np.isnan(start) else start, float(self.window_rate[row]), now)
        counts = (int(self.packets[row]), int(self.bytes[row]), int(self.frames[row]),
                  int(self.clamped[row]))  # fmt: skip
        return source_snapshot(self.key[row], self.session[row], counts, rate,
                               float(self.last_seen[row]), self.drops[row], now)  # fmt: skip
