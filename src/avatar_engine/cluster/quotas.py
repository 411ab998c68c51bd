"""Global tenant quotas: the :class:`~avatar_engine.server.quotas.MemoryQuotas` methods, with
the counts kept in Redis so a limit holds across every node.

- **Sessions**: one counter per tenant, without expiry. Sessions outlive the node that created
  them (another node takes them over), so the count moves only on create and delete.
- **Subscribers**: one counter per (tenant, node) that expires unless its node rewrites it.
  Connections die with their node, so a dead node's share disappears on its own; a live node
  rewrites its share with its exact local count every lease period, so the counts heal after an
  outage without any bookkeeping.
- **Publish rate**: one counter per (tenant, one-second window) with a few seconds' expiry.
  Capture frames arrive at hundreds per second per node and the check must not wait for Redis,
  so each node counts locally (and enforces the limit locally too), adds its count to the
  window's counter every :data:`PUBLISH_FLUSH_S`, and refuses until the window ends once the
  global total is over. Overshoot is bounded by one flush interval of every node's traffic.

Checks run on the event loop with a synchronous client whose timeouts are short, and only while
the node's health monitor says Redis answers; otherwise, and on any Redis error, the node falls
back to its local counts (the parent class) and remembers what it owes the global session
counter, paid back when Redis returns. Redis being down therefore never refuses service that a
single node could give, and never blocks the loop for more than one short timeout.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Final, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from avatar_engine.cluster.keys import Keys
from avatar_engine.server.quotas import MemoryQuotas, QuotaExceededError, QuotaLimits

log = logging.getLogger("avatar_engine.cluster")

SYNC_TIMEOUT_S: Final = 0.1
"""Socket timeout of the quota checks (they run on the event loop: keep it short)."""
PUBLISH_FLUSH_S: Final = 0.1
SUBSCRIBER_COUNT_TTL_S: Final = 6

# Take one session if the tenant's counter is below the limit (KEYS[1] counter, ARGV[1] limit).
_ACQUIRE_COUNTER = """
local n = tonumber(redis.call('get', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return 0 end
redis.call('incr', KEYS[1])
return 1
"""
# Give one back, never below zero (KEYS[1] counter, ARGV[1] how many).
RELEASE_COUNTER = """
local n = tonumber(redis.call('get', KEYS[1]) or '0') - tonumber(ARGV[1])
if n < 0 then n = 0 end
redis.call('set', KEYS[1], n)
return n
"""
# Sum every live node's subscriber share; take one for ARGV[3] if under the limit.
# KEYS[1] the node set; ARGV: prefix, tenant, node, limit, ttl seconds.
_ACQUIRE_SUBSCRIBER = """
local total = 0
local base = ARGV[1] .. ':q:subs:' .. ARGV[2] .. ':'
for _, node in ipairs(redis.call('smembers', KEYS[1])) do
  total = total + tonumber(redis.call('get', base .. node) or '0')
end
if total >= tonumber(ARGV[4]) then return 0 end
local own = ARGV[1] .. ':q:subs:' .. ARGV[2] .. ':' .. ARGV[3]
redis.call('incr', own)
redis.call('expire', own, tonumber(ARGV[5]))
return 1
"""


class RedisHealth(Protocol):
    """What the quotas need from the node: is Redis answering, and a way to say it is not."""

    @property
    def redis_ok(self) -> bool:
        """Redis answered the last call."""
        ...

    def report_redis_error(self, exc: BaseException) -> None:
        """A call failed: use local counts until Redis answers again."""
        ...


class RedisQuotas(MemoryQuotas):
    """Per-tenant limits shared by every node of a cluster (see the module docstring)."""

    def __init__(
        self,
        limits: QuotaLimits,
        clock: Callable[[], float],
        *,
        url: str,
        keys: Keys,
        node_id: str,
        health: RedisHealth,
    ) -> None:
        super().__init__(limits, clock)
        self.keys = keys
        self.node_id = node_id
        self._health = health
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=SYNC_TIMEOUT_S,
            socket_connect_timeout=SYNC_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self._acquire_counter = self._client.register_script(_ACQUIRE_COUNTER)
        self._release_counter = self._client.register_script(RELEASE_COUNTER)
        self._acquire_subscriber = self._client.register_script(_ACQUIRE_SUBSCRIBER)
        self.owed_sessions: dict[str, int] = defaultdict(int)
        """Session count changes made while Redis was away, per tenant (paid back on return)."""
        self._published: dict[str, int] = defaultdict(int)
        self._blocked_until: dict[str, float] = {}
        self.global_refusals = 0

    # -- sessions ---------------------------------------------------------------------------

    def acquire_session(self, tenant: str) -> None:
        """Count a new session here and globally (429 when the tenant is at its limit)."""
        super().acquire_session(tenant)  # this node's own count: the outage fallback
        ok = self._call(self._acquire_counter, [self.keys.quota_sessions(tenant)],
                        [self.limits.max_sessions])  # fmt: skip
        if ok is None:
            self.owed_sessions[tenant] += 1
        elif not ok:
            super().release_session(tenant)
            self.global_refusals += 1
            raise QuotaExceededError(
                f"tenant {tenant!r} is at its limit of {self.limits.max_sessions} sessions "
                "(cluster-wide)"
            )

    def release_session(self, tenant: str) -> None:
        """A session was deleted: uncount it here and globally (owed while Redis is away)."""
        super().release_session(tenant)
        if self._call(self._release_counter, [self.keys.quota_sessions(tenant)], [1]) is None:
            self.owed_sessions[tenant] -= 1

    def adopt_session(self, tenant: str) -> None:
        """A session taken over from a dead node: count it here, not again globally."""
        self._sessions[tenant] = self._sessions.get(tenant, 0) + 1

    def disown_session(self, tenant: str) -> None:
        """A session another node now owns: forget it here; it still exists globally."""
        self._sessions[tenant] = max(0, self._sessions.get(tenant, 0) - 1)

    # -- subscribers ------------------------------------------------------------------------

    def acquire_subscriber(self, tenant: str) -> None:
        """Count a subscriber against the tenant's limit summed over every node."""
        super().acquire_subscriber(tenant)
        ok = self._call(
            self._acquire_subscriber,
            [self.keys.nodes],
            [self.keys.prefix, tenant, self.node_id, self.limits.max_subscribers,
             SUBSCRIBER_COUNT_TTL_S],
        )  # fmt: skip
        if ok == 0:
            super().release_subscriber(tenant)
            self.global_refusals += 1
            raise QuotaExceededError(
                f"tenant {tenant!r} is at its limit of {self.limits.max_subscribers} "
                "subscribers (cluster-wide)"
            )

    def release_subscriber(self, tenant: str) -> None:
        """A subscriber left: uncount it on this node."""
        super().release_subscriber(tenant)
        self._call(self._release_counter,
                   [self.keys.quota_subscribers(tenant, self.node_id)], [1])  # fmt: skip

    def local_subscriber_counts(self) -> dict[str, int]:
        """This node's subscribers per tenant: its share, rewritten into Redis periodically."""
        return dict(self._subscribers)

    # -- publish rate -----------------------------------------------------------------------

    def allow_publish(self, tenant: str, n: float = 1.0) -> None:
        """One capture message against the tenant's rate, local and global windows."""
        blocked = self._blocked_until.get(tenant)
        if blocked is not None:
            if time.time() < blocked:
                raise QuotaExceededError(
                    f"tenant {tenant!r} is over its publish rate of "
                    f"{self.limits.max_publish_rate:g} messages/s (cluster-wide)"
                )
            del self._blocked_until[tenant]
        super().allow_publish(tenant, n)
        self._published[tenant] += max(1, round(n))

    def take_published(self) -> dict[str, int]:
        """Messages counted since the last flush, per tenant (the node adds them to Redis)."""
        out, self._published = dict(self._published), defaultdict(int)
        return out

    def window_total(self, tenant: str, window: int, total: int) -> None:
        """The global count of ``window`` after this node's flush: over the limit blocks."""
        if total > self.limits.max_publish_rate:
            self._blocked_until[tenant] = float(window + 1)

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> int | None:
        """Run a script; ``None`` when Redis is away (the caller falls back to local counts)."""
        if not self._health.redis_ok:
            return None
        try:
            return int(script(keys=keys, args=args))
        except (redis.RedisError, OSError) as exc:
            self._health.report_redis_error(exc)
            return None

    def close(self) -> None:
        """Close the synchronous client (at shutdown)."""
        self._client.close()
