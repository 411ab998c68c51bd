"""The server process: everything in one process, as ``avatar-engine serve`` starts it.

HTTP/WebSocket on 127.0.0.1:8766 (REST, streams, the bundled client at ``/``), the engine
tick, and the UDP capture receivers. SIGTERM/SIGINT: stop accepting, close peers, exit
within five seconds. The command line (flags, exit codes) is :mod:`avatar_engine.cli.serve`.
"""

from __future__ import annotations

import gc
import logging
import socket

import uvicorn

from avatar_engine.server.app import create_app
from avatar_engine.server.config import ServerOptions
from avatar_engine.server.fanout import LINKS, StreamProtocol
from avatar_engine.server.limits import MAX_URL_BYTES
from avatar_engine.server.placement import PlacementFactory
from avatar_engine.server.runtime import Runtime

log = logging.getLogger("avatar_engine.server")

SHUTDOWN_GRACE_S = 4.0


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


async def run_server(options: ServerOptions, placement: PlacementFactory | None = None) -> None:
    """Serve until SIGTERM/SIGINT (``placement``: the cluster's, with ``--redis``)."""
    runtime = Runtime(options, placement=placement)
    LINKS.send_threads = options.send_threads
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
    # Everything built so far (modules, the app, the engine, rigs) lives as long as the process:
    # out of the collector's generations, a full collection no longer walks it (measured: a
    # 180-230 ms gen-2 pause while 500 viewers connected, every viewer waiting).
    gc.freeze()
    if not options.auth_enabled:
        log.warning("auth is off: no JWT key configured, serving loopback only")
    log.info("starting", extra={"url": f"http://{options.host}:{options.port}/"})
    # uvicorn turns SIGTERM/SIGINT into a graceful shutdown: it stops accepting, closes
    # WebSockets (1012), runs the app's lifespan exit (which stops the tick), then returns.
    await server.serve()
    log.info("stopped")
