"""Voice latency through a real server: ``POST /speak`` to the first AUDIO message at a viewer,
and the voice-agent bridge's first delta in to the first audio message and the first moving
mouth out.

    python benchmarks/voice_latency.py [--rounds 10] [--json out.json]

Starts ``avatar-engine serve`` on a free loopback port; a WebSocket viewer (``audio=pcm``, so
the test can find the first loud sample) watches one session. Per round it measures, on this
machine's monotonic clock:

* **speak**: from sending ``POST /speak`` (a short sentence, espeak-ng) to the arrival of the
  first AUDIO message, and to the arrival of the message carrying the first audible sample;
* **bridge**: tests/data/audio/fox-espeak.wav streamed at real time in 40 ms deltas. From
  sending the first delta to the arrival of the first AUDIO message; from sending the delta
  that holds the first audible sample to the arrival of the AUDIO message that holds it
  (``bridge_first_sound``) and of the first frame whose mouth opening (``V_Open``) passes
  0.05 (``bridge_first_mouth``). The bridge stamps voice and face alike ``delay_ms`` (200 by
  default) after the audio arrived and sends the voice up to 250 ms ahead of its stamp, so
  the voice arrives at once and plays ``delay_ms`` later, and the face's frames arrive as
  they play: ``bridge_first_mouth`` is about ``delay_ms``. ``bridge_stamped_delay`` is the
  first AUDIO ``t`` minus the server's stream time when the first delta arrived, and
  ``bridge_mouth_vs_voice`` the first open frame's ``t`` minus the stream time of the first
  audible sample (0: they play together).

Prints the median and the worst of each; figures depend on the machine and its load
(docs/voice.md quotes a run). A 2-core machine shared with other work shows spikes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from avatar_engine.codec.decoder import Decoder  # noqa: E402
from avatar_engine.codec.messages import Audio, Frame, Hello  # noqa: E402
from server_process import ServerProcess  # noqa: E402

FOX = ROOT / "tests" / "data" / "audio" / "fox-espeak.wav"
LOUD = 1500
"""A PCM16 sample above this is audible (the voices' speech peaks near 10,000)."""


@dataclass
class Viewer:
    """A viewer that timestamps what it receives (monotonic seconds)."""

    audio: list[tuple[float, Audio]] = field(default_factory=list)
    mouth: list[tuple[float, int, float]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, url: str, stop: asyncio.Event) -> None:
        decoder, index = Decoder(), 0
        async with websockets.connect(url) as ws:
            while not stop.is_set():
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.05)
                except TimeoutError:
                    continue
                now = time.monotonic()
                result = decoder.feed(message)
                if isinstance(result, Hello):
                    index = result.schema.morph_names.index("V_Open")
                    self.ready.set()
                elif isinstance(result, Audio):
                    self.audio.append((now, result))
                elif isinstance(result, Frame):
                    value = float(decoder.stream(result.sid).morphs[index])
                    self.mouth.append((now, result.t_ms, value))

    def clear(self) -> None:
        self.audio.clear()
        self.mouth.clear()

    def first_audio(self) -> tuple[float, Audio] | None:
        return self.audio[0] if self.audio else None

    def first_loud(self) -> float | None:
        for arrived, packet in self.audio:
            if (np.abs(np.frombuffer(packet.payload, "<i2").astype(np.int32)) > LOUD).any():
                return arrived
        return None

    def first_open(self) -> float | None:
        return next((arrived for arrived, _, v in self.mouth if v > 0.05), None)


