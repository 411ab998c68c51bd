"""Per-tenant quotas: sessions, subscribers, and publish rate, enforced server-side (429).

The in-memory store here serves one process; cluster mode (issue 10) swaps in a store whose
counters live in Redis, behind the same methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class QuotaExceededError(Exception):
    """A tenant is over a limit; becomes HTTP 429 (or a WebSocket close) with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """Per-tenant limits: sessions, subscribers and publish messages per second."""

    max_sessions: int
    max_subscribers: int
    max_publish_rate: float
    """Messages per second; the bucket holds one second's worth."""


class TokenBucket:
    """Rate limiter with an injectable clock: ``rate`` tokens/s, at most ``burst`` saved."""

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if the bucket holds them (refilled for the time since last call)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False


class MemoryQuotas:
    """Counters for one process."""

    def __init__(self, limits: QuotaLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._sessions: dict[str, int] = {}
        self._subscribers: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}

    def acquire_session(self, tenant: str) -> None:
        """Count one more session of ``tenant``; :class:`QuotaExceededError` at the limit."""
        count = self._sessions.get(tenant, 0)
        if count >= self.limits.max_sessions:
            raise QuotaExceededError(
                f"tenant {tenant!r} is at its limit of {self.limits.max_sessions} sessions"
            )
        self._sessions[tenant] = count + 1

    def release_session(self, tenant: str) -> None:
        """Give back a session (never below zero)."""
        self._sessions[tenant] = max(0, self._sessions.get(tenant, 0) - 1)

    def acquire_subscriber(self, tenant: str) -> None:
        """Count one more subscriber of ``tenant``; :class:`QuotaExceededError` at the limit."""
        count = self._subscribers.get(tenant, 0)
        if count >= self.limits.max_subscribers:
            raise QuotaExceededError(
                f"tenant {tenant!r} is at its limit of {self.limits.max_subscribers} subscribers"
            )
        self._subscribers[tenant] = count + 1

    def release_subscriber(self, tenant: str) -> None:
        """Give back a subscriber (never below zero)."""
        self._subscribers[tenant] = max(0, self._subscribers.get(tenant, 0) - 1)

    def allow_publish(self, tenant: str, n: float = 1.0) -> None:
        """Spend ``n`` publish messages of ``tenant``'s per-second budget or raise
        :class:`QuotaExceededError`."""
        bucket = self._buckets.get(tenant)
        if bucket is None:
            rate = self.limits.max_publish_rate
            bucket = self._buckets[tenant] = TokenBucket(rate, rate, self._clock)
        if not bucket.take(n):
            raise QuotaExceededError(
                f"tenant {tenant!r} is over its publish rate of "
                f"{self.limits.max_publish_rate:g} messages/s"
            )
