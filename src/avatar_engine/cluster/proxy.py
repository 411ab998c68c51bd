"""REST requests about a session owned by another node go to that node, over HTTP.

Every HTTP request under ``/sessions/{id}`` — ``GET``/``DELETE`` of the session, inputs
(``/speak``, ``/text``, ``/emotion``, ``/state``, ``/look``), egress attachments, and whatever
route is added there later — is answered by the owner, so its validation, auth and error bodies
apply unchanged and nothing about those routes is duplicated here. (WebSocket streams and
publishers are not proxied: any node serves them, through the relay.) The proxy adds one
loopback/LAN round trip; capture frames, which arrive at 60 per second, take the pub/sub path
instead (:mod:`avatar_engine.cluster.forwarding`). A forwarded request carries
:data:`FORWARDED_HEADER` and is never forwarded again, so two nodes that disagree for a moment
about the owner cannot bounce a request between them.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Final, Protocol

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORWARDED_HEADER: Final = "x-avatar-engine-forwarded"
_PATH: Final = re.compile(r"^/sessions/([^/]+)(?:/.*)?$")
_PASSED_HEADERS: Final = ("authorization", "content-type")
LIST_TIMEOUT_S: Final = 2.0


class ProxyCounters(Protocol):
    """The counter the proxy adds to (requests forwarded)."""

    proxied: int


class Owners(Protocol):
    """What the proxy asks of the cluster: who owns a session, and where the nodes are."""

    node_id: str

    @property
    def counters(self) -> ProxyCounters:
        """Cluster counters (``proxied``)."""
        ...

    def owned_elsewhere(self, session_id: str) -> bool:
        """A session another node animates."""
        ...

    async def owner_url(self, session_id: str) -> str | None:
        """The owner's HTTP base URL (None while the session moves)."""
        ...

    async def peer_urls(self) -> list[str]:
        """Every other live node's HTTP base URL."""
        ...

    def owner_unreachable(self, session_id: str) -> None:
        """A forwarded request failed: look the owner up again next time."""
        ...

    def http_client(self) -> httpx.AsyncClient:
        """The client forwarded requests go out on."""
        ...


class OwnerProxy:
    """ASGI middleware: forward session requests this node cannot answer to the owner."""

    def __init__(self, app: ASGIApp, node: Owners) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        match = _PATH.match(scope["path"])
        method = scope["method"]
        request = Request(scope, receive)
        forwarded = request.headers.get(FORWARDED_HEADER)
        if scope["path"].rstrip("/") == "/sessions" and method == "GET" and not forwarded:
            await self._list_everywhere(scope, receive, send, request)
            return
        if match is None or forwarded:
            await self.app(scope, receive, send)
            return
        session_id = match.group(1)
        if not self.node.owned_elsewhere(session_id):
            await self.app(scope, receive, send)
            return
        url = await self.node.owner_url(session_id)
        if url is None:
            response: Response = JSONResponse(
                {"error": "unavailable", "detail": f"session {session_id!r} is moving to "
                 "another node; retry in a second"},
                status_code=503, headers={"Retry-After": "1"},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k in _PASSED_HEADERS}
        headers[FORWARDED_HEADER] = self.node.node_id
        target = url + scope["path"] + (f"?{scope['query_string'].decode()}"
                                        if scope.get("query_string") else "")  # fmt: skip
        try:
            upstream = await self.node.http_client().request(
                method, target, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            self.node.owner_unreachable(session_id)
            response = JSONResponse(
                {"error": "unavailable", "detail": f"owner of {session_id!r} unreachable: "
                 f"{type(exc).__name__}; retry in a second"},
                status_code=503, headers={"Retry-After": "1"},
            )  # fmt: skip
        else:
            self.node.counters.proxied += 1
            keep = ("content-type", "www-authenticate", "retry-after")
            passed = {k: v for k, v in upstream.headers.items() if k.lower() in keep}
            response = Response(upstream.content, status_code=upstream.status_code, headers=passed)
        await response(scope, receive, send)

    async def _list_everywhere(
        self, scope: Scope, receive: Receive, send: Send, request: Request
    ) -> None:
        """``GET /sessions``: this node's answer plus every other live node's, merged (the same
        caller's token goes to each, so each node applies its own tenant filter). A node that
        does not answer within the timeout is left out and the answer says ``partial``."""
        status, headers, chunks = 500, [], []

        async def capture(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if status != 200:
            local: Response = Response(body, status_code=status)
            local.raw_headers = list(headers)
            await local(scope, receive, send)
            return
        sessions: list[Any] = json.loads(body).get("sessions", [])
        seen = {s.get("id") for s in sessions}
        query = scope.get("query_string", b"").decode()
        pass_on = {k: v for k, v in request.headers.items() if k in _PASSED_HEADERS}
        pass_on[FORWARDED_HEADER] = self.node.node_id
        client = self.node.http_client()

        async def ask(url: str) -> list[Any] | None:
            try:
                reply = await client.get(
                    f"{url}/sessions" + (f"?{query}" if query else ""),
                    headers=pass_on, timeout=LIST_TIMEOUT_S,
                )  # fmt: skip
                listed: list[Any] = reply.json().get("sessions", [])
                return listed if reply.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                return None

        answers = await asyncio.gather(*(ask(u) for u in await self.node.peer_urls()))
        for answer in answers:
            for item in answer or []:
                if item.get("id") not in seen:
                    seen.add(item.get("id"))
                    sessions.append(item)
        out: dict[str, Any] = {"sessions": sessions}
        if any(a is None for a in answers):
            out["partial"] = True
        await JSONResponse(out)(scope, receive, send)