async def wait_for(check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and check() is None:  # type: ignore[operator]
        await asyncio.sleep(0.005)


async def measure(server: ServerProcess, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        "speak_first_audio_ms": [], "speak_first_audible_ms": [],
        "bridge_first_audio_ms": [], "bridge_first_sound_ms": [], "bridge_first_mouth_ms": [],
        "bridge_stamped_delay_ms": [], "bridge_mouth_vs_voice_ms": [],
    }  # fmt: skip
    httpx.post(server.url + "/sessions", json={"id": "bench"})
    with wave.open(str(FOX)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    onset_s = int(np.argmax(np.abs(np.frombuffer(pcm, "<i2").astype(np.int32)) > LOUD)) / rate
    viewer, stop = Viewer(), asyncio.Event()
    task = asyncio.create_task(viewer.run(f"{server.ws_url}/sessions/bench/stream?audio=pcm", stop))
    await asyncio.wait_for(viewer.ready.wait(), 10)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for _ in range(rounds):
            viewer.clear()
            sent = time.monotonic()
            await http.post("/sessions/bench/speak", json={"text": "Hello, nice to meet you."})
            await wait_for(viewer.first_loud, 5)
            first = viewer.first_audio()
            loud = viewer.first_loud()
            if first is not None and loud is not None:
                out["speak_first_audio_ms"].append((first[0] - sent) * 1000)
                out["speak_first_audible_ms"].append((loud - sent) * 1000)
            await asyncio.sleep(2.5)  # let the sentence finish
            viewer.clear()
            stamped = await bridge_round(server, viewer, pcm, rate, http)
            first, loud, opened = viewer.first_audio(), viewer.first_loud(), viewer.first_open()
            if None in (first, loud, opened, stamped):
                missing = [n for n, v in (("first audio", first), ("audible audio", loud),
                                          ("open mouth", opened), ("first delta", stamped))
                           if v is None]  # fmt: skip
                print(f"  (a bridge round lost: no {', no '.join(missing)} seen in time)")
            else:
                assert first is not None and loud is not None and opened is not None
                assert stamped is not None
                sent_onset = stamped[0] + onset_s
                out["bridge_first_audio_ms"].append((first[0] - stamped[0]) * 1000)
                out["bridge_first_sound_ms"].append((loud - sent_onset) * 1000)
                out["bridge_first_mouth_ms"].append((opened - sent_onset) * 1000)
                out["bridge_stamped_delay_ms"].append(float(first[1].t_ms - stamped[1]))
                opened_t = next(t for _, t, v in viewer.mouth if v > 0.05)
                out["bridge_mouth_vs_voice_ms"].append(opened_t - (first[1].t_ms + onset_s * 1000))
            await asyncio.sleep(1.0)
    stop.set()
    await task
    return out


async def bridge_round(server: ServerProcess, viewer: Viewer, pcm: bytes, rate: int,
                       http: httpx.AsyncClient) -> tuple[float, int] | None:  # fmt: skip
    """Stream the recording at real time; returns (monotonic, stream ms) of the first delta."""
    step = rate * 40 // 1000 * 2
    url = f"{server.ws_url}/sessions/bench/voice?rate={rate}"
    first: tuple[float, int] | None = None
    async with websockets.connect(url) as ws:
        await ws.recv()  # voice.ready: the lip-sync is built
        start = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), step)):
            delta = base64.b64encode(pcm[i : i + step]).decode()
            await ws.send(json.dumps({"type": "response.output_audio.delta", "delta": delta}))
            if first is None:
                first = (time.monotonic(), await stream_now(http))
            await asyncio.sleep(max(0.0, start + (k + 1) * 0.04 - time.monotonic()))
        await ws.send(json.dumps({"type": "response.output_audio.done"}))
        await wait_for(viewer.first_open, 5)
        await asyncio.sleep(0.5)
    return first


async def stream_now(http: httpx.AsyncClient) -> int:
    """The server's stream clock now (ms), from /stats' tick start and the monotonic clock:
    both processes share this machine's CLOCK_MONOTONIC."""
    stats = (await http.get("/stats")).json()
    return int((time.monotonic() - float(stats["clock"]["monotonic_t0"])) * 1000)


def summary(values: list[float]) -> str:
    if not values:
        return "no data"
    return f"median {statistics.median(values):7.1f}   worst {max(values):7.1f}   n={len(values)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    server = ServerProcess().wait_ready()
    try:
        figures = asyncio.run(measure(server, args.rounds))
    finally:
        server.stop()
    print(f"voice latency over {args.rounds} rounds (ms, this machine's monotonic clock)")
    for name, values in figures.items():
        print(f"  {name:26s} {summary(values)}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
