"""Per-source counters: packets, frames, rate, last seen and drops per reason."""

from __future__ import annotations

from typing import Any, Final

RATE_WINDOW: Final = 1.0
"""Seconds per rate measurement window."""


class SourceStats:
    """Counters for one sender (or one receiver's totals).

    ``rate_hz`` is frames per second over the last complete window; it reads 0 once the
    source has been silent for two windows, so a dashboard shows a phone going away.
    """

    __slots__ = (
        "_window_count",
        "_window_rate",
        "_window_start",
        "bytes",
        "clamped",
        "drops",
        "frames",
        "key",
        "last_seen",
        "packets",
        "session_id",
    )

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.frames = 0
        self.clamped = 0
        self.drops: dict[str, int] = {}
        self.last_seen: float | None = None
        self.key = ""
        self.session_id: str | None = None
        self._window_start: float | None = None
        self._window_count = 0
        self._window_rate = 0.0

    def packet(self, size: int, now: float) -> None:
        """Count one datagram of ``size`` bytes from this source and note when it was seen."""
        self.packets_at(1, size, now)

    def packets_at(self, n: int, size: int, now: float) -> None:
        """Count ``n`` datagrams of ``size`` bytes in all that arrived at ``now`` (a burst)."""
        self.packets += n
        self.bytes += size
        self.last_seen = now

    def frame(self, now: float) -> None:
        """Count one accepted frame and update the frame rate measured over :data:`RATE_WINDOW`."""
        self.frames_at(now, 1)

    def frames_at(self, now: float, n: int) -> None:
        """Count ``n`` accepted frames that arrived at ``now`` (a burst): the same as ``n``
        calls of :meth:`frame`."""
        self.frames += n
        if self._window_start is None:
            self._window_start = now
        elapsed = now - self._window_start
        if elapsed >= RATE_WINDOW:
            self._window_rate = self._window_count / elapsed
            self._window_start = now
            self._window_count = 0
        self._window_count += n

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` refused packets of one reason."""
        self.drops[reason] = self.drops.get(reason, 0) + n

    def rate_hz(self, now: float) -> float:
        """Frames per second over the last window; 0 once the source has been silent for two
        windows."""
        return window_rate_hz(self._window_start, self._window_rate, now)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The source's counters as JSON-ready values (``/stats``), with the rate as of ``now``."""
        return source_snapshot(
            self.key, self.session_id, (self.packets, self.bytes, self.frames, self.clamped),
            self.rate_hz(now), self.last_seen, self.drops, now,
        )  # fmt: skip


def window_rate_hz(start: float | None, rate: float, now: float) -> float:
    """The rate of a window that started at ``start`` (None: no frame yet) as read at ``now``:
    its measured ``rate``, or 0 once the source has been silent for two windows."""
    if start is None or now - start >= 2 * RATE_WINDOW:
        return 0.0
    return rate


def source_snapshot(key: str, session: str | None, counts: tuple[int, int, int, int],
                    rate_hz: float, last_seen: float | None, drops: dict[str, int],
                    now: float) -> dict[str, Any]:  # fmt: skip
    """One source's ``/stats`` entry; ``counts`` are its packets, bytes, frames and clamped
    values (a :class:`SourceStats` and a row of the receivers' peer table both give this)."""
    packets, size, frames, clamped = counts
    return {
        "key": key,
        "session": session,
        "packets": packets,
        "bytes": size,
        "frames": frames,
        "rate_hz": round(rate_hz, 2),
        "last_seen_s_ago": None if last_seen is None else round(now - last_seen, 3),
        "clamped": clamped,
        "drops": dict(drops),
    }
