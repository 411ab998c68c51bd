"""Source routing: which session a capture source drives.

The embedded default must just work for someone pointing a phone at the server: a Live Link
subject name (or ``vmc`` / ``ifacialmocap`` / ``publish-<pid>``) *is* the session id, and the
session is created on the first valid frame with the default rig. Configured routes override
that per source, and ``create_on_first_packet=False`` turns auto-creation off (unrouted frames
are then dropped and counted).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from avatar_engine.ingest.sink import SessionFactory

MAX_SESSION_ID: Final = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_session_id(name: str) -> str:
    """A URL-path-safe session id from a free-form name (``Jo's iPhone`` -> ``Jo-s-iPhone``)."""
    cleaned = _UNSAFE.sub("-", name.strip()).strip("-.")
    return cleaned[:MAX_SESSION_ID] or "capture"


@dataclass(slots=True)
class RoutingConfig:
    """How capture sources map to sessions (docs/ingest.md, "Routing").

    ``routes`` keys are ``"<kind>:<key>"`` (``livelink:iPhone``, ``vmc:192.168.1.20``,
    ``ifacialmocap:192.168.1.21``, ``publish-udp:7``) or a bare key matching any kind; values are
    session ids.
    """

    routes: dict[str, str] = field(default_factory=dict)
    create_on_first_packet: bool = True
    default_rig: str = "cc4-extended"
    max_auto_sessions: int = 32
    """Sessions one sender (address) may auto-create: a sender spraying subject names cannot
    make more. Other senders are not affected (200 phones make 200 sessions); the total is
    bounded by the session quota of the factory."""
    allowlist: tuple[str, ...] = ()
    """Routing keys (subjects, device ids, sender hosts, publisher ids) allowed in; empty means
    any. A key outside a non-empty list is dropped as ``unrouted``."""


def _always(session_id: str, rig: str) -> bool:
    return True


class Router:
    """Resolves ``(kind, key)`` to a session id, creating sessions through a factory.

    Results are cached (bounded LRU), so the factory runs once per new key, not per frame.
    """

    __slots__ = ("_auto", "_cache", "_factory", "config")

    _CACHE_LIMIT: Final = 1024
    _SENDER_LIMIT: Final = 4096
    """Senders whose auto-created sessions are counted (an LRU; the oldest is forgotten)."""

    def __init__(self, config: RoutingConfig | None = None, factory: SessionFactory | None = None):
        self.config = config or RoutingConfig()
        self._factory: SessionFactory = factory or _always
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._auto: OrderedDict[str, set[str]] = OrderedDict()
        """Sender -> the sessions it auto-created."""

    def resolve(self, kind: str, key: str, default_session: str, sender: str = "") -> str | None:
        """The session for this source, or None when it is not routed (drop ``unrouted``).

        ``sender`` (the datagram's address) is what ``max_auto_sessions`` is counted against.
        """
        cache_key = (kind, key)
        cached = self._cache.get(cache_key)  # only sessions are cached, never a refusal
        if cached is not None:
            self._cache.move_to_end(cache_key)
            return cached
        found = self._resolve(kind, key, default_session, sender)
        if found is not None:  # refusals are retried (a quota may free up)
            self._cache[cache_key] = found
            if len(self._cache) > self._CACHE_LIMIT:
                self._cache.popitem(last=False)
        return found

    def _resolve(self, kind: str, key: str, default_session: str, sender: str) -> str | None:
        allow = self.config.allowlist
        if allow and key not in allow and f"{kind}:{key}" not in allow:
            return None
        routes = self.config.routes
        target = routes.get(f"{kind}:{key}", routes.get(key))
        if target is not None:
            return target if self._factory(target, self.config.default_rig) else None
        if not self.config.create_on_first_packet:
            return None
        session_id = sanitize_session_id(default_session)
        created = self._auto.get(sender)
        if created is None:
            created = self._auto[sender] = set()
            if len(self._auto) > self._SENDER_LIMIT:
                self._auto.popitem(last=False)
        self._auto.move_to_end(sender)
        if session_id not in created:
            if len(created) >= self.config.max_auto_sessions:
                return None
            if not self._factory(session_id, self.config.default_rig):
                return None
            created.add(session_id)
        return session_id

    def forget(self, session_id: str) -> None:
        """Call when a session is deleted, so the next frame re-creates (or re-resolves) it."""
        for cache_key in [k for k, v in self._cache.items() if v == session_id]:
            del self._cache[cache_key]
        for created in self._auto.values():
            created.discard(session_id)
