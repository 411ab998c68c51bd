"""Voice and face in sync in a real browser: offsets, latency, bandwidth, loss.

Starts a real ``avatar-engine serve``, loads the demo page in Debian's Chromium (headless,
``--autoplay-policy=no-user-gesture-required``) and records what the page plays (an
AudioWorklet tap on the voice's output) and the jaw it sets on the mesh at each rendered
frame (tests/voice_probe.py says how, and how the offsets are taken). Prints:

1. espeak-ng via ``POST /speak``: about 60 s of talk (20 sentences), over the default
   transport (WebRTC): per sentence the played offset (voice heard - mouth shown), the
   stream's own offset, and the client's sync error; median and p95; ``POST /speak`` to the
   first audible sample; bandwidth (voice + face, kB/s, what the page received).
2. The same over a lossy, jittery transport (WebSocket with a page-side shim that drops 5% of
   the messages and delays another 5% by 20-150 ms): the sync error over 60 s (drift), the
   packets lost and the silence that concealed them.
3. A voice agent through the bridge (``/sessions/{id}/voice``): a recorded WAV streamed as
   realtime-API deltas at real time, 10 times; offsets, and first delta to first sound and
   first moving mouth against the lip-sync delay + 60 ms.

    python benchmarks/voice_sync.py [--sentences 20] [--skip-lossy] [--skip-bridge] [--lead MS]
                                    [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import voice_probe as vp  # noqa: E402
from browser_support import launch  # noqa: E402
from server_process import ServerProcess  # noqa: E402

BRIDGE_WAV = ROOT / "tests" / "data" / "audio" / "fox-espeak.wav"
BRIDGE_DELAY_MS = 200  # the bridge's default lip-sync delay


def table(run: vp.Run, title: str) -> dict[str, float]:
    print(f"\n== {title}")
    print("  #  played  stream  audio-lag  face-lag  sync-error  corr  to-audible  (* unmeasured)")
    for i, r in enumerate(run.results):
        print(
            f"{i:3d} {r.played_ms:7.1f} {r.stream_ms:7.1f} {r.audio_lag_ms:10.1f}"
            f" {r.face_lag_ms:9.1f} {r.sync_error_ms:11.1f} {r.corr:5.2f} {r.latency_ms:10.0f}"
            f"{'' if r.measured else '  *'}"
        )
    s = vp.summary(run.results)
    for k, v in s.items():
        print(f"  {k}: {v:.1f}")
    total_kbs = run.bytes_total / run.seconds / 1000
    voice_kbs = run.bytes_voice / run.seconds / 1000
    print(
        f"  received: {total_kbs:.2f} kB/s ({total_kbs * 8:.0f} kbit/s) over {run.seconds:.1f} s,"
        f" of which voice payload {voice_kbs:.2f} kB/s"
    )
    answered = [r["t1"] - r["t0"] for r in run.spoken if "status" in r]
    if answered:
        print(f"  POST /speak answered (synthesis done) in median {np.median(answered):.0f} ms")
    v = run.end["voice"]
    print(
        f"  voice: packets {v['packets']}, scheduled {v['scheduled']}, late {v['late']},"
        f" stale {v['stale']}, lost {v['lost']}, concealed {v['concealedMs']:.0f} ms,"
        f" re-anchored {v['reanchors']}; face delay {run.end['delayMs']:.0f} ms;"
        f" render {run.end['fps']:.0f} fps"
    )
    return {**s, "kB_per_s": total_kbs, "voice_kB_per_s": voice_kbs, "seconds": run.seconds}


def drift(run: vp.Run) -> dict[str, float]:
    """Sync error of the last 10 s against the first 10 s of the run."""
    t = np.array([r["t0"] for r in run.spoken])
    err = np.array([r.sync_error_ms if r.measured else np.nan for r in run.results])
    first = err[t - t[0] < 10000]
    last = err[t - t[-1] > -10000]
    out = {
        "sync_error_first_10s_ms": float(np.nanmedian(first)),
        "sync_error_last_10s_ms": float(np.nanmedian(last)),
        "drift_ms": float(np.nanmedian(last) - np.nanmedian(first)),
        "sync_error_max_abs_ms": float(np.nanmax(np.abs(err))),
    }
    shim = run.end["shim"] or {}
    print(
        f"  drift over {run.seconds:.0f} s: {out['drift_ms']:+.1f} ms (first 10 s"
        f" {out['sync_error_first_10s_ms']:+.1f}, last 10 s {out['sync_error_last_10s_ms']:+.1f});"
        f" max |sync error| {out['sync_error_max_abs_ms']:.1f} ms; shim dropped"
        f" {shim.get('dropped', 0)} and delayed {shim.get('delayed', 0)} of {shim.get('n', 0)}"
    )
    return out


async def _bridge_once(ws_url: str, session: str, pcm: bytes, rate: int, sent: list[float]) -> None:
    """Stream ``pcm`` as 100 ms deltas at real time; appends the wall-clock time (ms) the
    first delta was sent to ``sent``."""
    import websockets

    url = f"{ws_url}/sessions/{session}/voice?rate={rate}&delay_ms={BRIDGE_DELAY_MS}"
    async with websockets.connect(url) as ws:
        await ws.recv()  # voice.ready
        step = rate * 2 * 100 // 1000  # 100 ms deltas, sent at real time
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), step)):
            delta = base64.b64encode(pcm[i : i + step]).decode()
            await ws.send(json.dumps({"type": "response.output_audio.delta", "delta": delta}))
            if k == 0:
                sent.append(time.time() * 1000.0)
            await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.1 - time.monotonic()))
        await ws.send(json.dumps({"type": "response.output_audio.done"}))
        await asyncio.sleep(0.3)


def bridge_run(pg: Any, ws_url: str, times: int) -> tuple[vp.Run, list[dict[str, float]]]:
    """Stream the WAV through the bridge ``times`` times; windows from the stream's audio."""
    with wave.open(str(BRIDGE_WAV)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    dur_ms = 1000 * len(pcm) / 2 / rate
    samples = np.frombuffer(pcm, "<i2").astype(np.float64) / 32768.0
    per_ms = rate // 1000
    loud = (samples[: len(samples) // per_ms * per_ms] ** 2).reshape(-1, per_ms).mean(axis=1)
    onset_ms = float(np.argmax(loud > vp.AUDIBLE))  # the recording's own leading silence
    session = pg.evaluate("new URL(location.href).searchParams.get('session')")
    # the page's clock from this machine's wall clock (one clock, same machine)
    origin = float(pg.evaluate("performance.timeOrigin"))
    spoken: list[dict[str, Any]] = []
    with vp.StreamListener(ws_url, session) as listener:
        start = pg.evaluate(vp.COUNTERS_JS)
        for _ in range(times):
            n_before = len(listener.record.audio)
            sent: list[float] = []
            # its own thread: Playwright's sync API owns this thread's event loop
            sender = threading.Thread(
                target=asyncio.run, args=(_bridge_once(ws_url, session, pcm, rate, sent),)
            )
            sender.start()
            sender.join()
            time.sleep(dur_ms / 1000 * 0.2 + 1.0)
            first_t = listener.record.audio[n_before][0]
            # "audio in": when the recording's first sound was sent (its first delta + onset)
            t0 = sent[0] - origin + onset_ms
            spoken.append(
                {
                    "text": BRIDGE_WAV.name,
                    "t0": t0,
                    "t1": t0 + BRIDGE_DELAY_MS,
                    "body": {"start_ms": first_t, "duration_ms": dur_ms},
                }
            )
        end = pg.evaluate(vp.COUNTERS_JS)
    page = vp.PageRecord.from_page(pg.evaluate("voiceProbe"))
    results = vp.analyse(page, listener.record, spoken)
    firsts = []
    for s in spoken:
        sound = page.first_audible(s["t0"]) - s["t0"]
        moving = page.frames[(page.frames[:, 0] > s["t0"]) & (page.frames[:, 1] > 0.05)]
        mouth = float(moving[0, 0] - s["t0"]) if len(moving) else float("nan")
        firsts.append({"first_sound_ms": sound, "first_mouth_ms": mouth})
    run = vp.Run(
        results=results,
        seconds=(end["now"] - start["now"]) / 1000,
        bytes_total=end["bytes"] - start["bytes"],
        bytes_voice=end["voice"]["bytes"] - start["voice"]["bytes"],
        start=start,
        end=end,
        page=page,
        stream=listener.record,
        spoken=spoken,
    )
    return run, firsts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=20)
    ap.add_argument("--skip-lossy", action="store_true")
    ap.add_argument("--skip-bridge", action="store_true")
    ap.add_argument("--lead", type=int, help="POST /speak delay_ms (default: the server's)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    sentences = [vp.SENTENCES[i % len(vp.SENTENCES)] for i in range(args.sentences)]
    figures: dict[str, Any] = {}
    srv = ServerProcess().wait_ready()
    try:
        with sync_playwright() as p:
            # a browser per part: after a WebRTC page closes, Chromium can take a minute to
            # load the next one
            browser = launch(p, vp.AUTOPLAY)
            pg = vp.open_demo(browser, srv.url)
            run = vp.speak_all(pg, srv.ws_url, sentences, lead=args.lead)
            figures["espeak"] = table(
                run, f"espeak-ng, POST /speak, {pg.evaluate('avatarDemo.client.transportKind')}"
            )
            browser.close()
            if not args.skip_lossy:
                browser = launch(p, vp.AUTOPLAY)
                pg = vp.open_demo(browser, srv.url, "&transport=websocket", lossy=True)
                run = vp.speak_all(pg, srv.ws_url, sentences, lead=args.lead)
                figures["lossy"] = table(
                    run, "espeak-ng over a lossy, jittery WebSocket (5% dropped, 5% delayed)"
                )
                figures["lossy"].update(drift(run))
                browser.close()
            if not args.skip_bridge:
                browser = launch(p, vp.AUTOPLAY)
                pg = vp.open_demo(browser, srv.url)
                run, firsts = bridge_run(pg, srv.ws_url, 10)
                figures["bridge"] = table(
                    run, f"voice-agent bridge, {BRIDGE_WAV.name} x10, delay_ms={BRIDGE_DELAY_MS}"
                )
                sound = np.array([f["first_sound_ms"] for f in firsts])
                mouth = np.array([f["first_mouth_ms"] for f in firsts])
                print(
                    f"  first delta -> first sound: median {np.nanmedian(sound):.0f} ms,"
                    f" max {np.nanmax(sound):.0f}; -> first moving mouth: median"
                    f" {np.nanmedian(mouth):.0f} ms (target <= delay {BRIDGE_DELAY_MS} + 60 ms)"
                )
                figures["bridge"].update(
                    first_sound_median_ms=float(np.nanmedian(sound)),
                    first_mouth_median_ms=float(np.nanmedian(mouth)),
                )
                browser.close()
    finally:
        srv.stop()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
