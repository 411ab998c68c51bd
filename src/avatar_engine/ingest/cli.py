"""``avatar-engine replay`` and ``avatar-engine record`` (registered by ``cli._extensions``).

Both exit 0 on success and 2 with one line on stderr for bad input (a missing take, a bad
URL, a refused connection), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from avatar_engine.formats.llf_csv import TakeFormatError
from avatar_engine.formats.recording import AvrecFormatError

EXIT_BAD_INPUT = 2


def _fail(message: str) -> int:
    print(f"avatar-engine: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _cmd_replay(args: argparse.Namespace) -> int:
    from avatar_engine.ingest.replay import ReplayError, load_take, open_target, replay

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
        return _fail(str(exc))
    except OSError as exc:  # connection refused, unresolvable host, ...
        return _fail(f"{args.to}: {exc.strerror or exc}")
    except Exception as exc:  # websockets handshake failures and friends: one line, exit 2
        if type(exc).__module__.startswith("websockets"):
            return _fail(f"{args.to}: {exc}")
        raise
    print(
        f"{args.take}: sent {stats.sent} frames to {args.to} in {stats.elapsed:.2f} s "
        f"({stats.skipped_late} skipped late, {stats.loops} loops)"
    )
    return 0


def add_replay_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.set_defaults(handler=_cmd_replay)


def _cmd_record(args: argparse.Namespace) -> int:
    from avatar_engine.ingest.websocket import record_stream

    out = Path(args.output)
    if out.suffix.lower() != ".avrec":
        return _fail(f"{out}: the output must end in .avrec")
    if not args.url.startswith(("ws://", "wss://")):
        return _fail(f"{args.url}: expected ws://HOST:PORT/sessions/ID/stream")
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
        return _fail(f"{out}: exists (use --force to overwrite)")
    except OSError as exc:
        return _fail(f"{args.url}: {exc.strerror or exc}")
    except Exception as exc:
        if type(exc).__module__.startswith("websockets"):
            return _fail(f"{args.url}: {exc}")
        raise
    if stats.rig == "":
        why = f" (closed: {stats.closed})" if stats.closed else ""
        return _fail(f"{args.url}: the server sent no hello; nothing was recorded{why}")
    print(f"{out}: {stats.frames} frames of rig {stats.rig}")
    return 0


def add_record_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "record", help="record a session's output stream (ws://.../stream) to an .avrec file"
    )
    p.add_argument("url", help="ws://HOST:PORT/sessions/ID/stream (query: lod, bits, mode)")
    p.add_argument("-o", "--output", required=True, help="OUT.avrec")
    p.add_argument("--count", type=int, default=None, help="stop after this many frames")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--token", default=None, help="bearer token")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler=_cmd_record)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m avatar_engine.ingest.cli``) with just these commands."""
    parser = argparse.ArgumentParser(prog="avatar-engine")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_replay_parser(sub)
    add_record_parser(sub)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
