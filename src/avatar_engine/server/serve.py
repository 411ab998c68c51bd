"""``avatar-engine serve``: everything in one process with embedded defaults.

HTTP/WebSocket on 127.0.0.1:8766 (REST, streams, the bundled client at ``/``), the engine
tick, and the UDP capture receivers. SIGTERM/SIGINT: stop accepting, close peers, exit
within five seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from typing import Any

import uvicorn

from avatar_engine.server.app import create_app
from avatar_engine.server.config import ConfigError, ServerOptions, load_options, option_docs
from avatar_engine.server.fanout import StreamProtocol
from avatar_engine.server.limits import MAX_URL_BYTES
from avatar_engine.server.logging_setup import configure_logging
from avatar_engine.server.runtime import Runtime

log = logging.getLogger("avatar_engine.server")

SHUTDOWN_GRACE_S = 4.0

_FLAGS: dict[str, dict[str, Any]] = {
    "host": {},
    "port": {"type": int},
    "livelink_port": {"type": int},
    "vmc_port": {"type": int},
    "udp_host": {},
    "backend": {"choices": ["native", "numba", "numpy"]},
    "tick_hz": {"type": float},
    "default_rig": {},
    "rig_dir": {},
    "session_idle_timeout_s": {"type": float},
    "jwt_secret": {},
    "jwt_public_key": {},
    "jwt_audience": {},
    "cors_origins": {},
    "ice_servers": {},
    "piper_model": {},
    "egress": {},
    "keyframe_interval_ms": {"type": int},
    "quant_bits": {"type": int, "choices": [8, 16]},
    "max_sessions": {"type": int},
    "max_subscribers": {"type": int},
    "max_publish_rate": {"type": float},
    "redis_url": {},
    "node_id": {},
    "cluster_advertise_url": {},
    "cluster_lease_ms": {"type": int},
    "cluster_prefix": {},
    "log_format": {"choices": ["json", "text"]},
    "log_level": {"choices": ["debug", "info", "warning", "error"]},
}


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    docs = option_docs()
    parser = sub.add_parser(
        "serve",
        help="run the engine server (REST, WebSocket/WebRTC streams, UDP capture, client page)",
        description=(
            "Options come from defaults < --config TOML < AVATAR_ENGINE_* environment < flags. "
            "0 disables a UDP port."
        ),
    )
    parser.add_argument("--config", help="TOML file with a [server] table of these options")
    for name, extra in _FLAGS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=f"{docs.get(name, '')} (default: {getattr(ServerOptions(), name)!r})"
            if name != "jwt_secret"
            else docs.get(name, ""),
            **extra,
        )
    parser.add_argument("--redis", dest="redis_url", default=None, help="same as --redis-url")
    parser.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    overrides = {name: getattr(args, name) for name in _FLAGS}
    try:
        options = load_options(config_file=args.config, overrides=overrides)
    except (ConfigError, ValueError) as exc:
        print(f"avatar-engine: error: {exc}")
        return 2
    busy = ports_in_use(options)
    if busy:
        print(f"avatar-engine: error: {busy}")
        return 2
    configure_logging(options.log_format, options.log_level)
    asyncio.run(run_server(options))
    return 0


def ports_in_use(options: ServerOptions) -> str | None:
    """One line naming the first configured port that cannot be bound, or None.

    Bound and released before the server starts, so a port already in use is a refusal with
    its number (exit 2) instead of a traceback from inside the event loop.
    """
    checks = [("port", socket.SOCK_STREAM, options.host, options.port)]
    checks += [
        (name, socket.SOCK_DGRAM, options.udp_host, getattr(options, name))
        for name in ("livelink_port", "vmc_port")
        if getattr(options, name)
    ]
    for name, kind, host, port in checks:
        try:
            infos = socket.getaddrinfo(host, port, type=kind)
            with socket.socket(infos[0][0], kind) as sock:
                if kind == socket.SOCK_STREAM:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(infos[0][4])
        except OSError as exc:
            proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
            return f"{name}: cannot bind {proto} {host}:{port}: {exc.strerror or exc}"
    return None


async def run_server(options: ServerOptions) -> None:
    """Serve until SIGTERM/SIGINT."""
    runtime = Runtime(options)
    app = create_app(runtime)
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        ws=StreamProtocol,  # websockets-sansio, plus frames at the socket floor (fanout.py)
        ws_max_size=options.max_message_bytes,
        h11_max_incomplete_event_size=MAX_URL_BYTES,
        log_config=None,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
    )
    server = uvicorn.Server(config)
    if not options.auth_enabled:
        log.warning("auth is off: no JWT key configured, serving loopback only")
    log.info("starting", extra={"url": f"http://{options.host}:{options.port}/"})
    # uvicorn turns SIGTERM/SIGINT into a graceful shutdown: it stops accepting, closes
    # WebSockets (1012), runs the app's lifespan exit (which stops the tick), then returns.
    await server.serve()
    log.info("stopped")
