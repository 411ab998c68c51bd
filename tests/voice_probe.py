"""Measure voice/face sync in the demo page, shared by tests/test_voice_browser.py and
benchmarks/voice_sync.py.

What the page plays: an AudioWorklet tap on the voice's output node (everything the page
plays passes through it) logs the mean square of every 128-sample render quantum with its
context frame; the context clock is mapped to ``performance.now()`` with the browser's own
``getOutputTimestamp()`` (when a context time reaches the speaker), so loudness is placed at
the moment it is *heard*. What the page shows: at every rendered frame (``avatarDemo.onFrame``,
right after ``client.update``) the jaw-open morph weight actually set on the mesh, stamped with
that frame's ``requestAnimationFrame`` time.

The offsets: signals are put on a 1 ms grid, smoothed over 30 ms (two frames) and
cross-correlated per sentence; a lag is positive when the first signal comes later. The
page's voice against its mouth gives the *played offset* (what a viewer gets; it includes the
content's own offset: lips move a little before the sound they shape, anticipatory
co-articulation). The same measure on the stream itself (a Python subscriber with
``audio=pcm``: PCM and face frames on the stream clock) gives the content's offset. The
client's *sync error* is measured directly: the page's voice against the stream's voice, and
the page's mouth against the stream's mouth, both through the page's playout mapping; their
difference is what the client adds (the mapping cancels out).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Audio, Frame, Hello
from browser_support import open_page

AUTOPLAY = "--autoplay-policy=no-user-gesture-required"
"""Lets the page start sound without a gesture (one test launches without it)."""
# Small: software WebGL on a shared CI core renders a 480x600 head at ~4 fps; the sync is
# measured per rendered frame, so the page must render at display rate.
VIEWPORT = {"width": 200, "height": 250}
JAW = ("jawOpen", "Jaw_Open")
SMOOTH_MS = 30
MAX_LAG_MS = 250
AUDIBLE = 1e-5  # mean square (-50 dBFS): "audible"

SENTENCES = [
    "Hello, I am the avatar, and you can hear me now.",
    "My voice and my face travel in one stream.",
    "Please tell me what you would like to do today.",
    "The weather looks lovely this morning, doesn't it?",
    "I can speak many languages with the built in voice.",
    "Open your mouth wide and say papa and mama.",
    "Seven silver swans swam slowly across the lake.",
    "Is there anything else I can help you with?",
    "Thank you for waiting, the answer is almost ready.",
    "Good bye for now, and have a wonderful day.",
    "Bright yellow bananas are my favourite fruit.",
    "We will meet again at half past nine tomorrow.",
]

# The tap: installed once the page streams; records into window.voiceProbe.
PROBE_JS = """
async () => {
  const d = window.avatarDemo, c = d.client, v = c.voice;
  await c.unlockAudio();
  const ctx = v.context;
  const src = `class Tap extends AudioWorkletProcessor {
    constructor() { super(); this.buf = []; }
    process(inputs) {
      const ch = inputs[0] && inputs[0][0];
      let s = 0;
      if (ch) for (let i = 0; i < ch.length; i++) s += ch[i] * ch[i];
      this.buf.push(currentFrame, ch ? s / ch.length : 0);
      if (this.buf.length >= 64) { this.port.postMessage(this.buf); this.buf = []; }
      return true;
    }
  }
  registerProcessor('voice-tap', Tap);`;
  const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
  await ctx.audioWorklet.addModule(url);
  const tap = new AudioWorkletNode(ctx, 'voice-tap', { numberOfInputs: 1, numberOfOutputs: 0 });
  v.output.connect(tap);
  let mesh = null, idx = -1;
  d.avatar.traverse((o) => {
    if (idx >= 0 || !o.morphTargetDictionary) return;
    for (const n of ['jawOpen', 'Jaw_Open']) {
      const i = o.morphTargetDictionary[n];
      if (i !== undefined) { mesh = o; idx = i; return; }
    }
  });
  const rec = { rate: ctx.sampleRate, blocks: [], frames: [], clock: [], morph: mesh?.name,
                arrivals: [], scheduled: [] };
  window.voiceProbe = rec;
  // the hops of each packet: arrival (with the face's offset then), and when it was scheduled
  // to be heard (its t through the player's mapping)
  const push = v.push.bind(v);
  v.push = (r) => {
    rec.arrivals.push(performance.now(), r.t, c.jitter ? c.jitter.offset : NaN);
    push(r);
  };
  const schedule = v._schedule.bind(v);
  v._schedule = (nowMs) => {
    const n = v.sources.length, last = v.sources[n - 1];
    schedule(nowMs);
    for (let i = v.sources.length - 1; i >= 0 && v.sources[i] !== last; i--) {
      rec.scheduled.push(performance.now(), v.sources[i].t, v.sources[i].t + v.map);
    }
  };
  tap.port.onmessage = (e) => { for (const x of e.data) rec.blocks.push(x); };
  d.onFrame = (t) => {
    const ts = ctx.getOutputTimestamp();
    const j = c.jitter;
    rec.frames.push(t, mesh ? mesh.morphTargetInfluences[idx] : NaN);
    rec.clock.push(t, ts.contextTime * 1000 - ts.performanceTime, j ? j.offset + j.delayMs : NaN);
  };
  return { rate: ctx.sampleRate, morph: rec.morph, latency: v.latencyMs };
}
"""

# A transport that drops 5% and delays another 5% (20-150 ms, so reordered) of the stream's
# messages after the hello: installed before the page loads (use with transport=websocket).
LOSSY_JS = """
(() => {
  const Native = window.WebSocket;
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const s = window.lossyShim = { n: 0, dropped: 0, delayed: 0 };
  window.WebSocket = class extends Native {
    set onmessage(fn) {
      super.onmessage = (e) => {
        s.n += 1;
        if (s.n <= 2) return fn(e);
        const r = rnd();
        if (r < 0.05) { s.dropped += 1; return; }
        if (r < 0.10) { s.delayed += 1; setTimeout(() => fn(e), 20 + rnd() * 130); return; }
        fn(e);
      };
    }
    get onmessage() { return super.onmessage; }
  };
})();
"""

# As the demo page speaks: no delay_ms (the server's default lead) unless a lead is given.
SPEAK_JS = """
async ([text, lead]) => {
  const session = new URL(location.href).searchParams.get('session');
  const t0 = performance.now();
  const r = await fetch(`sessions/${session}/speak`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify(lead == null ? { text } : { text, delay_ms: lead }) });
  return { t0, t1: performance.now(), status: r.status, body: await r.json() };
}
"""

COUNTERS_JS = """
() => ({ now: performance.now(), bytes: avatarDemo.client.stats.bytesReceived,
         voice: { ...avatarDemo.client.voice.stats }, delayMs: avatarDemo.client.jitter.delayMs,
         fps: avatarDemo.client.stats.renderFps, shim: window.lossyShim ?? null })
