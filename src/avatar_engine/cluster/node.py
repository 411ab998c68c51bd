"""One engine node of a cluster: session registry and leases, relay, input forwarding, health.

Each node animates the sessions it **owns** (exactly like the single-process server) and
accepts every client for every session:

- **Registry.** ``meta:{id}`` (rig, tenant, fps, LOD, source) and ``owner:{id}`` (a node id
  whose expiry is the owner's lease) for every session in ``sessions``. The owner renews its
  leases every quarter lease; every node scans the registry every :data:`SCAN_FRACTION` of a
  lease and takes ownerless sessions over with ``SET NX``, recreating them from their metadata
  (state degraded until input arrives again). A killed node's sessions therefore move within
  one lease plus one scan (2.0 + 0.25 s by default).
- **Relay.** Subscribers of sessions owned elsewhere join a group channel; the owner publishes
  every group some node asks for (``W`` requests, refreshed, expiring) once, and the node hands
  the bytes to its local subscribers (:mod:`avatar_engine.cluster.relay`). A late joiner asks
  the owner for a private keyframe (``K``) and waits only for the round trip.
- **Inputs.** Capture frames reaching a non-owner (UDP or WebSocket publish) are forwarded on
  the owner's node channel; REST inputs are proxied over HTTP to the owner
  (:mod:`avatar_engine.cluster.proxy`), so the owner's validation and errors apply unchanged.
- **Redis away.** Nothing local depends on Redis: owned sessions keep animating and their local
  subscribers keep receiving. Relayed traffic stops, ``/health`` says degraded, quotas fall
  back to local counts, and when Redis answers again the node re-claims its leases (others
  wait a lease before taking anything over), re-registers what Redis may have lost, and the
  relays resume from keyframes.

Every Redis call has a timeout, every loop a bounded period, every queue a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgpack
import numpy as np
import numpy.typing as npt
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from avatar_engine.cluster.keys import Keys, stream_sid
from avatar_engine.cluster.quotas import (
    PUBLISH_FLUSH_S,
    RELEASE_COUNTER,
    SUBSCRIBER_COUNT_TTL_S,
    RedisQuotas,
)
from avatar_engine.cluster.relay import Relay, RelayOutbox, RemoteGroup
from avatar_engine.codec.messages import encode_event, encode_hello
from avatar_engine.codec.schema import StreamSchema
from avatar_engine.codec.wire import DeltaMode, EventKind
from avatar_engine.engine.engine import SessionExistsError, SessionNotFoundError
from avatar_engine.engine.sessions import SessionState
from avatar_engine.ingest.sink import SourceInfo
from avatar_engine.rigs.arkit import ARKIT_COUNT, ROTATION_COUNT
from avatar_engine.rigs.profile import load_rig
from avatar_engine.server.auth import Principal
from avatar_engine.server.quotas import QuotaExceededError, QuotaLimits
from avatar_engine.server.streams import StreamKey, Subscriber
from avatar_engine.transport.outbox import OutboxOverflowError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from avatar_engine.engine.sessions import Session
    from avatar_engine.server.runtime import Runtime

log = logging.getLogger("avatar_engine.cluster")

COMMAND_TIMEOUT_S: Final = 0.5
"""Socket timeout of every asyncio Redis command (a stopped Redis must not hang a loop)."""
HEALTH_PERIOD_S: Final = 0.25
SCAN_FRACTION: Final = 0.125
"""Registry scan period as a fraction of the lease (250 ms for the default 2 s lease)."""
MAX_OUTGOING: Final = 8192
"""Messages waiting to be published; beyond this they are dropped (counted), never queued."""
PUBLISH_BATCH: Final = 512
KEYFRAME_REQUEST_GAP_S: Final = 0.1
"""Closest spacing of keyframe requests per relayed group (docs/protocol.md §3.4)."""
MAX_BACKOFF_S: Final = 1.0

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
        return ["rig", self.rig, "tenant", self.tenant, "fps", str(self.fps),
                "lod", str(self.lod), "source", self.source]  # fmt: skip

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> SessionMeta | None:
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


@dataclass
class ClusterCounters:
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


def _client(url: str, timeout: float | None) -> aioredis.Redis:
    # No retries inside the client: the loops here retry on their own schedule, and a retry
    # with backoff inside a command would hold a loop for seconds while Redis is away.
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=COMMAND_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    return client


class ClusterNode:
    """This process's membership of the cluster (``runtime.cluster``; None when standalone)."""

    def __init__(self, runtime: Runtime) -> None:
        options = runtime.options
        assert options.redis_url, "cluster mode needs a Redis URL"
        self.runtime = runtime
        self.node_id = options.node_id or f"node-{secrets.token_hex(4)}"
        self.keys = Keys(options.cluster_prefix)
        self.lease_s = options.cluster_lease_ms / 1000
        self.advertise_url = (
            options.cluster_advertise_url or f"http://{options.host}:{options.port}"
        ).rstrip("/")
        self.redis = _client(options.redis_url, COMMAND_TIMEOUT_S)
        # Pub/sub reads wait for messages as long as there are none: no read timeout there
        # (a dropped connection still raises; a stopped Redis is caught by the health loop).
        self._pubsub_redis = _client(options.redis_url, None)
        self._renew = self.redis.register_script(_RENEW)
        self._register = self.redis.register_script(_REGISTER)
        self._release = self.redis.register_script(_RELEASE)
        self._release_counter = self.redis.register_script(RELEASE_COUNTER)
        self._redis_ok = False
        self._epoch_agreed = False
        self.quotas = RedisQuotas(
            QuotaLimits(options.max_sessions, options.max_subscribers, options.max_publish_rate),
            runtime.clock.now,
            url=options.redis_url,
            keys=self.keys,
            node_id=self.node_id,
            health=self,
        )
        self.counters = ClusterCounters()
        self.owned: set[str] = set()
        self._unregistered: set[str] = set()
        self._deleted: set[str] = set()
        """Deleted here, not yet in Redis (kept across an outage, or the session would come
        back: its metadata would outlive the lease and another node would take it over)."""
        self.owners: dict[str, str] = {}
        """Owner node of every session in the registry (as of the last scan or broadcast)."""
        self.meta: dict[str, SessionMeta] = {}
        self.node_urls: dict[str, str] = {}
        self._ownerless_since: dict[str, float] = {}
        self._fresh_at: dict[str, float] = {}
        self._last_owner: dict[str, str] = {}
        """The last live owner seen per session: a different next one restarts the stream."""
        """When a broadcast last updated a session: a scan that started earlier read older
        data and must not undo it."""
        self.relays: dict[tuple[str, StreamKey], Relay] = {}
        self.remote_groups: dict[str, RemoteGroup] = {}
        self.remote_subs: dict[Subscriber, RemoteGroup] = {}
        self._schemas: dict[str, StreamSchema] = {}
        self._out: deque[tuple[str, bytes]] = deque()
        self._out_wake = asyncio.Event()
        self._registry_wake = asyncio.Event()
        self._pubsub: Any = None
        self._grace_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._http: Any = None

    # -- health ------------------------------------------------------------------------------

    @property
    def redis_ok(self) -> bool:
        return self._redis_ok

    def report_redis_error(self, exc: BaseException) -> None:
        """Any failed Redis call: stop using Redis until the health loop sees it answer."""
        self.counters.redis_errors += 1
        if self._redis_ok:
            log.warning("redis unreachable: serving locally", extra={"reason": str(exc)[:200]})
        self._redis_ok = False

    def health(self) -> dict[str, object]:
        return {
            "status": "ok" if self._redis_ok else "degraded",
            "node": self.node_id,
            "redis": "ok" if self._redis_ok else "unreachable",
            "owned": len(self.owned),
        }

    def stats(self) -> dict[str, object]:
        return {
            **self.health(),
            "known_sessions": len(self.meta),
            "relays_out": len(self.relays),
            "relayed_groups_in": len(self.remote_groups),
            "relayed_subscribers": len(self.remote_subs),
            "outgoing_queue": len(self._out),
            "counters": vars(self.counters).copy(),
            "quota_global_refusals": self.quotas.global_refusals,
        }

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Join: agree on the stream clock and start the loops (Redis may be down: we retry)."""
        try:
            await asyncio.wait_for(self.redis.ping(), COMMAND_TIMEOUT_S)
            self._redis_ok = True
            await self._agree_on_epoch()
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self.report_redis_error(exc)
            log.warning("cluster: redis not reachable at start; serving locally until it is")
        loops: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("health", self._health_loop),
            ("registry", self._registry_loop),
            ("scan", self._scan_loop),
            ("listen", self._listen_loop),
            ("publish", self._publish_loop),
            ("quota", self._quota_loop),
        ]
        for name, loop in loops:
            self._tasks.append(asyncio.create_task(loop(), name=f"cluster-{name}"))
        log.info("cluster node started", extra={"node": self.node_id, "url": self.advertise_url})

    async def stop(self) -> None:
        """Leave: hand owned sessions over at once (release the leases), stop the loops."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._redis_ok:
            with contextlib.suppress(redis.RedisError, OSError, TimeoutError):
                pipe = self.redis.pipeline(transaction=False)
                for session_id in self.owned:
                    await self._release(
                        keys=[self.keys.owner(session_id)], args=[self.node_id], client=pipe
                    )
                pipe.delete(self.keys.node(self.node_id))
                for tenant in self.quotas.local_subscriber_counts():
                    pipe.delete(self.keys.quota_subscribers(tenant, self.node_id))
                await asyncio.wait_for(pipe.execute(), 2 * COMMAND_TIMEOUT_S)
        if self._http is not None:
            await self._http.aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
            await self._pubsub_redis.aclose()
        self.quotas.close()

    def install(self, app: FastAPI) -> None:
        """Add the REST proxy: inputs for sessions owned elsewhere go to their owner."""
        from avatar_engine.cluster.proxy import OwnerProxy

        app.add_middleware(OwnerProxy, node=self)

    async def _agree_on_epoch(self) -> None:
        """Make stream time (frames' ``t``) the same on every node: ms since the cluster's
        first start. A relaying node's subscribers and a new owner after failover then see
        one clock, and tools on one machine map ``t`` to the monotonic clock the same way."""
        now_ms = int(time.time() * 1000)
        await self.redis.set(self.keys.epoch, now_ms, nx=True)
        raw = await self.redis.get(self.keys.epoch)
        epoch_ms = int(raw) if raw is not None else now_ms
        runtime = self.runtime
        offset = max(0.0, (time.time() * 1000 - epoch_ms) / 1000)
        t0 = runtime.clock.now() - offset
        # Only ever move stream time forward (a late agreement, after starting without Redis,
        # must not make any stream's t go back).
        if not self._epoch_agreed and t0 <= runtime.t0:
            runtime.t0 = t0
        self._epoch_agreed = True

    # -- hooks the runtime calls (synchronous, on the event loop) ----------------------------

    def sid(self, session: str, mode: DeltaMode, bits: int) -> int:
        return stream_sid(session, mode, bits)

    def owned_elsewhere(self, session_id: str) -> bool:
        """A session the registry knows that this node does not animate."""
        return session_id not in self.runtime.engine.sessions and session_id in self.meta

    def check_new(self, session_id: str | None) -> None:
        """Refuse an id another node already has (the registry write re-checks atomically)."""
        if session_id is not None and self.owned_elsewhere(session_id):
            raise SessionExistsError(f"session {session_id!r} exists")

    def authorize(self, principal: Principal, session_id: str) -> SessionMeta:
        """Like ``Runtime.session_for`` for a session owned elsewhere (other tenants: 404)."""
        meta = self.meta.get(session_id)
        if meta is None or (principal.sessions is None and meta.tenant != principal.tenant):
            raise SessionNotFoundError(session_id)
        return meta

    def on_created(self, session: Session) -> None:
        self.owned.add(session.id)
        self.owners[session.id] = self._last_owner[session.id] = self.node_id
        self.meta[session.id] = SessionMeta(
            session.rig, session.tenant, session.fps, session.lod, session.source
        )
        self._unregistered.add(session.id)
        self._registry_wake.set()

    def on_deleted(self, session: Session) -> None:
        sid = session.id
        self.owned.discard(sid)
        self._unregistered.discard(sid)
        self.owners.pop(sid, None)
        self.meta.pop(sid, None)
        for cache in (self._last_owner, self._fresh_at, self._ownerless_since):
            cache.pop(sid, None)
        for rk in [rk for rk in self.relays if rk[0] == sid]:
            del self.relays[rk]
        self._deleted.add(sid)
        self._registry_wake.set()

    def forward_capture(
        self,
        session_id: str,
        arkit: npt.NDArray[np.float32],
        rotations: npt.NDArray[np.float32],
        source: SourceInfo,
    ) -> bool:
        """Capture for a session owned elsewhere: check the quota here, send to the owner."""
        meta = self.meta.get(session_id)
        owner = self.owners.get(session_id)
        if meta is None:
            return False
        counters = self.runtime.counters
        if owner is None or owner == self.node_id:
            counters.publish_rejected += 1  # moving right now: this frame is lost
            return True
        try:
            self.quotas.allow_publish(meta.tenant)
        except QuotaExceededError:
            counters.publish_rejected += 1
            return True
        message = ["C", session_id, np.ascontiguousarray(arkit, np.float32).tobytes(),
                   np.ascontiguousarray(rotations, np.float32).tobytes(), source.kind]  # fmt: skip
        if self.publish(self.keys.node_channel(owner), _pack(message)):
            self.counters.captures_forwarded += 1
        else:
            counters.publish_rejected += 1
        return True

    # -- subscribers of sessions owned elsewhere ---------------------------------------------

    def subscribe_remote(
        self,
        principal: Principal,
        session_id: str,
        *,
        lod: int,
        mode: DeltaMode,
        bits: int,
        transport: str,
    ) -> Subscriber:
        meta = self.authorize(principal, session_id)
        if not 0 <= lod <= 3:
            raise ValueError(f"lod must be 0..3, not {lod}")
        if bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, not {bits}")
        runtime = self.runtime
        schema = self._schema(meta.rig)
        runtime.quotas.acquire_subscriber(principal.tenant)
        sid = stream_sid(session_id, mode, bits)
        key = StreamKey(session_id, lod, mode, bits)
        sub = Subscriber(session_id, principal.tenant, transport, key, sid, runtime.now())
        sub.outbox.put_control(encode_hello(sid, schema, runtime._params_for(key)))
        self._attach_remote(sub)
        runtime.subscribers[session_id].add(sub)
        runtime.counters.subscribers_total += 1
        return sub

    def is_remote(self, sub: Subscriber) -> bool:
        return sub in self.remote_subs

    def set_lod(self, sub: Subscriber, lod: int) -> None:
        if not 0 <= lod <= 3:
            raise ValueError(f"lod must be 0..3, not {lod}")
        if lod == sub.key.lod:
            return
        self._detach_remote(sub)
        sub.key = sub.key._replace(lod=lod)
        self._attach_remote(sub)

    def request_keyframe(self, sub: Subscriber) -> None:
        group = self.remote_subs.get(sub)
        if group is not None:
            sub.outbox.awaiting_keyframe = True
            self._ask_keyframe(group, force=False)

    def forget(self, sub: Subscriber) -> None:
        """A subscriber is leaving (any kind): drop it from the relay side if it was relayed."""
        if sub in self.remote_subs:
            self._detach_remote(sub)

    def _attach_remote(self, sub: Subscriber) -> None:
        channel = self.keys.group_channel(sub.key)
        group = self.remote_groups.get(channel)
        sub.group = None
        sub.outbox.awaiting_keyframe = True  # relayed deltas start after a keyframe
        if group is None:
            group = self.remote_groups[channel] = RemoteGroup(sub.key.session, sub.key, channel)
            group.subs.add(sub)
            self.remote_subs[sub] = group
            self._spawn(self._join(group))
        else:
            group.subs.add(sub)
            self.remote_subs[sub] = group
            self._ask_keyframe(group, force=True)

    def _detach_remote(self, sub: Subscriber) -> None:
        group = self.remote_subs.pop(sub, None)
        if group is None:
            return
        group.subs.discard(sub)
        if not group.subs and self.remote_groups.get(group.channel) is group:
            del self.remote_groups[group.channel]
            self._spawn(self._pubsub_call("unsubscribe", group.channel))

    async def _join(self, group: RemoteGroup) -> None:
        """Listen to the group's channel first, then ask for it: no frame falls in between."""
        await self._pubsub_call("subscribe", group.channel)
        self._ask_keyframe(group, force=True)

    def _ask_keyframe(self, group: RemoteGroup, *, force: bool) -> None:
        """``K`` to the owner: relay this group (if not yet) and send me a private keyframe."""
        now = time.monotonic()
        if not force and now - group.last_request < KEYFRAME_REQUEST_GAP_S:
            return
        owner = self.owners.get(group.session)
        if owner is None or owner == self.node_id:
            return
        group.last_request = now
        key = group.key
        self.counters.keyframe_requests += 1
        self.publish(
            self.keys.node_channel(owner),
            _pack(["K", key.session, key.lod, int(key.mode), key.bits, self.node_id]),
        )

    def _rehello(self, sub: Subscriber) -> None:
        """A new owner's stream restarts its sequence numbers; the protocol's way to say so is
        a new hello for the same sid (the decoder forgets the old stream and waits for a
        keyframe, instead of taking the new seq 0 keyframe for a stale one)."""
        meta = self.meta.get(sub.session)
        if meta is None:
            return
        hello = encode_hello(sub.sid, self._schema(meta.rig), self.runtime._params_for(sub.key))
        sub.outbox.awaiting_keyframe = True
        with contextlib.suppress(OutboxOverflowError):
            sub.outbox.put_control(hello)

    def _schema(self, rig: str) -> StreamSchema:
        schema = self._schemas.get(rig)
        if schema is None:
            streams = next((s for s in self.runtime.rig_streams.values() if s.rig.name == rig),
                           None)  # fmt: skip
            schema = streams.schema if streams else StreamSchema.from_rig(load_rig(rig))
            self._schemas[rig] = schema
        return schema

    # -- owner side: relays ------------------------------------------------------------------

    def _ensure_relay(self, session_id: str, key: StreamKey) -> Relay | None:
        runtime = self.runtime
        session = runtime.engine.sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        relay = self.relays.get((session_id, key))
        if relay is None:
            streams = runtime._streams_for(session)
            sid = stream_sid(session_id, key.mode, key.bits)
            sub = Subscriber(session_id, session.tenant, "redis-relay", key, sid, runtime.now())
            sub.outbox = RelayOutbox(self.keys.group_channel(key), self.publish)
            group = streams.group(key, sid)
            sub.group = group
            group.subscribers.add(sub)
            runtime.subscribers[session_id].add(sub)
            relay = self.relays[(session_id, key)] = Relay(sub, now)
            # The current state, so relayed viewers need not wait for the next change.
            sub.outbox.put_control(
                encode_event(sid, runtime.t_ms(), EventKind.STATE, session.state.value)
            )
        relay.last_want = now
        return relay

    def _drop_relay(self, rk: tuple[str, StreamKey]) -> None:
        relay = self.relays.pop(rk, None)
        if relay is None:
            return
        runtime = self.runtime
        sub = relay.sub
        subs = runtime.subscribers.get(sub.session)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del runtime.subscribers[sub.session]
        session = runtime.engine.sessions.get(sub.session)
        streams = runtime.rig_streams.get(session.rig) if session else None
        if streams is not None and sub.group is not None:
            sub.group.subscribers.discard(sub)
            streams.drop_if_empty(sub.group)

    def _maintain_relays(self) -> None:
        """Drop relays nobody asked for lately; force a keyframe where messages were lost."""
        expiry = 1.5 * self.lease_s  # six missed refreshes (they come every quarter lease)
        now = time.monotonic()
        for rk, relay in list(self.relays.items()):
            if now - relay.last_want > expiry:
                self._drop_relay(rk)
                continue
            outbox = relay.sub.outbox
            if isinstance(outbox, RelayOutbox) and outbox.dropped and self._redis_ok:
                outbox.dropped = False
                self._force_keyframe(relay)

    def _force_keyframe(self, relay: Relay) -> None:
        session = self.runtime.engine.sessions.get(relay.sub.session)
        group = relay.sub.group
        if session is None or group is None:
            return
        streams = self.runtime.rig_streams.get(session.rig)
        if streams is not None:
            streams.encoder.force_keyframe(group.slot)

    # -- ownership changes -------------------------------------------------------------------

    def _adopt(self, session_id: str, meta: SessionMeta) -> None:
        """Take a session over: recreate it here, degraded until input arrives again."""
        runtime = self.runtime
        if session_id in runtime.engine.sessions:
            return
        now = runtime.now()
        session = runtime.engine.create_session(
            session_id, t=now, rig=meta.rig, tenant=meta.tenant, fps=meta.fps, lod=meta.lod,
            source=meta.source,
        )  # fmt: skip
        session.set_state(SessionState.DEGRADED, now)
        self.quotas.adopt_session(meta.tenant)
        self.owned.add(session_id)
        self.owners[session_id] = self._last_owner[session_id] = self.node_id
        self._ownerless_since.pop(session_id, None)
        self.counters.takeovers += 1
        # This node's relayed subscribers of the session now get it first-hand.
        streams = runtime._streams_for(session)
        for channel, group in list(self.remote_groups.items()):
            if group.session != session_id:
                continue
            del self.remote_groups[channel]
            self._spawn(self._pubsub_call("unsubscribe", channel))
            for sub in group.subs:
                self.remote_subs.pop(sub, None)
                self._rehello(sub)
                stream_group = streams.group(sub.key, sub.sid)
                sub.group = stream_group
                stream_group.subscribers.add(sub)
                keyframe = streams.private_keyframe(stream_group)
                if keyframe is not None:
                    sub.outbox.offer_frame(keyframe, keyframe=True)
        self.publish(self.keys.broadcast, _pack(["O", session_id, self.node_id]))
        log.info("session taken over", extra={"session": session_id, "node": self.node_id})

    def _demote(self, session_id: str, *, duplicate: bool = False) -> None:
        """Another node owns a session this node was animating (after a partition): stop
        animating it and relay it to the local subscribers instead. ``duplicate``: this node
        created it under an id another node had just taken, so its global count goes too."""
        runtime = self.runtime
        self.owned.discard(session_id)
        self._unregistered.discard(session_id)
        session = runtime.engine.sessions.get(session_id)
        if session is None:
            return
        self.counters.lost_leases += 1
        streams = runtime.rig_streams.get(session.rig)
        moved: list[Subscriber] = []
        for rk in [rk for rk in self.relays if rk[0] == session_id]:
            self._drop_relay(rk)
        if streams is not None:
            for group in list(streams.iter_groups(session_id)):
                moved.extend(group.subscribers)
                group.subscribers.clear()
                streams.drop_if_empty(group)
        runtime.engine.delete_session(session_id)
        runtime.egress.drop_session(session_id)
        runtime.ingest.forget_session(session_id)
        if duplicate:
            # The winner's metadata may differ (another rig): forget ours, let the scan fetch
            # the real one, and close this copy's viewers (they reconnect to the real one).
            self.quotas.release_session(session.tenant)
            self.meta.pop(session_id, None)
            self.owners.pop(session_id, None)
            for sub in moved:
                sub.outbox.close()
            return
        self.quotas.disown_session(session.tenant)
        for sub in moved:
            self._rehello(sub)
            self._attach_remote(sub)
        log.warning("lease lost: relaying instead", extra={"session": session_id})

    def _owner_changed(self, session_id: str, owner: str | None) -> None:
        old = self.owners.get(session_id)
        if owner is None:
            self.owners.pop(session_id, None)
        else:
            self.owners[session_id] = owner
        if owner == old:
            return
        if owner is None:
            self._tell_remote(session_id, SessionState.DEGRADED)
            return
        if owner != self.node_id and session_id in self.owned:
            self._last_owner[session_id] = owner
            self._demote(session_id)  # its viewers get a new hello and ask for a keyframe
            return
        moved = self._last_owner.get(session_id) not in (None, owner)
        self._last_owner[session_id] = owner
        for group in self.remote_groups.values():
            if group.session == session_id:
                for sub in group.subs:
                    if moved:
                        self._rehello(sub)
                    sub.outbox.awaiting_keyframe = True
                self._ask_keyframe(group, force=True)

    def _tell_remote(self, session_id: str, state: SessionState) -> None:
        """The owner vanished: tell relayed subscribers now rather than after the takeover."""
        t_ms = self.runtime.t_ms()
        for group in self.remote_groups.values():
            if group.session != session_id:
                continue
            for sub in list(group.subs):
                with contextlib.suppress(Exception):
                    sub.outbox.put_control(encode_event(sub.sid, t_ms, EventKind.STATE, state))

    def _forget_session(self, session_id: str) -> None:
        """Deleted in the registry: close its relayed subscribers (the owner closed its own)."""
        self._fresh_at.pop(session_id, None)
        self._last_owner.pop(session_id, None)
        self.meta.pop(session_id, None)
        self.owners.pop(session_id, None)
        self._ownerless_since.pop(session_id, None)
        for group in list(self.remote_groups.values()):
            if group.session == session_id:
                for sub in list(group.subs):
                    sub.outbox.close()

    # -- messages ----------------------------------------------------------------------------

    def publish(self, channel: str, data: bytes) -> bool:
        """Queue one message (never blocks). Dropped, and counted, while Redis is away."""
        if not self._redis_ok or len(self._out) >= MAX_OUTGOING:
            self.counters.publish_dropped += 1
            return False
        self._out.append((channel, data))
        self._out_wake.set()
        return True

    def _on_message(self, channel: bytes, data: bytes) -> None:
        name = channel.decode()
        group = self.remote_groups.get(name)
        if group is not None:
            self.counters.relayed_in += 1
            if group.deliver(data):
                self._ask_keyframe(group, force=False)
            return
        is_request = name == self.keys.node_channel(self.node_id)
        if not is_request and name != self.keys.broadcast:
            self.counters.relayed_late += 1  # a group this node just left: still in flight
            return
        try:
            message = msgpack.unpackb(data, raw=False)
            if is_request:
                self._on_request(message)
            else:
                self._on_broadcast(message)
        except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as exc:
            log.warning("cluster: bad message", extra={"channel": name, "reason": str(exc)})

    def _on_request(self, m: list[Any]) -> None:
        kind = m[0]
        if kind == "C":
            self._apply_capture(m[1], m[2], m[3], m[4])
        elif kind in ("W", "K"):
            key = StreamKey(str(m[1]), int(m[2]), DeltaMode(int(m[3])), int(m[4]))
            relay = self._ensure_relay(key.session, key)
            if kind == "K" and relay is not None and relay.sub.group is not None:
                self._answer_keyframe(relay, str(m[5]))
        elif kind == "k":
            key = StreamKey(str(m[1]), int(m[2]), DeltaMode(int(m[3])), int(m[4]))
            group = self.remote_groups.get(self.keys.group_channel(key))
            if group is not None and m[5] is not None:
                group.offer_keyframe(bytes(m[5]), None if m[6] is None else bytes(m[6]))

    def _answer_keyframe(self, relay: Relay, reply_to: str) -> None:
        runtime = self.runtime
        sub = relay.sub
        session = runtime.engine.sessions.get(sub.session)
        streams = runtime.rig_streams.get(session.rig) if session else None
        if session is None or streams is None or sub.group is None:
            return
        keyframe = streams.private_keyframe(sub.group)
        if keyframe is None:
            return  # the group's first frame is a keyframe, on the channel, for everyone
        state = encode_event(sub.sid, runtime.t_ms(), EventKind.STATE, session.state.value)
        key = sub.key
        self.publish(
            self.keys.node_channel(reply_to),
            _pack(["k", key.session, key.lod, int(key.mode), key.bits, keyframe, state]),
        )

    def _apply_capture(self, session_id: str, arkit: bytes, rotations: bytes, kind: str) -> None:
        runtime = self.runtime
        session = runtime.engine.sessions.get(session_id)
        if session is None or len(arkit) != 4 * ARKIT_COUNT or len(rotations) != 4 * ROTATION_COUNT:
            runtime.counters.publish_rejected += 1
            return
        runtime.engine.push_capture(
            session_id,
            np.frombuffer(arkit, np.float32),
            np.frombuffer(rotations, np.float32),
            runtime.now(),
        )
        session.source = str(kind)
        runtime.counters.publish_messages += 1
        self.counters.captures_applied += 1
        if session_id in runtime.subscribers:
            runtime.kick()

    def _on_broadcast(self, m: list[Any]) -> None:
        kind, session_id = m[0], str(m[1])
        self._fresh_at[session_id] = time.monotonic()
        if kind == "N":
            meta = SessionMeta(str(m[3]), str(m[4]), int(m[5]), int(m[6]), str(m[7]))
            self.meta[session_id] = meta
            self._owner_changed(session_id, str(m[2]))
        elif kind == "O":
            if session_id in self.meta:
                self._owner_changed(session_id, str(m[2]))
        elif kind == "D" and session_id not in self.runtime.engine.sessions:
            self._forget_session(session_id)

    # -- loops -------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_PERIOD_S)
            try:
                await asyncio.wait_for(self.redis.ping(), COMMAND_TIMEOUT_S)
            except (redis.RedisError, OSError, TimeoutError) as exc:
                self.report_redis_error(exc)
                continue
            if not self._redis_ok:
                await self._rejoin()

    async def _rejoin(self) -> None:
        """Redis answers again: re-claim leases and re-register what it may have lost."""
        try:
            if self._epoch_agreed:  # Redis restarted empty: keep the clock everyone uses
                epoch_ms = int((time.time() - (self.runtime.now() - self.runtime.t0)) * 1000)
                await self.redis.set(self.keys.epoch, epoch_ms, nx=True)
            # Sessions whose metadata Redis lost (restarted without persistence) are
            # re-registered by the next registry round; put their count back too. Metadata
            # never expires, so a paused Redis (SIGSTOP) loses none and nothing is counted twice.
            owned = [s for s in self.owned if s in self.meta and s not in self._unregistered]
            if owned:
                pipe = self.redis.pipeline(transaction=False)
                for session_id in owned:
                    pipe.exists(self.keys.meta(session_id))
                per_tenant: dict[str, int] = defaultdict(int)
                for session_id, present in zip(owned, await pipe.execute(), strict=True):
                    if not present:
                        per_tenant[self.meta[session_id].tenant] += 1
                for tenant, n in per_tenant.items():
                    await self.redis.incrby(self.keys.quota_sessions(tenant), n)
            if not self._epoch_agreed:  # started while Redis was away
                await self._agree_on_epoch()
            for tenant, owed in list(self.quotas.owed_sessions.items()):
                if owed > 0:
                    await self.redis.incrby(self.keys.quota_sessions(tenant), owed)
                elif owed < 0:
                    await self._release_counter(
                        keys=[self.keys.quota_sessions(tenant)], args=[-owed]
                    )
                del self.quotas.owed_sessions[tenant]
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self.report_redis_error(exc)
            return
        self._unregistered |= self.owned
        self._grace_until = time.monotonic() + self.lease_s
        self._redis_ok = True
        self._registry_wake.set()
        for relay in self.relays.values():
            self._force_keyframe(relay)
        for group in self.remote_groups.values():
            self._ask_keyframe(group, force=True)
        log.info("redis reachable again: rejoined", extra={"node": self.node_id})

    async def _registry_loop(self) -> None:
        """Every quarter lease (or when woken): register new sessions, renew leases, tell the
        owners which groups this node still relays, and refresh this node's liveness."""
        period = self.lease_s / 4
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._registry_wake.wait(), period)
            self._registry_wake.clear()
            self._maintain_relays()
            if not self._redis_ok:
                continue
            try:
                await self._registry_round()
            except (redis.RedisError, OSError, TimeoutError) as exc:
                self.report_redis_error(exc)

    async def _registry_round(self) -> None:
        keys, me, lease_ms = self.keys, self.node_id, int(self.lease_s * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.node(me), self.advertise_url, px=2 * lease_ms)
        pipe.sadd(keys.nodes, me)
        for tenant, count in self.quotas.local_subscriber_counts().items():
            pipe.set(keys.quota_subscribers(tenant, me), count, ex=SUBSCRIBER_COUNT_TTL_S)
        registering = [s for s in self._unregistered if s in self.meta]
        renewing = [s for s in self.owned if s not in self._unregistered]
        for session_id in registering:
            meta = self.meta[session_id]
            await self._register(
                keys=[keys.owner(session_id), keys.meta(session_id), keys.sessions],
                args=[me, lease_ms, session_id, *meta.fields()],
                client=pipe,
            )
        for session_id in renewing:
            await self._renew(keys=[keys.owner(session_id)], args=[me, lease_ms], client=pipe)
        deleting = sorted(self._deleted)
        for session_id in deleting:
            pipe.srem(keys.sessions, session_id)
            pipe.delete(keys.meta(session_id), keys.owner(session_id))
        results = await pipe.execute()
        for session_id in deleting:
            self._deleted.discard(session_id)
            self.publish(keys.broadcast, _pack(["D", session_id]))
        if deleting:
            results = results[: len(results) - 2 * len(deleting)]
        n_fixed = 2 + len(self.quotas.local_subscriber_counts())
        outcome = results[n_fixed:]
        for session_id, ok in zip(registering, outcome[: len(registering)], strict=True):
            self._unregistered.discard(session_id)
            if ok:
                meta = self.meta[session_id]
                self.publish(keys.broadcast, _pack(["N", session_id, me, meta.rig, meta.tenant,
                                                    meta.fps, meta.lod, meta.source]))  # fmt: skip
            else:
                log.warning("session id taken by another node", extra={"session": session_id})
                self._demote(session_id, duplicate=True)
        for session_id, ok in zip(renewing, outcome[len(registering) :], strict=True):
            if not ok:
                self._demote(session_id)
        for group in self.remote_groups.values():  # keep the owners relaying what we need
            owner = self.owners.get(group.session)
            if owner is not None and owner != me:
                key = group.key
                want = ["W", key.session, key.lod, int(key.mode), key.bits]
                self.publish(keys.node_channel(owner), _pack(want))

    async def _scan_loop(self) -> None:
        """Refresh the registry cache and take over sessions whose owner's lease lapsed."""
        period = self.lease_s * SCAN_FRACTION
        while True:
            await asyncio.sleep(period)
            if not self._redis_ok:
                continue
            try:
                await self._scan(period)
            except (redis.RedisError, OSError, TimeoutError) as exc:
                self.report_redis_error(exc)

    async def _scan(self, period: float) -> None:
        keys = self.keys
        started = time.monotonic()
        ids = sorted(_text(s) for s in await self.redis.smembers(keys.sessions))
        owners = await self.redis.mget([keys.owner(s) for s in ids]) if ids else []
        unknown = [s for s in ids if s not in self.meta]
        if unknown:
            pipe = self.redis.pipeline(transaction=False)
            for session_id in unknown:
                pipe.hgetall(keys.meta(session_id))
            for session_id, raw in zip(unknown, await pipe.execute(), strict=True):
                meta = SessionMeta.from_hash(raw)
                if meta is not None:
                    self.meta[session_id] = meta
        listed = set(ids)
        for session_id in [s for s in self.meta if s not in listed]:
            if session_id not in self.owned and self._fresh_at.get(session_id, 0.0) < started:
                self._forget_session(session_id)
        now = time.monotonic()
        interested = {g.session for g in self.remote_groups.values()}
        for session_id, raw_owner in zip(ids, owners, strict=True):
            if self._fresh_at.get(session_id, 0.0) >= started:
                continue  # a broadcast during this scan knows better
            owner = _text(raw_owner) if raw_owner is not None else None
            self._owner_changed(session_id, owner)
            if owner is not None:
                self._ownerless_since.pop(session_id, None)
                continue
            since = self._ownerless_since.setdefault(session_id, now)
            # A node relaying the session to its own viewers tries first; others a scan later.
            waited = now - since >= period or session_id in interested
            if now < self._grace_until or not waited or session_id in self.owned:
                continue
            meta = self.meta.get(session_id)
            if meta is None:
                continue
            if await self.redis.set(keys.owner(session_id), self.node_id, nx=True,
                                    px=int(self.lease_s * 1000)):  # fmt: skip
                try:
                    self._adopt(session_id, meta)
                except Exception as exc:  # a rig this node cannot load: let another try
                    log.error("takeover failed", extra={"session": session_id, "reason": str(exc)})
                    await self._release(keys=[keys.owner(session_id)], args=[self.node_id])

    async def _listen_loop(self) -> None:
        """One pub/sub connection: this node's channel, the broadcast, every relayed group."""
        backoff = 0.05
        while True:
            pubsub = self._pubsub_redis.pubsub(ignore_subscribe_messages=True)
            try:
                channels = [self.keys.node_channel(self.node_id), self.keys.broadcast,
                            *self.remote_groups]  # fmt: skip
                await asyncio.wait_for(pubsub.subscribe(*channels), COMMAND_TIMEOUT_S)
                self._pubsub = pubsub
                backoff = 0.05
                for group in self.remote_groups.values():
                    self._ask_keyframe(group, force=True)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._on_message(message["channel"], message["data"])
                        # Messages that queued up while the loop was busy come back without a
                        # suspension; let the subscribers' writers take each frame before the
                        # next one, or latest-wins outboxes would drop the burst's deltas.
                        await asyncio.sleep(0)
            except (redis.RedisError, OSError, TimeoutError) as exc:
                self.report_redis_error(exc)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), COMMAND_TIMEOUT_S)  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def _pubsub_call(self, op: str, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # the listener subscribes to every current group when it reconnects
        try:
            await asyncio.wait_for(getattr(pubsub, op)(channel), COMMAND_TIMEOUT_S)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self.report_redis_error(exc)

    async def _publish_loop(self) -> None:
        """Drain the outgoing queue in pipelined batches, in order (one connection)."""
        while True:
            await self._out_wake.wait()
            self._out_wake.clear()
            while self._out:
                n = min(PUBLISH_BATCH, len(self._out))
                batch = [self._out.popleft() for _ in range(n)]
                if not self._redis_ok:
                    self.counters.publish_dropped += n
                    continue
                pipe = self.redis.pipeline(transaction=False)
                for channel, data in batch:
                    pipe.publish(channel, data)
                try:
                    await pipe.execute()
                    self.counters.published += n
                except (redis.RedisError, OSError, TimeoutError) as exc:
                    self.counters.publish_dropped += n
                    self.report_redis_error(exc)

    async def _quota_loop(self) -> None:
        """Add this node's publish counts to the global per-second windows."""
        while True:
            await asyncio.sleep(PUBLISH_FLUSH_S)
            counts = self.quotas.take_published()
            if not counts or not self._redis_ok:
                continue
            window = int(time.time())
            pipe = self.redis.pipeline(transaction=False)
            for tenant, n in counts.items():
                key = self.keys.quota_publish(tenant, window)
                pipe.incrby(key, n)
                pipe.expire(key, 3)
            try:
                results = await pipe.execute()
            except (redis.RedisError, OSError, TimeoutError) as exc:
                self.report_redis_error(exc)
                continue
            for tenant, total in zip(counts, results[::2], strict=True):
                self.quotas.window_total(tenant, window, int(total))

    # -- misc --------------------------------------------------------------------------------

    async def owner_url(self, session_id: str) -> str | None:
        """The HTTP base URL of the session's owner (None: no live owner right now)."""
        owner = self.owners.get(session_id)
        if owner is None or owner == self.node_id:
            return None
        url = self.node_urls.get(owner)
        if url is None and self._redis_ok:
            try:
                raw = await self.redis.get(self.keys.node(owner))
            except (redis.RedisError, OSError, TimeoutError) as exc:
                self.report_redis_error(exc)
                return None
            if raw is not None:
                url = self.node_urls[owner] = _text(raw)
        return url

    async def peer_urls(self) -> list[str]:
        """HTTP base URLs of every other live node (none while Redis is away)."""
        if not self._redis_ok:
            return []
        try:
            nodes = sorted(_text(n) for n in await self.redis.smembers(self.keys.nodes))
            nodes = [n for n in nodes if n != self.node_id]
            urls = await self.redis.mget([self.keys.node(n) for n in nodes]) if nodes else []
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self.report_redis_error(exc)
            return []
        return [_text(u) for u in urls if u is not None]

    def owner_unreachable(self, session_id: str) -> None:
        """A proxied request failed: look the owner's URL up again next time."""
        owner = self.owners.get(session_id)
        if owner is not None:
            self.node_urls.pop(owner, None)

    def http_client(self) -> Any:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=3.0)
        return self._http

    def _spawn(self, coro: Awaitable[Any]) -> None:
        """Fire-and-forget with a strong reference (the loop only keeps weak ones)."""
        if self._stopping:
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pack(message: Iterable[Any]) -> bytes:
    out: bytes = msgpack.packb(list(message), use_bin_type=True)
    return out
