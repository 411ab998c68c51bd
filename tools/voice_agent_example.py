"""Stream a recorded WAV into a running server the way a realtime speech API sends its audio.

This is what a voice-agent app's relay does with the agent's output: each
``response.output_audio.delta`` (base64 PCM16, 20-200 ms of audio) goes to the avatar's voice
bridge as it comes, ``response.output_audio.done`` ends the answer, and on barge-in the app
sends ``response.cancel`` (the bridge answers with how much audio had played, what the
agent's ``conversation.item.truncate`` wants as ``audio_end_ms``). The server drives the face
with the streaming lip-sync and sends the same audio to the viewers, delayed by exactly the
lip-sync delay, so both arrive together (docs/voice.md, "Server").

    avatar-engine serve &
    python tools/voice_agent_example.py tests/data/audio/fox-espeak.wav --session demo
    python tools/voice_agent_example.py tests/data/audio/fox-espeak.wav --cancel-after 1.0

Open http://127.0.0.1:8766/?session=demo to see and hear it. Exit code 2 with one line for
bad input (a WAV that is not 16-bit PCM, a rate the bridge does not take, a refused bridge).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sys
import time
import wave
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import numpy as np
import websockets

RATES = (16_000, 22_050, 24_000, 44_100, 48_000)
"""What the bridge accepts (a realtime API sends 24 kHz)."""


class ExampleError(Exception):
    """Bad input: printed as one line, exit code 2."""


def read_pcm16(path: Path) -> tuple[bytes, int]:
    """Mono 16-bit PCM and its rate (stereo is averaged)."""
    try:
        with wave.open(str(path)) as w:
            if w.getsampwidth() != 2:
                raise ExampleError(f"{path}: not 16-bit PCM")
            rate, channels = w.getframerate(), w.getnchannels()
            data = w.readframes(w.getnframes())
    except (OSError, wave.Error) as exc:
        raise ExampleError(f"{path}: {exc}") from None
    if rate not in RATES:
        raise ExampleError(f"{path}: {rate} Hz; the bridge takes {', '.join(map(str, RATES))}")
    if channels > 1:
        x = np.frombuffer(data, "<i2").reshape(-1, channels).mean(axis=1)
        data = np.round(x).astype("<i2").tobytes()
    return data, rate


def chunk_sizes(total_ms: int, fixed_ms: int | None, seed: int) -> list[int]:
    """Delta lengths in ms: fixed, or 20-200 ms at random as a realtime API sends them."""
    rng = random.Random(seed)
    sizes, done = [], 0
    while done < total_ms:
        size = fixed_ms or rng.randint(1, 10) * 20
        sizes.append(size)
        done += size
    return sizes


async def stream(args: argparse.Namespace, pcm: bytes, rate: int) -> dict[str, object]:
    base = urlsplit(args.url)
    ws_scheme = "wss" if base.scheme == "https" else "ws"
    headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=10) as http:
        created = await http.post("/sessions", json={"id": args.session})
        if created.status_code not in (201, 409):
            raise ExampleError(f"cannot create session {args.session!r}: {created.text}")
    query = urlencode({"rate": rate, "delay_ms": args.delay_ms})
    url = f"{ws_scheme}://{base.netloc}/sessions/{args.session}/voice?{query}"
    report: dict[str, object] = {"session": args.session, "rate": rate, "deltas": 0}
    async with websockets.connect(url, additional_headers=headers) as ws:
        ready = json.loads(await ws.recv())
        if ready.get("type") != "voice.ready":
            raise ExampleError(f"the bridge did not say ready: {ready}")
        total_ms = len(pcm) * 1000 // (2 * rate)
        start, sent_ms, offset = time.monotonic(), 0, 0
        for size in chunk_sizes(total_ms, args.chunk_ms, args.seed):
            if args.cancel_after is not None and sent_ms >= args.cancel_after * 1000:
                break
            n = rate * size // 1000 * 2
            delta = base64.b64encode(pcm[offset : offset + n]).decode()
            await ws.send(json.dumps({"type": "response.output_audio.delta", "delta": delta}))
            offset += n
            sent_ms += size
            report["deltas"] = int(report["deltas"]) + 1  # type: ignore[call-overload]
            # a realtime API keeps about real time (here: exactly, from the first delta)
            await asyncio.sleep(max(0.0, start + sent_ms / 1000 - time.monotonic()))
        if args.cancel_after is not None:
            await asyncio.sleep(max(0.0, start + args.cancel_after - time.monotonic()))
            await ws.send(json.dumps({"type": "response.cancel"}))
            cut = json.loads(await ws.recv())
            report["cut"] = cut  # audio_end_ms: what conversation.item.truncate wants
        else:
            await ws.send(json.dumps({"type": "response.output_audio.done"}))
        report["sent_ms"] = min(sent_ms, total_ms)
        await ws.close()
        if ws.close_code not in (None, 1000):
            raise ExampleError(f"the bridge closed {ws.close_code}: {ws.close_reason}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wav", type=Path, help="16-bit PCM WAV (16/22.05/24/44.1/48 kHz)")
    parser.add_argument("--url", default="http://127.0.0.1:8766", help="the server")
    parser.add_argument("--session", default="demo", help="session id (created if missing)")
    parser.add_argument("--token", default=None, help="a JWT with the publish scope")
    parser.add_argument("--chunk-ms", type=int, default=None,
                        help="fixed delta length (default: 20-200 ms at random)")  # fmt: skip
    parser.add_argument("--delay-ms", type=int, default=200, help="the lip-sync delay")
    parser.add_argument("--cancel-after", type=float, default=None, metavar="S",
                        help="barge in after S seconds: response.cancel")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="seed of the random delta lengths")
    args = parser.parse_args(argv)
    if args.chunk_ms is not None and not 10 <= args.chunk_ms <= 1000:
        print("voice_agent_example: --chunk-ms must lie in 10..1000", file=sys.stderr)
        return 2
    try:
        pcm, rate = read_pcm16(args.wav)
        report = asyncio.run(stream(args, pcm, rate))
    except (ExampleError, OSError, websockets.InvalidHandshake) as exc:
        print(f"voice_agent_example: {exc}", file=sys.stderr)
        return 2
    except websockets.ConnectionClosedError as exc:
        print(f"voice_agent_example: the bridge closed {exc.rcvd}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
