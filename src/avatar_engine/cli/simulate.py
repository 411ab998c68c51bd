"""``avatar-engine simulate``: a real load against a running server, and what it measured.

The load itself (publishers, viewer processes, the report) is
:func:`avatar_engine.client.simulate.run_simulation`; this module is its command line.
"""

from __future__ import annotations

import argparse
import json

import httpx

from avatar_engine.cli.usage import EXIT_BAD_INPUT, Subparsers
from avatar_engine.client.lean import WAKE_S
from avatar_engine.client.simulate import run_simulation


def run_simulate(args: argparse.Namespace) -> int:
    """The ``simulate`` handler: the report as aligned lines or one JSON object.

    A bad ``--stalled``, ``--probes`` or ``--viewer-wake-ms`` or an unreachable server is exit 2
    with one line on stdout.
    """
    if not 0 <= args.stalled <= args.subscribers:
        print("avatar-engine: error: --stalled must be within 0..--subscribers")
        return EXIT_BAD_INPUT
    if args.probes < 0:
        print("avatar-engine: error: --probes must be 0 (every session) or more")
        return EXIT_BAD_INPUT
    if not 0 <= args.viewer_wake_ms <= 1000:
        print("avatar-engine: error: --viewer-wake-ms must be within 0..1000")
        return EXIT_BAD_INPUT
    try:
        report = run_simulation(args)
    except httpx.HTTPError as exc:
        print(f"avatar-engine: error: {args.url}: {exc}")
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>30}: {value}")
    return 0


def add_simulate_parser(sub: Subparsers) -> None:
    """Register ``simulate`` on the main parser's subcommands."""
    p = sub.add_parser("simulate", help="run a real load against a running server and measure it")
    p.add_argument("--url", default="http://127.0.0.1:8766", help="the server (loopback)")
    p.add_argument(
        "--subscribe-url",
        action="append",
        help="cluster mode: a node to subscribe through (repeat to spread subscribers "
        "round-robin; sessions and publishers stay on --url)",
    )
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--subscribers", type=int, default=100, help="total, spread over sessions")
    p.add_argument(
        "--stalled",
        type=int,
        default=0,
        help="of the subscribers, how many connect and then never read",
    )
    p.add_argument("--transport", choices=["ws", "webrtc"], default="ws")
    p.add_argument("--publish", choices=["livelink", "ws", "none"], default="livelink")
    p.add_argument("--livelink-port", type=int, default=11111)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of measurement")
    p.add_argument(
        "--connect-s",
        type=float,
        default=2.0,
        help="seconds for viewers to connect before the measurement",
    )
    p.add_argument("--lod", type=int, choices=range(4), default=0)
    p.add_argument("--workers", type=int, default=2, help="viewer processes")
    p.add_argument(
        "--probes",
        type=int,
        default=0,
        help="sessions whose first viewer decodes every frame for publish-to-receive, spread "
        "evenly over the sessions (0: every session); the other viewers only count",
    )
    p.add_argument(
        "--viewer-pass",
        choices=["native", "numpy"],
        default=None,
        help="WebSocket viewers' receive pass: the C++ one or the Python reference "
        "(default: the fastest built)",
    )
    p.add_argument(
        "--viewer-wake-ms",
        type=float,
        default=WAKE_S * 1e3,
        help="WebSocket viewer processes wake at most once per this many ms (0: at every "
        "arriving frame, exact stamps at more CPU; default %(default)s)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_simulate)
