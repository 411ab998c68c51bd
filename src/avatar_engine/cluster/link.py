"""This node's link to Redis: the clients, whether Redis answers, and the outgoing queue.

Every Redis call has a timeout and every queue a bound. A failed call marks Redis away
(:meth:`RedisLink.report_redis_error`) until the health loop sees it answer again; while it is
away nothing is queued for publishing (messages are dropped and counted, never held).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgpack
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

COMMAND_TIMEOUT_S: Final = 0.5
"""Socket timeout of every asyncio Redis command (a stopped Redis must not hang a loop)."""
MAX_OUTGOING: Final = 8192
"""Messages waiting to be published; beyond this they are dropped (counted), never queued."""
PUBLISH_BATCH: Final = 512
log = logging.getLogger("avatar_engine.cluster")

REDIS_ERRORS: Final = (redis.RedisError, OSError, TimeoutError)
"""What a Redis call raises when Redis is away, slow or restarting."""


@dataclass
class ClusterCounters:
    """Monotonic counters of this node's cluster work (``/stats``, ``cluster.counters``)."""

    relayed_in: int = 0
    relayed_late: int = 0
    published: int = 0
    publish_dropped: int = 0
    captures_forwarded: int = 0
    captures_applied: int = 0
    keyframe_requests: int = 0
    takeovers: int = 0
    lost_leases: int = 0
    redis_errors: int = 0
    proxied: int = 0


def client(url: str, timeout: float | None) -> aioredis.Redis:
    """An asyncio client without retries: the loops retry on their own schedule, and a retry
    with backoff inside a command would hold a loop for seconds while Redis is away."""
    made: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=COMMAND_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    return made


def pack(message: Iterable[Any]) -> bytes:
    """One cluster message (a list) as msgpack."""
    out: bytes = msgpack.packb(list(message), use_bin_type=True)
    return out


def text(value: bytes | str) -> str:
    """A Redis reply as text (clients return bytes)."""
    return value.decode() if isinstance(value, bytes) else value


class RedisLink:
    """The command and pub/sub clients, Redis's health as last seen, the outgoing queue."""

    def __init__(self, url: str, counters: ClusterCounters) -> None:
        self.redis = client(url, COMMAND_TIMEOUT_S)
        # Pub/sub reads wait for messages as long as there are none: no read timeout there
        # (a dropped connection still raises; a stopped Redis is caught by the health loop).
        self.pubsub_redis = client(url, None)
        self.pubsub: Any = None
        """The listener's pub/sub connection while it is connected."""
        self.counters = counters
        self._ok = False
        self._out: deque[tuple[str, bytes]] = deque()
        self._out_wake = asyncio.Event()
        self._pending: set[asyncio.Task[Any]] = set()
        self.stopping = False

    @property
    def redis_ok(self) -> bool:
        """Redis answered the last call (False from a failure until the health loop's next
        ping)."""
        return self._ok

    def mark_ok(self) -> None:
        """Redis answered (at start, or the health loop after a rejoin)."""
        self._ok = True

    def report_redis_error(self, exc: BaseException) -> None:
        """Any failed Redis call: stop using Redis until the health loop sees it answer."""
        self.counters.redis_errors += 1
        if self._ok:
            log.warning("redis unreachable: serving locally", extra={"reason": str(exc)[:200]})
        self._ok = False

    @property
    def queued(self) -> int:
        """Messages waiting to be published."""
        return len(self._out)

    def publish(self, channel: str, data: bytes) -> bool:
        """Queue one message (never blocks). Dropped, and counted, while Redis is away."""
        if not self._ok or len(self._out) >= MAX_OUTGOING:
            self.counters.publish_dropped += 1
            return False
        self._out.append((channel, data))
        self._out_wake.set()
        return True

    async def publish_loop(self) -> None:
        """Drain the outgoing queue in pipelined batches, in order (one connection)."""
        while True:
            await self._out_wake.wait()
            self._out_wake.clear()
            while self._out:
                n = min(PUBLISH_BATCH, len(self._out))
                batch = [self._out.popleft() for _ in range(n)]
                if not self._ok:
                    self.counters.publish_dropped += n
                    continue
                pipe = self.redis.pipeline(transaction=False)
                for channel, data in batch:
                    pipe.publish(channel, data)
                try:
                    await pipe.execute()
                    self.counters.published += n
                except REDIS_ERRORS as exc:
                    self.counters.publish_dropped += n
                    self.report_redis_error(exc)

    async def pubsub_call(self, op: str, channel: str) -> None:
        """Subscribe or unsubscribe the listener's connection (if it is connected: when it
        reconnects it subscribes to every current channel anyway)."""
        pubsub = self.pubsub
        if pubsub is None:
            return
        try:
            await asyncio.wait_for(getattr(pubsub, op)(channel), COMMAND_TIMEOUT_S)
        except REDIS_ERRORS as exc:
            self.report_redis_error(exc)

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Fire-and-forget with a strong reference (the loop only keeps weak ones)."""
        if self.stopping:
            if asyncio.iscoroutine(coro):
                coro.close()
            return
        try:
            task = asyncio.ensure_future(coro)
        except RuntimeError:  # no running loop (a runtime driven by hand in tests)
            if asyncio.iscoroutine(coro):
                coro.close()
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """Close both clients (at shutdown; errors of a Redis already gone are ignored)."""
        try:
            await self.redis.aclose()
            await self.pubsub_redis.aclose()
        except Exception:  # closing after an outage: nothing left to do about it
            return
