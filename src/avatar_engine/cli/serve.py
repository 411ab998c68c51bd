"""``avatar-engine serve``: everything in one process with embedded defaults.

HTTP/WebSocket on 127.0.0.1:8766 (REST, streams, the bundled client at ``/``), the engine
tick, and the UDP capture receivers. Every server option is a flag here; the server itself
(:func:`avatar_engine.server.serve.run_server`) knows nothing of the command line.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, Final

from avatar_engine.cli.usage import EXIT_BAD_INPUT, Subparsers
from avatar_engine.server.config import ConfigError, ServerOptions, load_options, option_docs
from avatar_engine.server.logging_setup import configure_logging
from avatar_engine.server.placement import PlacementFactory
from avatar_engine.server.serve import ports_in_use, run_server

FLAGS: Final[dict[str, dict[str, Any]]] = {
    "host": {},
    "port": {"type": int},
    "livelink_port": {"type": int},
    "vmc_port": {"type": int},
    "udp_host": {},
    "backend": {"choices": ["native", "numba", "numpy"]},
    "tick_hz": {"type": float},
    "send_threads": {"type": int},
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
"""The :class:`ServerOptions` fields a flag can set (``--name-with-dashes``), with argparse's
type and choices; the help text and default come from the options' own documentation."""


def add_serve_parser(sub: Subparsers) -> None:
    """Register ``serve`` on the main parser's subcommands."""
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
    for name, extra in FLAGS.items():
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
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """The ``serve`` handler: serve until SIGTERM/SIGINT (exit 0).

    Bad options or a port already in use are refused before anything starts: exit 2 with one
    line on stdout (where this command has always reported them).
    """
    overrides = {name: getattr(args, name) for name in FLAGS}
    try:
        options = load_options(config_file=args.config, overrides=overrides)
    except (ConfigError, ValueError) as exc:
        print(f"avatar-engine: error: {exc}")
        return EXIT_BAD_INPUT
    busy = ports_in_use(options)
    if busy:
        print(f"avatar-engine: error: {busy}")
        return EXIT_BAD_INPUT
    configure_logging(options.log_format, options.log_level)
    asyncio.run(run_server(options, cluster_placement(options)))
    return 0


def cluster_placement(options: ServerOptions) -> PlacementFactory | None:
    """The cluster's placement with ``--redis`` (docs/deploy.md), else None (one process, and
    nothing of the cluster package is imported)."""
    if not options.redis_url:
        return None
    from avatar_engine.cluster.placement import ClusterPlacement

    return ClusterPlacement
