"""``avatar-engine record``: save a session's output stream to an ``.avrec`` file.

Exits 0 on success and 2 with one line on stderr for bad input (a bad URL or file name, a
refused connection, a server that never says hello), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from avatar_engine.cli.usage import Subparsers, fail
from avatar_engine.ingest.websocket import record_stream


def add_record_parser(subparsers: Subparsers) -> None:
    """Register ``record`` on the main parser's subcommands."""
    p = subparsers.add_parser(
        "record", help="record a session's output stream (ws://.../stream) to an .avrec file"
    )
    p.add_argument("url", help="ws://HOST:PORT/sessions/ID/stream (query: lod, bits, mode)")
    p.add_argument("-o", "--output", required=True, help="OUT.avrec")
    p.add_argument("--count", type=int, default=None, help="stop after this many frames")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--token", default=None, help="bearer token")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler=run_record)


def run_record(args: argparse.Namespace) -> int:
    """The ``record`` handler: frames until the count, duration or close; exit 2 on refusal."""
    out = Path(args.output)
    if out.suffix.lower() != ".avrec":
        return fail(f"{out}: the output must end in .avrec")
    if not args.url.startswith(("ws://", "wss://")):
        return fail(f"{args.url}: expected ws://HOST:PORT/sessions/ID/stream")
    try:
        stats = asyncio.run(
            record_stream(
                args.url,
                out,
                token=args.token,
                count=args.count,
                duration=args.duration,
                overwrite=args.force,
            )
        )
    except FileExistsError:
        return fail(f"{out}: exists (use --force to overwrite)")
    except OSError as exc:
        return fail(f"{args.url}: {exc.strerror or exc}")
    except Exception as exc:
        if type(exc).__module__.startswith("websockets"):
            return fail(f"{args.url}: {exc}")
        raise
    if stats.rig == "":
        why = f" (closed: {stats.closed})" if stats.closed else ""
        return fail(f"{args.url}: the server sent no hello; nothing was recorded{why}")
    print(f"{out}: {stats.frames} frames of rig {stats.rig}")
    return 0