"""


# ------------------------------------------------------------------ the stream's own offset


@dataclass
class StreamRecord:
    """Face frames (t, jaw) and PCM audio (t, samples) as a subscriber of the stream gets them."""

    frames: list[tuple[int, float]] = field(default_factory=list)
    audio: list[tuple[int, np.ndarray]] = field(default_factory=list)
    rate: int = 16000


class StreamListener:
    """A WebSocket subscriber with ``audio=pcm`` in a background thread."""

    def __init__(self, ws_url: str, session: str) -> None:
        self.url = f"{ws_url}/sessions/{session}/stream?audio=pcm&lod=0&mode=chained&bits=16"
        self.record = StreamRecord()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> StreamListener:
        self._thread.start()
        if not self._ready.wait(15):
            raise TimeoutError("the stream listener did not get a hello")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        dec = Decoder()
        jaw = -1
        async with websockets.connect(self.url, max_size=1 << 20) as ws:
            while not self._stop.is_set():
                try:
                    data = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                if isinstance(data, str):
                    continue
                msg = dec.feed(data)
                if isinstance(msg, Hello):
                    names = list(msg.schema.morph_names)
                    jaw = next(names.index(n) for n in JAW if n in names)
                    self._ready.set()
                elif isinstance(msg, Frame) and jaw >= 0:
                    self.record.frames.append((msg.t_ms, float(dec.stream(msg.sid).morphs[jaw])))
                elif isinstance(msg, Audio):
                    self.record.rate = msg.rate
                    pcm = np.frombuffer(msg.payload, "<i2").astype(np.float64) / 32768.0
                    self.record.audio.append((msg.t_ms, pcm))


# ------------------------------------------------------------------ signals and offsets


def _smooth(x: np.ndarray, ms: int = SMOOTH_MS) -> np.ndarray:
    k = np.ones(ms) / ms
    return np.convolve(x, k, mode="same")


def envelope(loud: np.ndarray) -> np.ndarray:
    """Loudness to follow: RMS amplitude (mean square is too peaky), smoothed."""
    return _smooth(np.sqrt(loud))


def lag_ms(x: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """The lag (ms; both on one 1 ms grid) at which ``x`` best matches ``ref``: positive when
    ``x`` comes later. Returns (lag, normalised correlation at the lag)."""
    a = (x - x.mean()) / (x.std() + 1e-12)
    m = (ref - ref.mean()) / (ref.std() + 1e-12)
    n = len(a)
    corr = np.empty(2 * MAX_LAG_MS + 1)
    for i, lag in enumerate(range(-MAX_LAG_MS, MAX_LAG_MS + 1)):
        if lag >= 0:
            corr[i] = float(np.dot(m[: n - lag], a[lag:])) / (n - lag)
        else:
            corr[i] = float(np.dot(m[-lag:], a[: n + lag])) / (n + lag)
    i = int(np.argmax(corr))
    frac = 0.0
    if 0 < i < len(corr) - 1:  # parabolic refinement of the peak
        y0, y1, y2 = corr[i - 1], corr[i], corr[i + 1]
        den = y0 - 2 * y1 + y2
        frac = 0.5 * (y0 - y2) / den if den != 0 else 0.0
    return i - MAX_LAG_MS + frac, float(corr[i])


def stream_window(rec: StreamRecord, start: float, end: float) -> tuple[np.ndarray, ...]:
    """Loudness (mean square per ms) and jaw on a 1 ms stream-clock grid over [start, end)."""
    grid = np.arange(start, end, 1.0)
    loud = np.zeros_like(grid)
    for t, pcm in rec.audio:
        if t + 20 < start or t >= end:
            continue
        per_ms = rec.rate // 1000
        ms = len(pcm) // per_ms
        sq = (pcm[: ms * per_ms] ** 2).reshape(ms, per_ms).mean(axis=1)
        idx = (t + np.arange(ms) - start).astype(int)
        ok = (idx >= 0) & (idx < len(grid))
        loud[idx[ok]] = sq[ok]
    ft = np.array([f[0] for f in rec.frames], float)
    fv = np.array([f[1] for f in rec.frames], float)
    mouth = np.interp(grid, ft, fv)
    return grid, loud, mouth


@dataclass
class PageRecord:
    rate: float
    blocks: np.ndarray  # (n, 2): context frame, mean square
    frames: np.ndarray  # (n, 2): rAF time, jaw
    clock: np.ndarray  # (n, 3): rAF time, context ms - performance ms (heard), map
    arrivals: np.ndarray  # (n, 3): AUDIO arrival time, its t, the face's offset then
    scheduled: np.ndarray  # (n, 3): when a packet was scheduled, its t, when it is to be heard

    @classmethod
    def from_page(cls, data: dict[str, Any]) -> PageRecord:
        def rows(key: str, width: int) -> np.ndarray:
            return np.asarray(data.get(key, []), float).reshape(-1, width)

        scheduled = rows("scheduled", 3)
        return cls(
            rate=float(data["rate"]),
            blocks=rows("blocks", 2),
            frames=rows("frames", 2),
            clock=rows("clock", 3),
            arrivals=rows("arrivals", 3),
            scheduled=scheduled[np.argsort(scheduled[:, 0], kind="stable")],
        )

    def hops(self, t0: float, start_ms: float) -> dict[str, float]:
        """Where the time from a request (page time ``t0``) to the first sound of the
        utterance starting at stream time ``start_ms`` went, each in ms after ``t0``: the
        utterance's start on the page's fastest-path clock (``placed``: synthesis plus the
        lead), its first packet's arrival, the moment it was scheduled, the time it was
        scheduled to be heard (``planned``), and the first audible block (``audible``; later
        than ``planned`` by the voice's own leading silence)."""
        nan = float("nan")
        out = {"placed": nan, "arrived": nan, "scheduled": nan, "planned": nan}
        a = self.arrivals[(self.arrivals[:, 0] > t0) & (self.arrivals[:, 1] >= start_ms)]
        if len(a):
            out["arrived"] = float(a[0, 0] - t0)
            out["placed"] = float(start_ms + a[0, 2] - t0)
        s = self.scheduled[(self.scheduled[:, 0] > t0) & (self.scheduled[:, 1] >= start_ms)]
        if len(s):
            out["scheduled"] = float(s[0, 0] - t0)
            out["planned"] = float(s[0, 2] - t0)
        out["audible"] = self.first_audible(t0) - t0
        return out

    def heard_ms(self) -> np.ndarray:
        """performance.now() at which each block's middle is heard."""
        ctx_ms = (self.blocks[:, 0] + 64) / self.rate * 1000.0
        ok = np.isfinite(self.clock[:, 1]) & (self.clock[:, 1] != 0)
        # ctx - perf for the block's time: from the rAF samples nearest in time
        pt = self.clock[ok, 0]
        d = self.clock[ok, 1]
        approx_perf = ctx_ms - np.median(d)
        heard: np.ndarray = ctx_ms - np.interp(approx_perf, pt, _running_median(d))
        return heard

    def window(self, start: float, end: float) -> tuple[np.ndarray, ...]:
        """Heard loudness and shown jaw on a 1 ms performance-clock grid over [start, end)."""
        grid = np.arange(start, end, 1.0)
        heard = self.heard_ms()
        loud = np.zeros_like(grid)
        idx = np.round(heard - start).astype(int)
        ms_per_block = 128 / self.rate * 1000
        for k in range(int(np.ceil(ms_per_block))):
            i = idx + k
            ok = (i >= 0) & (i < len(grid))
            loud[i[ok]] = self.blocks[ok, 1]
        mouth = np.interp(grid, self.frames[:, 0], self.frames[:, 1])
        return grid, loud, mouth

    def stream_to_page(self, t_stream: float, near_perf: float) -> float:
        """performance.now() at which the page showed stream time ``t_stream`` (its map)."""
        i = int(np.searchsorted(self.clock[:, 0], near_perf))
        i = min(max(i, 0), len(self.clock) - 1)
        return t_stream + float(self.clock[i, 2])

    def first_audible(self, after: float) -> float:
        heard = self.heard_ms()
        loud = (self.blocks[:, 1] > AUDIBLE) & (heard > after)
        return float(heard[loud][0]) if loud.any() else float("nan")


def _running_median(x: np.ndarray, n: int = 31) -> np.ndarray:
    if len(x) < n:
        return np.full_like(x, np.median(x))
    pad = np.pad(x, n // 2, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, n)
    med: np.ndarray = np.median(win, axis=1)
    return med


@dataclass
class SentenceResult:
    text: str
    played_ms: float  # page: voice heard - mouth shown (includes co-articulation)
    stream_ms: float  # the stream itself: voice - mouth on the stream clock
    audio_lag_ms: float  # page's voice vs the stream's voice, through the page's own mapping
    face_lag_ms: float  # page's mouth vs the stream's mouth, through the same mapping
    corr: float  # voice-mouth correlation in the page
    measured: bool  # both the voice and the mouth were found in the stream's (else no offsets)
    heard: bool  # loud blocks inside the sentence's window
    mouth_moves: float  # mean jaw while loud minus while quiet
    latency_ms: float  # POST /speak sent -> first audible sample heard
    hops: dict[str, float]  # PageRecord.hops: where that latency went (ms after the request)

    @property
    def sync_error_ms(self) -> float:
        """What the client adds to the voice-face offset: audio lag minus face lag."""
        return self.audio_lag_ms - self.face_lag_ms


def analyse(
    page: PageRecord, stream: StreamRecord, spoken: list[dict[str, Any]]
) -> list[SentenceResult]:
    """One result per spoken sentence (``spoken``: the page's SPEAK_JS results, with text).

    The page's clock is put on the stream's through the page's own playout mapping (its
    jitter buffer's offset + delay at that time); the voice and the mouth are then each
    cross-correlated with the stream's, so the mapping cancels out of their difference."""
    out = []
    for s in spoken:
        start, dur = float(s["body"]["start_ms"]), float(s["body"]["duration_ms"])
        _, sl, sm = stream_window(stream, start - 300, start + dur + 300)
        env_s, mouth_s = envelope(sl), _smooth(sm)
        # the page's mapping while the sentence plays (the face delay changes between
        # utterances only)
        p0 = page.stream_to_page(start, s["t1"] + 150 + dur / 2)
        _, pl, pm = page.window(p0 - 300, p0 + dur + 300)
        env_p, mouth_p = envelope(pl), _smooth(pm)
        n = min(len(env_s), len(env_p))
        played, corr = lag_ms(env_p[:n], mouth_p[:n])
        audio_lag, audio_c = lag_ms(env_p[:n], env_s[:n])
        face_lag, face_c = lag_ms(mouth_p[:n], mouth_s[:n])
        loud = pl > AUDIBLE * 10
        moves = float(pm[loud].mean() - pm[~loud].mean()) if loud.any() and (~loud).any() else 0.0
        out.append(
            SentenceResult(
                text=s["text"],
                played_ms=played,
                stream_ms=lag_ms(env_s[:n], mouth_s[:n])[0],
                audio_lag_ms=audio_lag,
                face_lag_ms=face_lag,
                # the page's voice and mouth each found in the stream's, inside the lag range
                measured=min(audio_c, face_c) >= 0.5
                and max(abs(audio_lag), abs(face_lag)) < MAX_LAG_MS - 10,
                corr=corr,
                heard=bool(loud.sum() > 200),
                mouth_moves=moves,
                latency_ms=page.first_audible(s["t0"]) - s["t0"],
                hops={"answered": s["t1"] - s["t0"], **page.hops(s["t0"], start)},
            )
        )
    return out


def summary(results: list[SentenceResult]) -> dict[str, float]:
    """Offsets over the sentences whose voice and mouth were both found in the stream's
    (``measured``; how many is reported), latency over all."""
    ok = [r for r in results if r.measured] or results
    err = np.array([r.sync_error_ms for r in ok])
    played = np.array([r.played_ms for r in ok])
    lat = np.array([r.latency_ms for r in results])
    return {
        "sentences": len(results),
        "measured": int(sum(r.measured for r in results)),
        "sync_error_median_ms": float(np.median(err)),
        "sync_error_p95_abs_ms": float(np.percentile(np.abs(err), 95)),
        "played_offset_median_ms": float(np.median(played)),
        "played_offset_p95_abs_ms": float(np.percentile(np.abs(played), 95)),
        "stream_offset_median_ms": float(np.median([r.stream_ms for r in ok])),
        "audio_lag_median_ms": float(np.median([r.audio_lag_ms for r in ok])),
        "face_lag_median_ms": float(np.median([r.face_lag_ms for r in ok])),
        "speak_to_audible_median_ms": float(np.nanmedian(lat)),
        "speak_to_audible_max_ms": float(np.nanmax(lat)),
        **{
            f"hop_{k}_median_ms": float(np.nanmedian([r.hops[k] for r in results]))
            for k in results[0].hops
        },
    }


# ------------------------------------------------------------------ one run


@dataclass
class Run:
    results: list[SentenceResult]
    seconds: float  # from the first request to the end of the last sentence
    bytes_total: int  # what the page received (voice and face)
    bytes_voice: int  # of which AUDIO payloads
    start: dict[str, Any]
    end: dict[str, Any]
    page: PageRecord
    stream: StreamRecord
    spoken: list[dict[str, Any]]


def open_demo(browser: Any, url: str, query: str = "", lossy: bool = False) -> Any:
    """A page of the demo, streaming, with the probe installed; returns the page."""
    pg = open_page(browser, VIEWPORT, LOSSY_JS if lossy else None)
    errors = pg.errors
    pg.goto(f"{url}/?budget=off{query}", wait_until="domcontentloaded", timeout=60000)
    try:
        pg.wait_for_function(
            "window.avatarDemo && avatarDemo.ready && avatarDemo.client.state === 'active'"
            " && avatarDemo.client.binding !== null && avatarDemo.client.voice !== null",
            timeout=60000,
        )
    except Exception as exc:
        state = pg.evaluate(
            "window.avatarDemo && {ready: avatarDemo.ready, error: avatarDemo.error,"
            " state: avatarDemo.client.state, transport: avatarDemo.client.transportKind}"
        )
        raise AssertionError(f"the page did not stream: {state}, errors {errors}") from exc
    pg.evaluate(PROBE_JS)
    pg.wait_for_function("voiceProbe.frames.length > 60", timeout=30000)
    return pg


def speak_all(
    pg: Any, ws_url: str, sentences: list[str], gap_s: float = 0.4, lead: int | None = None
) -> Run:
    """Say each sentence (POST /speak from the page, with ``delay_ms`` ``lead`` if given),
    one after another with a pause between; record the page and the stream; analyse."""
    session = pg.evaluate("new URL(location.href).searchParams.get('session')")
    spoken = []
    with StreamListener(ws_url, session) as listener:
        start = pg.evaluate(COUNTERS_JS)
        for text in sentences:
            r = pg.evaluate(SPEAK_JS, [text, lead])
            if r["status"] >= 300:
                raise RuntimeError(f"POST /speak: {r['status']} {r['body']}")
            r["text"] = text
            spoken.append(r)
            # wait until it has been heard to the end (the voice plays the lead and the
            # page's delay later), so each sentence starts from silence
            time.sleep(r["body"]["duration_ms"] / 1000)
            pg.wait_for_function("!avatarDemo.client.voice.playing", timeout=20000)
            time.sleep(gap_s)
        time.sleep(0.5)
        end = pg.evaluate(COUNTERS_JS)
    page = PageRecord.from_page(pg.evaluate("voiceProbe"))
    results = analyse(page, listener.record, spoken)
    return Run(
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
