"""Every bound a request meets, in one place, and the ASGI gate that enforces body limits.

Why one module: a limit that lives next to the code it protects gets forgotten by the next
route. The numbers here are the ones docs/server.md ("Limits") states; routes and input
models import them instead of writing their own.

The :class:`BodyGate` sits in front of the app. It refuses a declared ``Content-Length`` over
the limit at once, counts bytes while the body is read (chunked uploads included) and stops
the read at the limit, and, with auth on, authenticates a request that carries a body before
a single byte of it is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from starlette.exceptions import HTTPException

from avatar_engine.server.errors import CapacityError, error_response

MAX_TEXT_CHARS: Final = 20_000
"""Characters of text per ``/speak`` or ``/text`` request (longer text: send deltas)."""
MAX_TIMING_ENTRIES: Final = 20_000
"""Entries in one ``/speak`` timing list (phonemes, Azure events, words)."""
MAX_POLLY_CHARS: Final = 2_000_000
"""Characters of Polly speech marks (JSON lines) in one ``/speak`` request."""
MAX_UTTERANCE_S: Final = 300.0
"""Latest end time of one timed utterance (``/speak`` timings), in seconds. A TTS clip is
seconds long; an end at 1e6 s would make the co-articulation allocate gigabytes."""
MAX_WAV_BYTES: Final = 16 * 1024 * 1024
"""Largest WAV body (``max_message_bytes`` applies first when it is smaller)."""
MAX_CONTROL_BYTES: Final = 4096
"""Largest client -> server message on a stream (CONTROL, PING)."""
MAX_URL_BYTES: Final = 512 * 1024
"""Request line and headers uvicorn accepts before it answers a plain-text 400 (h11's
incomplete-event limit). A ``?text=`` of 20,000 characters percent-encoded is up to 240 KB,
so any query a parameter could accept reaches validation (422 in the documented shape)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class UtteranceTooLongError(CapacityError):
    """Timed speech beyond :data:`MAX_UTTERANCE_S` (HTTP 413 with this message)."""


def check_utterance_end(end_s: float) -> None:
    """Refuse timings that end later than :data:`MAX_UTTERANCE_S` (before any allocation)."""
    if not end_s <= MAX_UTTERANCE_S:
        raise UtteranceTooLongError(
            f"the timings end at {end_s:g} s; one utterance may last at most "
            f"{MAX_UTTERANCE_S:g} s (send longer speech as several requests)"
        )


_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


class BodyGate:
    """ASGI middleware: body size while reading, and authentication before reading.

    ``authenticate(scope)`` returns the response that refuses a request whose token is
    missing or invalid (None to let it in); it runs only for requests with a body and only
    when given (auth on). Scope and session checks stay with the runtime.
    """

    def __init__(
        self,
        app: Asgi,
        *,
        max_bytes: int,
        authenticate: Callable[[Scope], Asgi | None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, _Counter(receive, self.max_bytes), send)

    def _refusal(self, scope: Scope) -> Asgi | None:
        length = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                length = value
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return error_response(400, "bad_request", "Content-Length is not a number")
            if declared > self.max_bytes:
                return _too_large(self.max_bytes)
        if self.authenticate is not None:
            return self.authenticate(scope)
        return None


def _too_large(limit: int) -> Asgi:
    return error_response(413, "too_large", f"the body is over {limit} bytes")


class _Counter:
    """A ``receive`` that stops the body at ``limit`` bytes (a 413 through the handlers)."""

    __slots__ = ("_limit", "_receive", "_seen")

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._seen = 0

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                raise HTTPException(413, f"the body is over {self._limit} bytes")
        return message
