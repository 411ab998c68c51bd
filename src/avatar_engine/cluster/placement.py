"""Cluster mode's placement: many ``avatar-engine serve`` nodes behaving as one service.

Each node animates the sessions it **owns** (exactly like the single-process server) and
accepts every client for every session; this class answers the runtime's
:class:`~avatar_engine.server.placement.Placement` questions from the parts that keep the
cluster's state, one module each:

- :mod:`~avatar_engine.cluster.link`: the Redis clients, its health and the outgoing queue;
- :mod:`~avatar_engine.cluster.registry`: session metadata, owners and this node's leases;
- :mod:`~avatar_engine.cluster.viewers` and :mod:`~avatar_engine.cluster.owner_relays`: the two
  sides of the frame relay (subscribers of sessions owned elsewhere; groups others want);
- :mod:`~avatar_engine.cluster.forwarding`: capture frames to the owner;
  :mod:`~avatar_engine.cluster.proxy`: REST requests to the owner;
- :mod:`~avatar_engine.cluster.loops`: the background loops; :mod:`~avatar_engine.cluster.epoch`:
  one stream clock for all nodes.

Here: what a change of owner means for this node (take a session over, hand one back), and
which part each pub/sub message is for. Nothing local depends on Redis (docs/deploy.md).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import numpy.typing as npt

from avatar_engine.cluster.epoch import StreamEpoch
from avatar_engine.cluster.forwarding import CaptureForwarding
from avatar_engine.cluster.keys import Keys, stream_sid
from avatar_engine.cluster.link import ClusterCounters, RedisLink, pack
from avatar_engine.cluster.loops import BackgroundLoops
from avatar_engine.cluster.owner_relays import OwnerRelays
from avatar_engine.cluster.quotas import RedisQuotas
from avatar_engine.cluster.registry import Registry, SessionMeta
from avatar_engine.cluster.viewers import RemoteViewers
from avatar_engine.codec.wire import AudioCodec, DeltaMode
from avatar_engine.engine.engine import SessionExistsError
from avatar_engine.engine.sessions import Session, SessionState
from avatar_engine.ingest.sink import SourceInfo
from avatar_engine.server.auth import Principal
from avatar_engine.server.placement import PlacementHost
from avatar_engine.server.quotas import QuotaLimits
from avatar_engine.server.streams import StreamKey, Subscriber

if TYPE_CHECKING:
    import httpx
    from starlette.applications import Starlette

log = logging.getLogger("avatar_engine.cluster")


class ClusterPlacement:
    """This process's membership of the cluster (``runtime.placement`` with ``--redis``)."""

    def __init__(self, host: PlacementHost) -> None:
        options = host.options
        assert options.redis_url, "cluster mode needs a Redis URL"
        self.host = host
        self.node_id = options.node_id or f"node-{secrets.token_hex(4)}"
        self.keys = keys = Keys(options.cluster_prefix)
        lease_s = options.cluster_lease_ms / 1000
        advertise_url = (
            options.cluster_advertise_url or f"http://{options.host}:{options.port}"
        ).rstrip("/")
        self.counters = counters = ClusterCounters()
        self.link = link = RedisLink(options.redis_url, counters)
        self.quotas = RedisQuotas(
            QuotaLimits(options.max_sessions, options.max_subscribers, options.max_publish_rate),
            host.clock.now, url=options.redis_url, keys=keys, node_id=self.node_id, health=link,
        )  # fmt: skip
        self.registry = Registry(link, keys, self.node_id, lease_s, advertise_url, self.quotas,
                                 self)  # fmt: skip
        self.viewers = RemoteViewers(link, keys, self.registry, host, self.quotas, counters)
        self.relays = OwnerRelays(link, keys, host, lease_s)
        self.forwarding = CaptureForwarding(link, keys, self.registry, host, self.quotas,
                                            counters)  # fmt: skip
        self.epoch = StreamEpoch(link, keys, host)
        self.loops = BackgroundLoops(link, keys, self.registry, self.epoch, self.viewers,
                                     self.relays, self.quotas, self.on_messages)  # fmt: skip
        self.advertise_url = advertise_url
        self._http: httpx.AsyncClient | None = None

    # -- the runtime's questions (server/placement.py, Placement) ----------------------------

    def sid(self, session_id: str, mode: DeltaMode, bits: int) -> int:
        """The hash of the session's stream: every node announces the owner's sid."""
        return stream_sid(session_id, mode, bits)  # every node announces the owner's sid

    def owned_elsewhere(self, session_id: str) -> bool:
        """A session the registry knows that this node does not animate."""
        return (self.host.local_session(session_id) is None
                and session_id in self.registry.meta)  # fmt: skip

    def check_new(self, session_id: str | None) -> None:
        """Refuse an id another node already has (the registry write re-checks atomically)."""
        if session_id is not None and self.owned_elsewhere(session_id):
            raise SessionExistsError(f"session {session_id!r} exists")

    def authorize(self, principal: Principal, session_id: str) -> None:
        """Only the tenant's sessions (others: 404), from the registry's metadata."""
        self.viewers.authorize(principal, session_id)

    def on_created(self, session: Session) -> None:
        """Register the session (at the next registry round, or now: the round is woken)."""
        self.registry.created(session)

    def on_deleted(self, session: Session) -> None:
        """Remove it from the registry (kept queued across a Redis outage) and drop its relays."""
        self.registry.deleted_here(session.id)
        self.relays.forget_session(session.id)

    def subscribe_remote(
        self, principal: Principal, session_id: str, *,
        lod: int, mode: DeltaMode, bits: int, transport: str, audio: AudioCodec,
    ) -> Subscriber:  # fmt: skip
        """A viewer on this node of a group (and its voice) relayed from the owner."""
        return self.viewers.subscribe(principal, session_id, lod=lod, mode=mode, bits=bits,
                                      transport=transport, audio=audio)  # fmt: skip

    def is_remote(self, sub: Subscriber) -> bool:
        """The subscriber's frames come through the relay."""
        return sub in self.viewers.subs

    def set_remote_lod(self, sub: Subscriber, lod: int) -> None:
        """Move a relayed viewer to another group channel (a keyframe follows)."""
        self.viewers.set_lod(sub, lod)

    def request_remote_keyframe(self, sub: Subscriber) -> None:
        """Ask the owner for a private keyframe (rate-limited per group)."""
        self.viewers.request_keyframe(sub)

    def forget(self, sub: Subscriber) -> None:
        """A subscriber is leaving (any kind): drop it from the relay side if it was relayed."""
        self.viewers.detach(sub)

    def forward_capture(
        self, session_id: str, arkit: npt.NDArray[np.float32],
        rotations: npt.NDArray[np.float32], source: SourceInfo,
    ) -> bool:  # fmt: skip
        """Send the frame to the owner's node channel (quota checked here)."""
        return self.forwarding.forward(session_id, arkit, rotations, source)

    def health(self) -> dict[str, object]:
        """``status`` degraded while Redis is unreachable, and the node's summary."""
        cluster = self._health()
        return {"status": cluster["status"], "cluster": cluster}

    def _health(self) -> dict[str, object]:
        ok = self.link.redis_ok
        return {
            "status": "ok" if ok else "degraded",
            "node": self.node_id,
            "redis": "ok" if ok else "unreachable",
            "owned": len(self.registry.owned),
        }

    def stats(self) -> dict[str, object]:
        """The node's cluster counters under ``cluster``."""
        return {
            "cluster": {
                **self._health(),
                "known_sessions": len(self.registry.meta),
                "relays_out": len(self.relays.relays),
                "relayed_groups_in": len(self.viewers.groups),
                "relayed_subscribers": len(self.viewers.subs),
                "voice_nodes": len(self.registry.voice_nodes),
                "outgoing_queue": self.link.queued,
                "counters": vars(self.counters).copy(),
                "quota_global_refusals": self.quotas.global_refusals,
            }
        }

    def install(self, app: Starlette) -> None:
        """Add the REST proxy: inputs for sessions owned elsewhere go to their owner."""
        from avatar_engine.cluster.proxy import OwnerProxy

        app.add_middleware(OwnerProxy, node=self)

    async def start(self) -> None:
        """Join: agree on the stream clock and start the loops (Redis may be down: we retry)."""
        await self.loops.start()
        log.info("cluster node started", extra={"node": self.node_id, "url": self.advertise_url})

    async def stop(self) -> None:
        """Leave: hand owned sessions over at once (release the leases), stop the loops."""
        await self.loops.stop()
        if self._http is not None:
            await self._http.aclose()
        await self.link.close()
        self.quotas.close()

    # -- what the REST proxy asks (cluster/proxy.py, Owners) ---------------------------------

    async def owner_url(self, session_id: str) -> str | None:
        """The owner's HTTP base URL (None while the session moves)."""
        return await self.registry.owner_url(session_id)

    async def peer_urls(self) -> list[str]:
        """Every other live node's HTTP base URL."""
        return await self.registry.peer_urls()

    def owner_unreachable(self, session_id: str) -> None:
        """Forget the owner's URL (looked up again next time)."""
        self.registry.owner_unreachable(session_id)

    def http_client(self) -> httpx.AsyncClient:
        """One HTTP client for the proxy, made on first use, closed at stop."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=3.0)
        return self._http

    # -- ownership changes (cluster/registry.py, RegistryEvents) -----------------------------

    def adopt(self, session_id: str, meta: SessionMeta) -> None:
        """Take a session over: recreate it here, degraded until input arrives again."""
        host = self.host
        if host.local_session(session_id) is not None:
            return
        session = host.take_over(session_id, meta)
        self.quotas.adopt_session(meta.tenant)
        self.registry.adopted(session_id)
        self.counters.takeovers += 1
        # This node's relayed subscribers of the session now get it first-hand.
        streams = host.streams_of(session)
        for sub, audio in self.viewers.take_back(session_id):
            host.voice.listen(sub, audio, host.t_ms())
            stream_group = streams.group(sub.key, sub.sid)
            sub.group = stream_group
            stream_group.subscribers.add(sub)
            keyframe = streams.private_keyframe(stream_group)
            if keyframe is not None:
                sub.outbox.offer_frame(keyframe, keyframe=True)
        self.link.publish(self.keys.broadcast, pack(["O", session_id, self.node_id]))
        log.info("session taken over", extra={"session": session_id, "node": self.node_id})

    def demote(self, session_id: str, *, duplicate: bool = False) -> None:
        """Another node owns a session this node was animating (after a partition): stop
        animating it and relay it to the local subscribers instead. ``duplicate``: this node
        created it under an id another node had just taken, so its global count goes too."""
        self.registry.disowned(session_id)
        session = self.host.local_session(session_id)
        if session is None:
            return
        self.counters.lost_leases += 1
        self.relays.drop_session(session_id)
        moved = self.host.end_here(session)
        if duplicate:
            # The winner's metadata may differ (another rig): forget ours, let the scan fetch
            # the real one, and close this copy's viewers (they reconnect to the real one).
            self.quotas.release_session(session.tenant)
            self.registry.meta.pop(session_id, None)
            self.registry.owners.pop(session_id, None)
            for sub in moved:
                sub.outbox.close()
            return
        self.quotas.disown_session(session.tenant)
        for sub in moved:
            self.viewers.rehello(sub)
            self.viewers.attach(sub)
        log.warning("lease lost: relaying instead", extra={"session": session_id})

    def owner_changed(self, session_id: str, owner: str | None) -> None:
        """A session's owner as learned from a scan or a broadcast: hand over, relay or restart."""
        registry = self.registry
        old = registry.set_owner(session_id, owner)
        if owner == old:
            return
        if owner is None:
            self.viewers.tell_state(session_id, SessionState.DEGRADED)
            return
        if owner != self.node_id and session_id in registry.owned:
            registry.last_owner[session_id] = owner
            self.demote(session_id)  # its viewers get a new hello and ask for a keyframe
            return
        restarted = registry.last_owner.get(session_id) not in (None, owner)
        registry.last_owner[session_id] = owner
        self.viewers.owner_moved(session_id, restarted=restarted)

    def forget_session(self, session_id: str) -> None:
        """Deleted in the registry: close its relayed subscribers (the owner closed its own)."""
        self.registry.forget(session_id)
        self.viewers.close_session(session_id)

    # -- messages ----------------------------------------------------------------------------

    def on_messages(self, batch: list[tuple[bytes, bytes]]) -> int:
        """Pub/sub messages (channel, data) the listener read in one go, in order: relayed
        groups' bytes (each group's consecutive frames in one pass), requests to this node,
        broadcasts. Returns how many were handled: up to and including the first that is not
        a frame (the listener yields to the writers, then hands over the rest)."""
        return self.viewers.deliver_all(batch, self._on_message)

    def _on_message(self, name: str, data: bytes) -> None:
        """A message on a channel that is no relayed group's: a request or a broadcast."""
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
            self.forwarding.apply(m[1], m[2], m[3], m[4])
        elif kind in ("W", "K", "k"):
            key = StreamKey(str(m[1]), int(m[2]), DeltaMode(int(m[3])), int(m[4]))
            if kind == "W":  # the codecs: absent from an older node's requests
                self.relays.want(key, None, m[5] if len(m) > 5 else None)
            elif kind == "K":
                self.relays.want(key, str(m[5]), m[6] if len(m) > 6 else None)
            elif m[5] is not None:
                self.viewers.offer_keyframe(key, bytes(m[5]), None if m[6] is None else bytes(m[6]))

    def _on_broadcast(self, m: list[Any]) -> None:
        kind, session_id = m[0], str(m[1])
        self.registry.fresh_at[session_id] = time.monotonic()
        if kind == "N":
            meta = SessionMeta(str(m[3]), str(m[4]), int(m[5]), int(m[6]), str(m[7]))
            self.registry.meta[session_id] = meta
            self.owner_changed(session_id, str(m[2]))
        elif kind == "O":
            if session_id in self.registry.meta:
                self.owner_changed(session_id, str(m[2]))
        elif kind == "D" and self.host.local_session(session_id) is None:
            self.forget_session(session_id)
