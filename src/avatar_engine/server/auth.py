"""JWT bearer tokens: who is calling, for which tenant, with which scopes, on which sessions.

Tokens carry ``tenant`` (default ``default``), ``scope`` (space-separated: ``subscribe``,
``publish``, ``admin``) and ``sessions`` (a list of session ids, or ``"*"``). ``admin`` implies
the other two. HS256 with a shared secret, or RS256/ES256 with a public key. With no key
configured, auth is off: every caller is the anonymous admin of tenant ``default`` (the server
then only binds loopback, see :mod:`avatar_engine.server.config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import jwt

Scope = Literal["subscribe", "publish", "admin"]
SCOPES: Final[frozenset[str]] = frozenset({"subscribe", "publish", "admin"})
DEFAULT_TENANT: Final = "default"


class AuthError(Exception):
    """Authentication failed (401) or the principal lacks a permission (403)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for: subject, tenant, scopes and (optionally) the only sessions
    it may touch."""

    subject: str
    tenant: str
    scopes: frozenset[str]
    sessions: frozenset[str] | None
    """Session ids this principal may touch; None means every session of its tenant."""

    def allows(self, scope: Scope, session_id: str | None = None) -> bool:
        """Whether this principal has ``scope`` (``admin`` implies every scope) for ``session_id``
        (None: any of its sessions)."""
        if "admin" not in self.scopes and scope not in self.scopes:
            return False
        return session_id is None or self.sessions is None or session_id in self.sessions

    def require(self, scope: Scope, session_id: str | None = None) -> None:
        """Like :meth:`allows`, but a refusal raises a 403 :class:`AuthError` that names the missing
        scope or the session."""
        if scope not in self.scopes and "admin" not in self.scopes:
            raise AuthError(403, f"token lacks the {scope!r} scope")
        if session_id is not None and self.sessions is not None and session_id not in self.sessions:
            raise AuthError(403, f"token is not valid for session {session_id!r}")


ANONYMOUS: Final = Principal("anonymous", DEFAULT_TENANT, frozenset({"admin"}), None)


class Authenticator:
    """Verifies bearer tokens; built once from the server options."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key_path: str | None = None,
        audience: str | None = None,
    ) -> None:
        self._audience = audience
        self._key: str | None
        if public_key_path:
            self._key = Path(public_key_path).read_text(encoding="utf-8")
            self._algorithms = ["RS256", "ES256"]
        else:
            self._key = secret or None  # an empty secret is no secret (the options refuse it)
            self._algorithms = ["HS256"]

    @property
    def enabled(self) -> bool:
        """Whether tokens are checked at all (a JWT secret or public key is configured)."""
        return self._key is not None

    def authenticate(self, token: str | None) -> Principal:
        """The principal for a raw token (no ``Bearer`` prefix); raises :class:`AuthError`."""
        if self._key is None:
            return ANONYMOUS
        if not token:
            raise AuthError(401, "missing bearer token")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        scope_claim = claims.get("scope", "")
        scopes = frozenset(str(scope_claim).split()) & SCOPES
        if not scopes:
            raise AuthError(403, "token has none of the scopes subscribe, publish, admin")
        sessions_claim = claims.get("sessions", "*")
        if sessions_claim == "*":
            sessions = None
        elif isinstance(sessions_claim, list) and all(isinstance(s, str) for s in sessions_claim):
            sessions = frozenset(sessions_claim)
        else:
            raise AuthError(401, "invalid token: 'sessions' must be '*' or a list of ids")
        tenant = claims.get("tenant", DEFAULT_TENANT)
        if not isinstance(tenant, str) or not tenant:
            raise AuthError(401, "invalid token: 'tenant' must be a non-empty string")
        return Principal(str(claims.get("sub", "")), tenant, scopes, sessions)


def bearer_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token from an ``Authorization: Bearer`` header or a ``token`` query parameter."""
    if authorization:
        kind, _, value = authorization.partition(" ")
        if kind.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None
