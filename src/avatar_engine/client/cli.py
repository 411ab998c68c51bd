"""``avatar-engine subscribe``: the stream inspector (one JSON line per frame or event)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from avatar_engine.client.subscriber import Backoff, DecodedEvent, DecodedFrame, subscribe_ws

EXIT_BAD_INPUT = 2


async def _print_stream(args: argparse.Namespace) -> int:
    frames = 0
    backoff = Backoff() if args.reconnect else None
    stream = subscribe_ws(
        args.url, lod=args.lod, token=args.token, mode=args.mode, reconnect=backoff
    )
    async for item in stream:
        if isinstance(item, DecodedEvent):
            line: dict[str, object] = {
                "event": item.kind,
                "value": item.value,
                "t": item.t_ms / 1e3,
            }
        else:
            assert isinstance(item, DecodedFrame)
            frames += 1
            line = {
                "seq": item.seq,
                "t": item.t_ms / 1e3,
                "lod": item.lod,
                "keyframe": item.keyframe,
                "bytes": item.size,
                "morphs": {k: round(v, 5) for k, v in item.morphs.items()},
                "channels": {k: round(v, 5) for k, v in item.channels.items()},
            }
        if args.jsonl:
            print(json.dumps(line), flush=True)
        else:
            print(line, flush=True)
        if args.count and frames >= args.count:
            return 0
    return 0


def _cmd_subscribe(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_print_stream(args))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"avatar-engine: error: {args.url}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # handshake refusals, close codes: one line, not a traceback
        if type(exc).__module__.startswith(("websockets", "avatar_engine.codec")):
            print(f"avatar-engine: error: {args.url}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise


def add_subscribe_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.set_defaults(handler=_cmd_subscribe)
