"""One stream clock for the whole cluster: frames' ``t`` in ms since the cluster's first start.

A relaying node's subscribers and a new owner after failover then see one clock, and tools on
one machine map ``t`` to the monotonic clock the same way. The epoch is the wall time of the
first node's start, kept in Redis (``epoch``).
"""

from __future__ import annotations

import time

from avatar_engine.cluster.keys import Keys
from avatar_engine.cluster.link import RedisLink
from avatar_engine.server.placement import PlacementHost


class StreamEpoch:
    """Moves the runtime's stream time origin (``t0``) to the cluster's epoch, once."""

    def __init__(self, link: RedisLink, keys: Keys, host: PlacementHost) -> None:
        self.link = link
        self.keys = keys
        self.host = host
        self.agreed = False

    async def agree(self) -> None:
        """Read (or set, if first) the epoch and move ``t0`` to it."""
        now_ms = int(time.time() * 1000)
        await self.link.redis.set(self.keys.epoch, now_ms, nx=True)
        raw = await self.link.redis.get(self.keys.epoch)
        epoch_ms = int(raw) if raw is not None else now_ms
        host = self.host
        offset = max(0.0, (time.time() * 1000 - epoch_ms) / 1000)
        t0 = host.clock.now() - offset
        # Only ever move stream time forward (a late agreement, after starting without Redis,
        # must not make any stream's t go back).
        if not self.agreed and t0 <= host.t0:
            host.t0 = t0
        self.agreed = True

    async def restore(self) -> None:
        """Redis answers again: agree now if never agreed; if Redis restarted empty, put back
        the clock everyone uses."""
        if not self.agreed:
            await self.agree()
            return
        epoch_ms = int((time.time() - (self.host.now() - self.host.t0)) * 1000)
        await self.link.redis.set(self.keys.epoch, epoch_ms, nx=True)
