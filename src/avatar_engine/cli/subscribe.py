"""``avatar-engine subscribe``: the stream inspector (one JSON line per frame or event)."""

from __future__ import annotations

import argparse
import asyncio
import json

from avatar_engine.cli.usage import Subparsers, fail
from avatar_engine.client.subscriber import Backoff, DecodedEvent, DecodedFrame, subscribe_ws


def _line(item: DecodedEvent | DecodedFrame) -> dict[str, object]:
    """What one decoded stream item prints as (the morph and channel values to 5 places)."""
    if isinstance(item, DecodedEvent):
        return {"event": item.kind, "value": item.value, "t": item.t_ms / 1e3}
    return {
        "seq": item.seq,
        "t": item.t_ms / 1e3,
        "lod": item.lod,
        "keyframe": item.keyframe,
        "bytes": item.size,
        "morphs": {k: round(v, 5) for k, v in item.morphs.items()},
        "channels": {k: round(v, 5) for k, v in item.channels.items()},
    }


async def _print_stream(args: argparse.Namespace) -> int:
    frames = 0
    backoff = Backoff() if args.reconnect else None
    stream = subscribe_ws(
        args.url, lod=args.lod, token=args.token, mode=args.mode, reconnect=backoff
    )
    async for item in stream:
        if isinstance(item, DecodedFrame):
            frames += 1
        line = _line(item)
        if args.jsonl:
            print(json.dumps(line), flush=True)
        else:
            print(line, flush=True)
        if args.count and frames >= args.count:
            return 0
    return 0


def run_subscribe(args: argparse.Namespace) -> int:
    """The ``subscribe`` handler: prints until closed, ``--count`` frames, or Ctrl-C (exit 0).

    A refused handshake, a close code or an unreachable host is exit 2 with one line.
    """
    try:
        return asyncio.run(_print_stream(args))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        return fail(f"{args.url}: {exc.strerror or exc}")
    except Exception as exc:  # handshake refusals, close codes: one line, not a traceback
        if type(exc).__module__.startswith(("websockets", "avatar_engine.codec")):
            return fail(f"{args.url}: {exc}")
        raise


def add_subscribe_parser(sub: Subparsers) -> None:
    """Register ``subscribe`` on the main parser's subcommands."""
    p = sub.add_parser(
        "subscribe",
        help="connect to a session's stream and print each decoded frame (the stream inspector)",
    )
    p.add_argument("url", help="ws://HOST:PORT/sessions/ID/stream")
    p.add_argument("--lod", type=int, choices=range(4), default=None)
    p.add_argument("--mode", choices=["chained", "keyframe"], default=None)
    p.add_argument("--count", type=int, default=0, help="stop after N frames (0: run until closed)")
    p.add_argument("--token", default=None, help="JWT (sent as the token query parameter)")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--reconnect",
        action="store_true",
        help="reconnect after a lost connection (exponential backoff with jitter, as the JS "
        "client); stops on 4401/4403/4404/4410",
    )
    p.set_defaults(handler=run_subscribe)
