"""One documented options object for ``avatar-engine serve``.

Precedence, lowest first: built-in defaults, a TOML file (``--config``), environment variables
``AVATAR_ENGINE_<OPTION>`` (upper-case option name), then command-line flags. ``0`` disables a
UDP port. Secrets are never shown by ``repr`` or the logs.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from avatar_engine.server.egress_hub import parse_egress_url

ENV_PREFIX = "AVATAR_ENGINE_"
_SECRET_FIELDS = frozenset({"jwt_secret", "redis_url"})  # a Redis URL may hold a password


class ConfigError(ValueError):
    """Options that cannot work together; the message says which and why."""


@dataclass(frozen=True)
class ServerOptions:
    """Everything ``serve`` can be told. Field docstrings are the reference documentation."""

    host: str = "127.0.0.1"
    """Address for HTTP and WebSocket. Anything but loopback requires auth (a JWT key)."""
    port: int = 8766
    """HTTP/WebSocket port."""
    livelink_port: int = 11111
    """Live Link Face UDP port (0 disables)."""
    vmc_port: int = 39539
    """VMC/OSC UDP port (0 disables)."""
    udp_host: str = "127.0.0.1"
    """Interface the UDP capture receivers bind to (set 0.0.0.0 to hear a phone on the LAN)."""
    backend: str | None = None
    """Kernel backend: native, numba or numpy (default: fastest available)."""
    tick_hz: float = 60.0
    """Engine tick rate; LOD rates divide it."""
    default_rig: str = "cc4-extended"
    """Rig for sessions created without one (and for capture sources' auto-created sessions)."""
    rig_dir: str | None = None
    """Folder of extra rig files (``NAME.json``) that requests may name besides the built-in
    rigs. Requests name rigs, never paths; nothing else on disk is reachable."""
    session_idle_timeout_s: float = 600.0
    """A session with no subscriber and no input (capture, speech, emotion...) for this long is
    deleted, like a DELETE (0 keeps sessions until deleted)."""
    auto_create_sessions: bool = True
    """Create a session on the first valid capture packet from an unknown source."""
    capture_allowlist: tuple[str, ...] = ()
    """Subjects/devices allowed to publish over UDP (empty: any, when bound to loopback)."""
    jwt_secret: str | None = None
    """HS256 secret. With neither this nor a public key, auth is off and only loopback binds."""
    jwt_public_key: str | None = None
    """Path to a PEM public key for RS256/ES256 tokens."""
    jwt_audience: str | None = None
    """Expected ``aud`` claim, when set."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the REST API (the bundled page is same-origin)."""
    max_sessions: int = 1000
    """Per-tenant session quota."""
    max_subscribers: int = 5000
    """Per-tenant subscriber quota."""
    max_publish_rate: float = 20000.0
    """Per-tenant capture and input messages per second, all sources together (token bucket,
    burst of one second). The default admits 300 phones at 60 fps."""
    keyframe_interval_ms: int = 500
    """Keyframe interval of every stream."""
    quant_bits: int = 8
    """Default quantization (8 or 16); a subscriber may ask for the other."""
    egress: tuple[str, ...] = ()
    """Egress targets attached when their session exists: ``livelink://HOST:PORT/SESSION`` or
    ``vmc://HOST:PORT/SESSION`` (the session's rig must carry ARKit names)."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs for WebRTC (none by default: loopback needs none)."""
    piper_model: str | None = None
    """A Piper voice model (``.onnx``, its ``.onnx.json`` beside it) for ``/speak``'s
    ``"voice": "piper"`` (needs ``pip install 'avatar-engine[piper]'``; docs/voice.md)."""
    send_threads: int = 1
    """Threads that write a tick's WebSocket frames to the viewers (the kernel's ``send()`` is
    most of a frame's cost; a link's frames stay on one thread, in order). One thread's sends
    put the last of 2,000 viewers 10-13 ms behind the first on a 2-core VM; 2 halves that
    where a second core is free (docs/architecture.md, "Send threads"). Splits only ticks with
    at least 64 writes per thread."""
    max_message_bytes: int = 1 << 20
    """Largest HTTP body or WebSocket message accepted."""
    redis_url: str | None = None
    """Cluster mode (``--redis redis://host:6379/0``): sessions, relay and quotas shared through
    Redis with other nodes (docs/deploy.md). None: the embedded single-process server."""
    node_id: str | None = None
    """This node's id in the cluster (default: random per start)."""
    cluster_advertise_url: str | None = None
    """Base URL other nodes use to reach this node's HTTP API (default: http://HOST:PORT)."""
    cluster_lease_ms: int = 2000
    """Session lease: a dead node's sessions move after at most this plus a scan (1/8 lease)."""
    cluster_prefix: str = "ae"
    """Prefix of every Redis key and channel (``{ae}`` keeps them in one Redis Cluster slot)."""
    log_format: str = "json"
    """``json`` (structured, one object per line) or ``text``."""
    log_level: str = "info"

    def __repr__(self) -> str:
        def show(name: str) -> str:
            value = getattr(self, name)
            return "'***'" if name in _SECRET_FIELDS and value else repr(value)

        shown = ", ".join(f"{f.name}={show(f.name)}" for f in fields(self))
        return f"ServerOptions({shown})"

    @property
    def auth_enabled(self) -> bool:
        """Whether a JWT key is configured; without one the server only binds to loopback."""
        return bool(self.jwt_secret or self.jwt_public_key)

    def validate(self) -> ServerOptions:
        """Refuse combinations that would be unsafe or cannot work."""
        if self.jwt_secret is not None and not self.jwt_secret.strip():
            raise ConfigError(
                "jwt_secret is set but empty: unset it (AVATAR_ENGINE_JWT_SECRET) to run "
                "without auth, or give a secret"
            )
        udp_on = self.livelink_port != 0 or self.vmc_port != 0
        if (
            udp_on
            and not _is_loopback(self.udp_host)
            and not self.auth_enabled
            and not self.capture_allowlist
        ):
            raise ConfigError(
                f"refusing UDP capture on {self.udp_host}: anyone on the network could create "
                "and drive sessions. Set capture_allowlist (subjects/devices) or a JWT key, "
                "or bind udp_host 127.0.0.1."
            )
        if self.session_idle_timeout_s < 0:
            raise ConfigError("session_idle_timeout_s: must be >= 0 (0 disables expiry)")
        if not self.auth_enabled and not _is_loopback(self.host):
            raise ConfigError(
                f"refusing to bind {self.host}: no auth is configured. Set --jwt-secret "
                "(or AVATAR_ENGINE_JWT_SECRET, or jwt_public_key) or bind 127.0.0.1."
            )
        for name in ("port", "livelink_port", "vmc_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ConfigError(f"{name}: {value} is not a port number (0 disables UDP ports)")
        if self.port == 0:
            raise ConfigError("port: the HTTP port cannot be disabled")
        if not 1 <= self.tick_hz <= 1000:
            raise ConfigError("tick_hz: must be within 1..1000")
        if not 1 <= self.send_threads <= 64:
            raise ConfigError("send_threads: must be within 1..64")
        if self.quant_bits not in (8, 16):
            raise ConfigError("quant_bits: must be 8 or 16")
        for url in self.egress:
            parse_egress_url(url)  # raises ValueError naming the bad entry
        if not 200 <= self.cluster_lease_ms <= 60000:
            raise ConfigError("cluster_lease_ms: must be within 200..60000")
        if self.log_format not in ("json", "text"):
            raise ConfigError("log_format: json or text")
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def option_docs() -> dict[str, str]:
    """Option name -> its docstring (for ``serve --help`` and docs/server.md)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(ServerOptions))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
        ):
            docs[node.target.id] = str(after.value.value)
    return docs


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    text = str(kind)
    try:
        if raw is None:
            return None
        if "tuple" in text:
            if isinstance(raw, str):
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            return tuple(str(x) for x in raw)
        if "bool" in text:
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "int" in text and "float" not in text:
            return int(raw)
        if "float" in text:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {raw!r} is not a valid {text}") from None


def load_options(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerOptions:
    """Merge defaults, the TOML file, the environment and explicit overrides, then validate."""
    environ = os.environ if environ is None else environ
    hints = get_type_hints(ServerOptions)
    known = {f.name for f in fields(ServerOptions)}
    values: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        server_table = table.get("server", table)
        for key, raw in server_table.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown option {key!r}")
            values[key] = _coerce(key, raw, hints[key])
    for name in known:
        env_key = ENV_PREFIX + name.upper()
        if env_key in environ:
            values[name] = _coerce(env_key, environ[env_key], hints[name])
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in known:
            raise ConfigError(f"unknown option {key!r}")
        values[key] = _coerce(key, raw, hints[key])
    defaults = ServerOptions()
    return replace(defaults, **values).validate()
