"""Rate limiting and rate-limited logging, both on an injectable clock.

A token bucket per sender cuts floods before any parsing is spent on them; a log limiter keeps
a garbage flood from turning into a log flood. Both take ``now`` as an argument so tests step
time instead of sleeping.
"""

from __future__ import annotations

import logging
from typing import Final

DEFAULT_LOG_INTERVAL: Final = 5.0
"""Seconds between two log lines for the same (source, reason)."""


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; one token per accepted packet.

    A phone sending 60 fps against ``rate=90`` never runs dry (jitter is absorbed by the
    burst); a flood at 10x the declared rate gets ``rate`` packets per second through and
    the rest are refused without being parsed.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not (rate > 0 and burst >= 1):
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        """Take one token if there is one (refill first for the time since the last call); False
        means refuse this packet unparsed."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


DEFAULT_MAX_LINES: Final = 20
"""Log lines per ``interval`` across all keys of one limiter."""


class LogLimiter:
    """Logs at most one line per ``interval`` per key, and at most ``max_lines`` per
    ``interval`` in total (a flood from thousands of spoofed ports has thousands of keys);
    a line says how many similar ones were suppressed."""

    __slots__ = ("_budget", "_last", "_logger", "_max_keys", "_suppressed", "interval")

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_LOG_INTERVAL,
        max_keys: int = 1024,
        max_lines: int = DEFAULT_MAX_LINES,
    ) -> None:
        self._logger = logger
        self.interval = interval
        self._max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._budget: TokenBucket | None = None
        if max_lines > 0:
            self._budget = TokenBucket(max_lines / interval, max_lines, float("-inf"))

    def log(self, key: str, now: float, message: str, level: int = logging.WARNING) -> bool:
        """Log ``message`` unless ``key`` logged less than ``interval`` ago, or the limiter's
        total budget is spent; True if logged."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if self._budget is not None and not self._budget.take(now):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            if len(self._suppressed) > self._max_keys:
                self._suppressed.clear()
            return False
        if last is None and len(self._last) >= self._max_keys:  # bounded under key spray
            self._last.clear()
            self._suppressed.clear()
        skipped = self._suppressed.pop(key, 0)
        self._last[key] = now
        suffix = f" ({skipped} similar suppressed)" if skipped else ""
        self._logger.log(level, "%s%s", message, suffix)
        return True
