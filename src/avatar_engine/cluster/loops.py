"""The node's background loops: health, registry rounds, scans, the listener, publishing and
the global publish-rate windows.

Every loop has a bounded period and survives Redis going away: while it is away owned sessions
keep animating and their local subscribers keep receiving, relayed traffic stops, ``/health``
says degraded and quotas fall back to local counts. When Redis answers again the node re-claims
its leases (others wait a lease before taking anything over), re-registers what Redis may have
lost, and the relays resume from keyframes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from avatar_engine.cluster.epoch import StreamEpoch
from avatar_engine.cluster.keys import Keys
from avatar_engine.cluster.link import COMMAND_TIMEOUT_S, REDIS_ERRORS, RedisLink
from avatar_engine.cluster.owner_relays import OwnerRelays
from avatar_engine.cluster.quotas import PUBLISH_FLUSH_S, RedisQuotas
from avatar_engine.cluster.registry import SCAN_FRACTION, Registry
from avatar_engine.cluster.viewers import RemoteViewers

log = logging.getLogger("avatar_engine.cluster")

HEALTH_PERIOD_S: Final = 0.25
MAX_BACKOFF_S: Final = 1.0
LISTEN_BATCH: Final = 512
"""Most pub/sub messages the listener hands over in one go (the rest: next loop iteration)."""

OnMessages = Callable[[list[tuple[bytes, bytes]]], int]
"""Pub/sub messages read in one go: (channel, data), in order; returns how many it handled
(the rest are handed over again after the loop has run the viewers' writers)."""


class BackgroundLoops:
    """Starts and stops the loops that keep this node's view of the cluster true."""

    def __init__(
        self, link: RedisLink, keys: Keys, registry: Registry, epoch: StreamEpoch,
        viewers: RemoteViewers, relays: OwnerRelays, quotas: RedisQuotas, on_messages: OnMessages,
    ) -> None:  # fmt: skip
        self.link = link
        self.keys = keys
        self.registry = registry
        self.epoch = epoch
        self.viewers = viewers
        self.relays = relays
        self.quotas = quotas
        self.on_messages = on_messages
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Agree on the stream clock and start the loops (Redis may be down: we retry)."""
        try:
            await asyncio.wait_for(self.link.redis.ping(), COMMAND_TIMEOUT_S)
            self.link.mark_ok()
            await self.epoch.agree()
        except REDIS_ERRORS as exc:
            self.link.report_redis_error(exc)
            log.warning("cluster: redis not reachable at start; serving locally until it is")
        loops: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("health", self._health_loop),
            ("registry", self._registry_loop),
            ("scan", self._scan_loop),
            ("listen", self._listen_loop),
            ("publish", self.link.publish_loop),
            ("quota", self._quota_loop),
        ]
        for name, loop in loops:
            self._tasks.append(asyncio.create_task(loop(), name=f"cluster-{name}"))

    async def stop(self) -> None:
        """Stop the loops, then hand owned sessions over at once (if Redis answers)."""
        self.link.stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.link.redis_ok:
            await self.registry.leave()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_PERIOD_S)
            try:
                await asyncio.wait_for(self.link.redis.ping(), COMMAND_TIMEOUT_S)
            except REDIS_ERRORS as exc:
                self.link.report_redis_error(exc)
                continue
            if not self.link.redis_ok:
                await self._rejoin()

    async def _rejoin(self) -> None:
        """Redis answers again: re-claim leases and re-register what it may have lost."""
        try:
            await self.epoch.restore()
            await self.registry.reclaim_counts()
            await self.registry.pay_owed()
        except REDIS_ERRORS as exc:
            self.link.report_redis_error(exc)
            return
        self.registry.rejoined()
        self.link.mark_ok()
        self.relays.force_keyframes()
        self.viewers.ask_all()
        log.info("redis reachable again: rejoined", extra={"node": self.registry.node_id})

    async def _registry_loop(self) -> None:
        """Every quarter lease (or when woken): register new sessions, renew leases, tell the
        owners which groups this node still relays, and refresh this node's liveness."""
        period = self.registry.lease_s / 4
        wake = self.registry.wake
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), period)
            wake.clear()
            self.relays.maintain()
            if not self.link.redis_ok:
                continue
            try:
                await self.registry.round()
            except REDIS_ERRORS as exc:
                self.link.report_redis_error(exc)
                continue
            self.viewers.refresh_wants()

    async def _scan_loop(self) -> None:
        """Refresh the registry cache and take over sessions whose owner's lease lapsed."""
        period = self.registry.lease_s * SCAN_FRACTION
        while True:
            await asyncio.sleep(period)
            if not self.link.redis_ok:
                continue
            try:
                await self.registry.scan(period, self.viewers.interested())
            except REDIS_ERRORS as exc:
                self.link.report_redis_error(exc)

    async def _listen_loop(self) -> None:
        """One pub/sub connection: this node's channel, the broadcast, every relayed group."""
        backoff = 0.05
        while True:
            pubsub = self.link.pubsub_redis.pubsub(ignore_subscribe_messages=True)
            try:
                channels = [self.keys.node_channel(self.registry.node_id), self.keys.broadcast,
                            *self.viewers.groups]  # fmt: skip
                await asyncio.wait_for(pubsub.subscribe(*channels), COMMAND_TIMEOUT_S)
                self.link.pubsub = pubsub
                backoff = 0.05
                self.viewers.ask_all()
                while True:
                    batch = await self._read_batch(pubsub)
                    while batch:
                        batch = batch[self.on_messages(batch) :]
                        await asyncio.sleep(0)  # the viewers' writers, between parts
            except REDIS_ERRORS as exc:
                self.link.report_redis_error(exc)
            finally:
                self.link.pubsub = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), COMMAND_TIMEOUT_S)  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    @staticmethod
    async def _read_batch(pubsub: Any) -> list[tuple[bytes, bytes]]:
        """The next message (waiting up to a second) and every one already read from Redis
        behind it (up to :data:`LISTEN_BATCH`).

        Handed over one at a time, a backlog (the node was busy: viewers connecting, a CPU
        shared with other processes) drained at one group pass per frame per loop iteration,
        barely faster than frames came, so relayed viewers stayed up to a second behind; in one
        batch each group's frames take one pass (:meth:`RemoteViewers.deliver_all`).
        """
        batch: list[tuple[bytes, bytes]] = []
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        while message is not None:
            if message["type"] == "message":
                batch.append((message["channel"], message["data"]))
                if len(batch) >= LISTEN_BATCH:
                    break
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0)
        return batch

    async def _quota_loop(self) -> None:
        """Add this node's publish counts to the global per-second windows."""
        while True:
            await asyncio.sleep(PUBLISH_FLUSH_S)
            counts = self.quotas.take_published()
            if not counts or not self.link.redis_ok:
                continue
            window = int(time.time())
            pipe = self.link.redis.pipeline(transaction=False)
            for tenant, n in counts.items():
                key = self.keys.quota_publish(tenant, window)
                pipe.incrby(key, n)
                pipe.expire(key, 3)
            try:
                results = await pipe.execute()
            except REDIS_ERRORS as exc:
                self.link.report_redis_error(exc)
                continue
            for tenant, total in zip(counts, results[::2], strict=True):
                self.quotas.window_total(tenant, window, int(total))
