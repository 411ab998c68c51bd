"""The session registry as this node sees it, and this node's leases on the sessions it owns.

``meta:{id}`` (rig, tenant, fps, LOD, source) and ``owner:{id}`` (a node id whose expiry is the
owner's lease) for every session in ``sessions``. The owner renews its leases every quarter
lease (:meth:`Registry.round`); every node scans the registry every :data:`SCAN_FRACTION` of a
lease (:meth:`Registry.scan`) and takes ownerless sessions over with ``SET NX``, recreating them
from their metadata. A killed node's sessions therefore move within one lease plus one scan
(2.0 + 0.25 s by default). What a change of owner means for this node's viewers and relays is
the :class:`RegistryEvents` receiver's business (:mod:`avatar_engine.cluster.placement`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Final, Protocol

from avatar_engine.cluster.keys import Keys
from avatar_engine.cluster.link import COMMAND_TIMEOUT_S, REDIS_ERRORS, RedisLink, pack, text
from avatar_engine.cluster.quotas import RELEASE_COUNTER, SUBSCRIBER_COUNT_TTL_S, RedisQuotas
from avatar_engine.engine.sessions import Session

log = logging.getLogger("avatar_engine.cluster")

SCAN_FRACTION: Final = 0.125
"""Registry scan period as a fraction of the lease (250 ms for the default 2 s lease)."""

# Renew one lease, or re-claim it if it lapsed and nobody took it (after a Redis outage).
_RENEW = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] or not v then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Register a session this node created: owner (unless another node holds it), meta, the set.
# KEYS: owner, meta, sessions; ARGV: node, lease ms, session id, meta field/value pairs...
_REGISTER = """
local v = redis.call('get', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('hset', KEYS[2], unpack(ARGV, 4))
redis.call('sadd', KEYS[3], ARGV[3])
return 1
"""
# Delete a lease only if it is still ours (graceful shutdown hands sessions over at once).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """What the registry keeps about a session: enough for another node to recreate it."""

    rig: str
    tenant: str
    fps: int
    lod: int
    source: str

    def fields(self) -> list[str]:
        """The metadata as ``HSET`` field/value pairs."""
        return ["rig", self.rig, "tenant", self.tenant, "fps", str(self.fps),
                "lod", str(self.lod), "source", self.source]  # fmt: skip

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> SessionMeta | None:
        """The metadata from ``HGETALL`` (None if a field is missing or malformed)."""
        try:
            return cls(
                rig=raw[b"rig"].decode(),
                tenant=raw[b"tenant"].decode(),
                fps=int(raw[b"fps"]),
                lod=int(raw[b"lod"]),
                source=raw.get(b"source", b"api").decode(),
            )
        except (KeyError, ValueError, UnicodeDecodeError):
            return None

    @classmethod
    def of(cls, session: Session) -> SessionMeta:
        """The metadata of a session this node animates."""
        return cls(session.rig, session.tenant, session.fps, session.lod, session.source)


class RegistryEvents(Protocol):
    """What the registry reports as it learns who owns what."""

    def owner_changed(self, session_id: str, owner: str | None) -> None:
        """A session's owner as just learned (None: its lease lapsed)."""
        ...

    def adopt(self, session_id: str, meta: SessionMeta) -> None:
        """This node won an ownerless session's lease: animate it (raise to give it back)."""
        ...

    def demote(self, session_id: str, *, duplicate: bool = False) -> None:
        """This node lost the lease of a session it animates (``duplicate``: it had created
        the session under an id another node had just taken)."""
        ...

    def forget_session(self, session_id: str) -> None:
        """The session left the registry (deleted on its owner)."""
        ...


class Registry:
    """Who owns which session (cached), what this node owns, and the Redis rounds that keep
    both true."""

    def __init__(
        self, link: RedisLink, keys: Keys, node_id: str, lease_s: float, advertise_url: str,
        quotas: RedisQuotas, events: RegistryEvents,
    ) -> None:  # fmt: skip
        self.link = link
        self.keys = keys
        self.node_id = node_id
        self.lease_s = lease_s
        self.advertise_url = advertise_url
        self.quotas = quotas
        self.events = events
        redis = link.redis
        self._renew = redis.register_script(_RENEW)
        self._register = redis.register_script(_REGISTER)
        self._release = redis.register_script(_RELEASE)
        self._release_counter = redis.register_script(RELEASE_COUNTER)
        self.owned: set[str] = set()
        self.unregistered: set[str] = set()
        self.deleted: set[str] = set()
        """Deleted here, not yet in Redis (kept across an outage, or the session would come
        back: its metadata would outlive the lease and another node would take it over)."""
        self.owners: dict[str, str] = {}
        """Owner node of every session in the registry (as of the last scan or broadcast)."""
        self.meta: dict[str, SessionMeta] = {}
        self.node_urls: dict[str, str] = {}
        self.voice_nodes: set[str] = {node_id}
        """Nodes whose relays carry the voice (as of the last scan)."""
        self.ownerless_since: dict[str, float] = {}
        self.fresh_at: dict[str, float] = {}
        """When a broadcast last updated a session: a scan that started earlier read older
        data and must not undo it."""
        self.last_owner: dict[str, str] = {}
        """The last live owner seen per session: a different next one restarts the stream."""
        self.grace_until = 0.0
        self.wake = asyncio.Event()
        """Set to run a registry round now rather than at the next quarter lease."""

    # -- changes made here ---------------------------------------------------------------

    def created(self, session: Session) -> None:
        """A session made here: register it at once (the round is woken)."""
        self.owned.add(session.id)
        self.owners[session.id] = self.last_owner[session.id] = self.node_id
        self.meta[session.id] = SessionMeta.of(session)
        self.unregistered.add(session.id)
        self.wake.set()

    def deleted_here(self, session_id: str) -> None:
        """A session deleted here: forget it, remove it from Redis at the next round."""
        self.owned.discard(session_id)
        self.unregistered.discard(session_id)
        self.owners.pop(session_id, None)
        self.meta.pop(session_id, None)
        for cache in (self.last_owner, self.fresh_at, self.ownerless_since):
            cache.pop(session_id, None)
        self.deleted.add(session_id)
        self.wake.set()

    def adopted(self, session_id: str) -> None:
        """This node took the session over."""
        self.owned.add(session_id)
        self.owners[session_id] = self.last_owner[session_id] = self.node_id
        self.ownerless_since.pop(session_id, None)

    def disowned(self, session_id: str) -> None:
        """This node no longer owns the session (its lease went to another node)."""
        self.owned.discard(session_id)
        self.unregistered.discard(session_id)

    def forget(self, session_id: str) -> None:
        """Deleted in the registry: drop everything known of it."""
        for cache in (self.fresh_at, self.last_owner, self.meta, self.owners,
                      self.ownerless_since):  # fmt: skip
            cache.pop(session_id, None)

    def set_owner(self, session_id: str, owner: str | None) -> str | None:
        """Record a session's owner as just learned; returns the one recorded before."""
        old = self.owners.get(session_id)
        if owner is None:
            self.owners.pop(session_id, None)
        else:
            self.owners[session_id] = owner
        return old

    # -- the rounds ----------------------------------------------------------------------

    async def round(self) -> None:
        """Register new sessions, renew leases, remove deleted sessions, refresh this node's
        liveness and subscriber counts: one pipeline."""
        keys, me, lease_ms = self.keys, self.node_id, int(self.lease_s * 1000)
        pipe = self.link.redis.pipeline(transaction=False)
        pipe.set(keys.node(me), self.advertise_url, px=2 * lease_ms)
        pipe.sadd(keys.nodes, me)
        pipe.sadd(keys.voice_nodes, me)
        for tenant, count in self.quotas.local_subscriber_counts().items():
            pipe.set(keys.quota_subscribers(tenant, me), count, ex=SUBSCRIBER_COUNT_TTL_S)
        registering = [s for s in self.unregistered if s in self.meta]
        renewing = [s for s in self.owned if s not in self.unregistered]
        for session_id in registering:
            meta = self.meta[session_id]
            await self._register(
                keys=[keys.owner(session_id), keys.meta(session_id), keys.sessions],
                args=[me, lease_ms, session_id, *meta.fields()],
                client=pipe,
            )
        for session_id in renewing:
            await self._renew(keys=[keys.owner(session_id)], args=[me, lease_ms], client=pipe)
        deleting = sorted(self.deleted)
        for session_id in deleting:
            pipe.srem(keys.sessions, session_id)
            pipe.delete(keys.meta(session_id), keys.owner(session_id))
        results = await pipe.execute()
        for session_id in deleting:
            self.deleted.discard(session_id)
            self.link.publish(keys.broadcast, pack(["D", session_id]))
        if deleting:
            results = results[: len(results) - 2 * len(deleting)]
        n_fixed = 3 + len(self.quotas.local_subscriber_counts())
        outcome = results[n_fixed:]
        for session_id, ok in zip(registering, outcome[: len(registering)], strict=True):
            self.unregistered.discard(session_id)
            if ok:
                meta = self.meta[session_id]
                self.link.publish(keys.broadcast, pack(["N", session_id, me, meta.rig,
                                  meta.tenant, meta.fps, meta.lod, meta.source]))  # fmt: skip
            else:
                log.warning("session id taken by another node", extra={"session": session_id})
                self.events.demote(session_id, duplicate=True)
        for session_id, ok in zip(renewing, outcome[len(registering) :], strict=True):
            if not ok:
                self.events.demote(session_id)

    async def scan(self, period: float, interested: set[str]) -> None:
        """Refresh the cache and take over sessions whose owner's lease lapsed (first the
        nodes relaying them to viewers, ``interested``; others a scan later)."""
        keys = self.keys
        started = time.monotonic()
        ids = sorted(text(s) for s in await self.link.redis.smembers(keys.sessions))
        self.voice_nodes = {text(n) for n in await self.link.redis.smembers(keys.voice_nodes)}
        owners = await self.link.redis.mget([keys.owner(s) for s in ids]) if ids else []
        await self._fetch_meta([s for s in ids if s not in self.meta])
        listed = set(ids)
        for session_id in [s for s in self.meta if s not in listed]:
            if session_id not in self.owned and self.fresh_at.get(session_id, 0.0) < started:
                self.events.forget_session(session_id)
        now = time.monotonic()
        for session_id, raw_owner in zip(ids, owners, strict=True):
            if self.fresh_at.get(session_id, 0.0) >= started:
                continue  # a broadcast during this scan knows better
            owner = text(raw_owner) if raw_owner is not None else None
            self.events.owner_changed(session_id, owner)
            if owner is not None:
                self.ownerless_since.pop(session_id, None)
                continue
            since = self.ownerless_since.setdefault(session_id, now)
            waited = now - since >= period or session_id in interested
            if now < self.grace_until or not waited or session_id in self.owned:
                continue
            meta = self.meta.get(session_id)
            if meta is not None:
                await self._try_take_over(session_id, meta)

    async def _fetch_meta(self, unknown: list[str]) -> None:
        if not unknown:
            return
        pipe = self.link.redis.pipeline(transaction=False)
        for session_id in unknown:
            pipe.hgetall(self.keys.meta(session_id))
        for session_id, raw in zip(unknown, await pipe.execute(), strict=True):
            meta = SessionMeta.from_hash(raw)
            if meta is not None:
                self.meta[session_id] = meta

    async def _try_take_over(self, session_id: str, meta: SessionMeta) -> None:
        owner_key = self.keys.owner(session_id)
        if await self.link.redis.set(owner_key, self.node_id, nx=True,
                                     px=int(self.lease_s * 1000)):  # fmt: skip
            try:
                self.events.adopt(session_id, meta)
            except Exception as exc:  # a rig this node cannot load: let another try
                log.error("takeover failed", extra={"session": session_id, "reason": str(exc)})
                await self._release(keys=[owner_key], args=[self.node_id])

    # -- after an outage, and when leaving -------------------------------------------------

    async def reclaim_counts(self) -> None:
        """Redis answers again: put back the global session counts it may have lost.

        Sessions whose metadata Redis lost (restarted without persistence) are re-registered
        by the next round; their count goes back here. Metadata never expires, so a paused
        Redis (SIGSTOP) loses none and nothing is counted twice. Then the counts owed from
        the outage (sessions made or deleted while Redis was away) are paid.
        """
        redis = self.link.redis
        owned = [s for s in self.owned if s in self.meta and s not in self.unregistered]
        if owned:
            pipe = redis.pipeline(transaction=False)
            for session_id in owned:
                pipe.exists(self.keys.meta(session_id))
            per_tenant: dict[str, int] = defaultdict(int)
            for session_id, present in zip(owned, await pipe.execute(), strict=True):
                if not present:
                    per_tenant[self.meta[session_id].tenant] += 1
            for tenant, n in per_tenant.items():
                await redis.incrby(self.keys.quota_sessions(tenant), n)

    async def pay_owed(self) -> None:
        """Settle the session counts changed while Redis was away."""
        redis = self.link.redis
        for tenant, owed in list(self.quotas.owed_sessions.items()):
            if owed > 0:
                await redis.incrby(self.keys.quota_sessions(tenant), owed)
            elif owed < 0:
                await self._release_counter(keys=[self.keys.quota_sessions(tenant)], args=[-owed])
            del self.quotas.owed_sessions[tenant]

    def rejoined(self) -> None:
        """Re-register everything owned at the next round; take nothing over for a lease
        (the others' leases may be lapsing only because Redis was away)."""
        self.unregistered |= self.owned
        self.grace_until = time.monotonic() + self.lease_s
        self.wake.set()

    async def leave(self) -> None:
        """Hand owned sessions over at once (release the leases) and leave the node set."""
        with contextlib.suppress(*REDIS_ERRORS):
            pipe = self.link.redis.pipeline(transaction=False)
            for session_id in self.owned:
                await self._release(
                    keys=[self.keys.owner(session_id)], args=[self.node_id], client=pipe
                )
            pipe.delete(self.keys.node(self.node_id))
            for tenant in self.quotas.local_subscriber_counts():
                pipe.delete(self.keys.quota_subscribers(tenant, self.node_id))
            await asyncio.wait_for(pipe.execute(), 2 * COMMAND_TIMEOUT_S)

    # -- other nodes -----------------------------------------------------------------------

    async def owner_url(self, session_id: str) -> str | None:
        """The HTTP base URL of the session's owner (None: no live owner right now)."""
        owner = self.owners.get(session_id)
        if owner is None or owner == self.node_id:
            return None
        url = self.node_urls.get(owner)
        if url is None and self.link.redis_ok:
            try:
                raw = await self.link.redis.get(self.keys.node(owner))
            except REDIS_ERRORS as exc:
                self.link.report_redis_error(exc)
                return None
            if raw is not None:
                url = self.node_urls[owner] = text(raw)
        return url

    async def peer_urls(self) -> list[str]:
        """HTTP base URLs of every other live node (none while Redis is away)."""
        if not self.link.redis_ok:
            return []
        redis = self.link.redis
        try:
            nodes = sorted(text(n) for n in await redis.smembers(self.keys.nodes))
            nodes = [n for n in nodes if n != self.node_id]
            urls = await redis.mget([self.keys.node(n) for n in nodes]) if nodes else []
        except REDIS_ERRORS as exc:
            self.link.report_redis_error(exc)
            return []
        return [text(u) for u in urls if u is not None]

    def owner_unreachable(self, session_id: str) -> None:
        """A proxied request failed: look the owner's URL up again next time."""
        owner = self.owners.get(session_id)
        if owner is not None:
            self.node_urls.pop(owner, None)
