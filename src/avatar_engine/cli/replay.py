"""``avatar-engine replay``: send a recorded take in real time to a capture input.

Exits 0 on success and 2 with one line on stderr for bad input (a missing take, a bad URL, a
refused connection), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio

from avatar_engine.cli.usage import Subparsers, fail
from avatar_engine.formats.llf_csv import TakeFormatError
from avatar_engine.formats.recording import AvrecFormatError
from avatar_engine.ingest.replay import ReplayError, load_take, open_target, replay


def add_replay_parser(subparsers: Subparsers) -> None:
    """Register ``replay`` on the main parser's subcommands."""
    p = subparsers.add_parser(
        "replay",
        help="send a take (Live Link Face .csv or .avrec) in real time to a capture input",
        description=(
            "Targets: livelink://HOST:PORT, vmc://HOST:PORT, ifacialmocap://HOST:PORT, "
            "udp://HOST:PORT (msgpack publish), ws://HOST:PORT/sessions/ID/publish."
        ),
    )
    p.add_argument("take", help="TAKE.csv (Live Link Face) or TAKE.avrec")
    p.add_argument("--to", required=True, metavar="URL", help="where to send the frames")
    p.add_argument("--loop", action="store_true", help="start again at the end")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed (1.0 = real time)")
    p.add_argument("--count", type=int, default=None, help="stop after this many frames")
    p.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds of take time"
    )
    p.add_argument("--subject", default="replay", help="Live Link subject name (livelink://)")
    p.add_argument("--token", default=None, help="bearer token for ws:// targets")
    p.add_argument(
        "--take-fps", type=float, default=60.0, help="frame rate of a CSV take's timecode (60)"
    )
    p.set_defaults(handler=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    """The ``replay`` handler: one summary line, or exit 2 with the reason on stderr."""
    try:
        take = load_take(args.take, take_fps=args.take_fps)
        target = open_target(args.to, subject=args.subject, token=args.token)
        stats = asyncio.run(
            replay(
                take,
                target,
                speed=args.speed,
                loop=args.loop,
                count=args.count,
                duration=args.duration,
            )
        )
    except (ReplayError, TakeFormatError, AvrecFormatError) as exc:
        return fail(str(exc))
    except OSError as exc:  # connection refused, unresolvable host, ...
        return fail(f"{args.to}: {exc.strerror or exc}")
    except Exception as exc:  # websockets handshake failures and friends: one line, exit 2
        if type(exc).__module__.startswith("websockets"):
            return fail(f"{args.to}: {exc}")
        raise
    print(
        f"{args.take}: sent {stats.sent} frames to {args.to} in {stats.elapsed:.2f} s "
        f"({stats.skipped_late} skipped late, {stats.loops} loops)"
    )
    return 0
