"""Audio lip-sync quality against synthetic ground truth nobody here hand-wrote.

    python benchmarks/lipsync_eval.py [--voices espeak,flite] [--limit N] [--json OUT.json]

Ground truth comes from the synthesisers themselves, in-process through ctypes:

* **espeak-ng** (``libespeak-ng.so.1``, Debian ``espeak-ng``): initialised with phoneme events
  in IPA; the synthesis callback receives the audio and, with it, one ``espeakEVENT_PHONEME``
  per phoneme carrying its absolute ``sample`` position in that same audio. Phoneme i spans
  from its sample to the next event's; the final empty-named event marks the end of speech.
* **Flite** (``libflite.so.1`` + the ``cmu_us_slt`` voice, Debian ``flite``): a different
  synthesiser (statistical parametric, CMU lexicon) as the check that we do not overfit
  espeak-ng. ``flite_synth_text`` returns the utterance; its ``Segment`` relation lists
  ARPAbet phones with their ``end`` times, and the wave is in the utterance.

Both truths go through the Speech package's phone -> viseme tables (IPA for espeak-ng, ARPAbet
for Flite) and are compared with our output at 10 ms frames:

* **frame agreement**: share of frames whose viseme class (one of the Oculus 15, ``sil``
  included) equals the truth's, over the speech span (first to last true phone);
* **onset error**: for every true viseme onset (a frame where the true class changes to a
  non-silent viseme), the nearest predicted onset of the same viseme within 150 ms; the mean
  absolute difference over matched onsets, and the share matched.

Systems scored: aligned (with the transcript), recognised (no transcript), streaming with
100 ms and 200 ms delay budgets, and the loudness-only fast path ("aa" when speaking) as a
floor. Speed: offline x real time (wall clock, one thread) and streaming CPU share.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# One core, as the speed targets say: BLAS threads must be capped before numpy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import numpy.typing as npt

from avatar_engine.audio.lipsync import AudioLipSync, frame_visemes, to_internal
from avatar_engine.audio.stream import StreamParams, stream_run
from avatar_engine.audio.wav import Pcm
from avatar_engine.speech.timing import Segments, finish_rows
from avatar_engine.speech.visemes import (
    VISEME_INDEX,
    VISEMES,
    TableError,
    arpabet_info,
    parse_ipa_token,
)

I8 = npt.NDArray[np.int8]
HOP = 0.01
ONSET_WINDOW = 0.15

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "She sells sea shells by the sea shore.",
    "We were away a year ago.",
    "My mother made marmalade in the morning.",
    "Peter Piper picked a peck of pickled peppers.",
    "How much wood would a woodchuck chuck?",
    "The rain in Spain stays mainly in the plain.",
    "Open the window, it is very warm in here.",
    "I think the theatre is through there on the left.",
    "Good morning, how are you feeling today?",
    "Five big balloons floated above the village fair.",
    "Could you check the schedule for Thursday afternoon?",
    "Jump, jog, and judge the journey gently.",
    "Fresh fish is often fried in fat.",
    "Why would anyone want to wait all week for a bus?",
    "Our old oak tree lost all of its leaves.",
    "Zebras zigzag through the zoo at noon.",
    "The children played happily in the garden until dusk.",
    "Vivid violets bloom every spring beside the river.",
    "Thank you very much for your help yesterday.",
    "Measure twice and cut once, the carpenter said.",
    "A large red truck rolled slowly up the hill.",
    "Bring me the blue book from the top shelf, please.",
    "Knowledge is power, but enthusiasm pulls the switch.",
    "Six thick thistle sticks.",
    "Where were you when the lights went out?",
    "Music makes my mornings much more pleasant.",
    "Every evening we eat dinner at eight.",
    "The flight to Chicago was delayed by two hours.",
    "Unique New York, you know you need unique New York.",
    "Lovely lemon liniment.",
    "She shouted at the ship from the shallow shore.",
    "Our team won the championship after a long season.",
    "Would you like tea or coffee with your breakfast?",
    "The moon rose over the misty mountains.",
]
ESPEAK_RATES = (150, 175, 200)
"""Words per minute, cycled over the sentences so the set varies in speed."""


@dataclass
class Sample:
    voice: str
    text: str
    pcm: Pcm
    truth: Segments


_IPA_EXTRA = {"ᵻ": ("I",), "ɜː": ("RR",)}
"""en-us readings the Speech IPA table (language-neutral) cannot know: ``ᵻ``, the reduced
vowel of roses and wanted, is a lax I; ``ɜː`` is how espeak-ng prints its NURSE phoneme
``3:``, which in General American is r-coloured ɝ (espeak-ng docs/languages/gmw/en.md, "Rhotic
Vowels"), the vowel CMUdict writes ER."""


def _ipa_visemes(name: str) -> tuple[str, ...]:
    if name in _IPA_EXTRA:
        return _IPA_EXTRA[name]
    try:
        ph = parse_ipa_token(name)
    except TableError:
        return ("sil",)
    return ph.visemes if ph is not None else ("sil",)


def _truth(events: list[tuple[tuple[str, ...], float, float]]) -> Segments:
    """(visemes, start, end) per phone -> segments with the Speech package's conventions."""
    rows: list[tuple[int, float, float, float, float, str]] = []
    flat: list[str] = []
    for vis, start, end in events:
        if end <= start:
            continue
        if len(vis) == 1:
            rows.append((-1, start, end, 1.0, 1.0, vis[0]))
            flat.append(vis[0])
        else:
            cut = start + 0.6 * (end - start)
            rows.append((-1, start, cut, 1.0, 1.0, vis[0]))
            rows.append((-1, cut, end, 1.0, 1.0, vis[1]))
            flat.extend(vis[:2])
    return finish_rows(rows, flat)


# --- espeak-ng through its C API ------------------------------------------------------------
class _EspeakId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int), ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", _EspeakId),
    ]  # fmt: skip


_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_POS_CHARACTER = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)


_STOPS_IPA = frozenset(["p", "b", "t", "d", "k", "\u0261", "tʃ", "dʒ"])  # \u0261: IPA script g
CLOSURE_LEVEL = 1e-3
"""-60 dBFS: below this, a sample belongs to espeak-ng's generated pause (digital silence)."""


def closure_starts(
    events: list[tuple[str, int]], audio: npt.NDArray[np.float32]
) -> list[tuple[str, int]]:
    """Move each stop's event back over the silent closure espeak-ng plays just before it.

    espeak-ng's ``Generate()`` (synthesize.c) emits a stop's closure, ``DoPause(p->prepause)``
    (25-60 ms, set in setlengths.c), *before* it queues the stop's ``espeakEVENT_PHONEME``:
    the event marks the release, and the closure's silence falls inside the previous phoneme's
    span. A vowel cannot be silent and the lips or tongue are already closed for the stop
    during its closure, so the truth gives that run of digital silence (samples below
    :data:`CLOSURE_LEVEL`, not reaching back past the previous event) to the stop.
    """
    out = list(events)
    quiet = np.abs(audio) < CLOSURE_LEVEL
    for i in range(1, len(out)):
        name, pos = out[i]
        if name not in _STOPS_IPA:
            continue
        floor = out[i - 1][1]
        start = min(pos, audio.shape[0])
        while start > floor and quiet[start - 1]:
            start -= 1
        out[i] = (name, start)
    return out


class Espeak:
    def __init__(self, voice: str = "en-us", closures: bool = True) -> None:
        self.closures = closures
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        self.rate = int(
            self.lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA
            )
        )
        if self.rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self._chunks: list[bytes] = []
        self._events: list[tuple[str, int]] = []
        self._cb = _CALLBACK(self._on_audio)  # kept alive on self
        self.lib.espeak_SetSynthCallback(self._cb)
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")

    def _on_audio(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_PHONEME:
                self._events.append((e.id.string.decode("utf-8", "replace"), int(e.sample)))
            i += 1
        return 0

    def synth(self, text: str, wpm: int = 175) -> Sample:
        self._chunks, self._events = [], []
        self.lib.espeak_SetParameter(1, wpm, 0)  # espeakRATE, absolute
        raw = text.encode()
        self.lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        audio = np.frombuffer(b"".join(self._chunks), "<i2").astype(np.float32) / 32768.0
        ev = sorted(self._events, key=lambda e: e[1])
        if self.closures:
            ev = closure_starts(ev, audio)
        phones: list[tuple[tuple[str, ...], float, float]] = []
        for (name, s0), (_, s1) in itertools.pairwise(ev):
            if not name.strip():
                continue
            phones.append((_ipa_visemes(name), s0 / self.rate, s1 / self.rate))
        return Sample("espeak-ng", text, Pcm(audio, self.rate), _truth(phones))


# --- Flite through its C API -----------------------------------------------------------------
class _CstWave(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int), ("num_samples", ctypes.c_int),
        ("num_channels", ctypes.c_int), ("samples", ctypes.POINTER(ctypes.c_short)),
    ]  # fmt: skip


class Flite:
    def __init__(self, voice: str = "slt") -> None:
        g = ctypes.RTLD_GLOBAL
        self.lib = ctypes.CDLL("libflite.so.1", mode=g)
        ctypes.CDLL("libflite_usenglish.so.1", mode=g)
        ctypes.CDLL("libflite_cmulex.so.1", mode=g)
        vlib = ctypes.CDLL(f"libflite_cmu_us_{voice}.so.1")
        self.lib.flite_init()
        reg = getattr(vlib, f"register_cmu_us_{voice}")
        reg.restype, reg.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        self.voice = reg(None)
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "flite_synth_text": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_void_p]),
            "utt_relation": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
            "relation_head": (ctypes.c_void_p, [ctypes.c_void_p]),
            "item_next": (ctypes.c_void_p, [ctypes.c_void_p]),
            "item_feat_string": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_char_p]),
            "item_feat_float": (ctypes.c_float, [ctypes.c_void_p, ctypes.c_char_p]),
            "utt_wave": (ctypes.c_void_p, [ctypes.c_void_p]),
            "delete_utterance": (None, [ctypes.c_void_p]),
        }
        for name, (res, args) in sigs.items():
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = res, args

    def synth(self, text: str) -> Sample:
        lib = self.lib
        utt = lib.flite_synth_text(text.encode(), self.voice)
        phones: list[tuple[tuple[str, ...], float, float]] = []
        item = lib.relation_head(lib.utt_relation(utt, b"Segment"))
        t = 0.0
        while item:
            name = lib.item_feat_string(item, b"name").decode()
            end = float(lib.item_feat_float(item, b"end"))
            if name != "pau":
                label = {"ax": "AH"}.get(name, name.upper())
                try:
                    vis = arpabet_info(label).visemes
                except TableError:
                    vis = ("sil",)
                phones.append((vis, t, end))
            t = end
            item = lib.item_next(item)
        wave = ctypes.cast(lib.utt_wave(utt), ctypes.POINTER(_CstWave)).contents
        n = wave.num_samples * wave.num_channels
        audio = np.ctypeslib.as_array(wave.samples, shape=(n,)).astype(np.float32) / 32768.0
        rate = int(wave.sample_rate)
        lib.delete_utterance(utt)
        return Sample("flite-slt", text, Pcm(audio, rate), _truth(phones))


# --- scoring ---------------------------------------------------------------------------------
def onsets(classes: I8) -> list[tuple[int, int]]:
    """(frame, viseme) where the class changes to a non-silent viseme."""
    prev = np.concatenate([[-1], classes[:-1]])
    idx = np.flatnonzero((classes != prev) & (classes != 0))
    return [(int(i), int(classes[i])) for i in idx]


def score(truth: I8, pred: I8) -> dict[str, float]:
    speech = np.flatnonzero(truth != 0)
    lo, hi = (int(speech[0]), int(speech[-1]) + 1) if speech.size else (0, truth.shape[0])
    agree = float(np.mean(truth[lo:hi] == pred[lo:hi])) if hi > lo else 1.0
    pred_on: dict[int, list[int]] = {}
    for f, v in onsets(pred):
        pred_on.setdefault(v, []).append(f)
    errors: list[float] = []
    missed = 0
    for f, v in onsets(truth):
        cands = pred_on.get(v, [])
        best = min((abs(c - f) for c in cands), default=None)
        if best is None or best * HOP > ONSET_WINDOW:
            missed += 1
        else:
            errors.append(best * HOP)
    total = len(errors) + missed
    return {
        "agreement": agree,
        "onset_error_ms": 1000.0 * float(np.mean(errors)) if errors else float("nan"),
        "onset_matched": len(errors) / total if total else 1.0,
        "frames": float(hi - lo),
        "onset_errors_sum": float(np.sum(errors)),
        "onsets_matched_n": float(len(errors)),
        "onsets_n": float(total),
    }


def combine(rows: list[dict[str, float]]) -> dict[str, float]:
    frames = sum(r["frames"] for r in rows)
    matched = sum(r["onsets_matched_n"] for r in rows)
    total = sum(r["onsets_n"] for r in rows)
    return {
        "agreement": sum(r["agreement"] * r["frames"] for r in rows) / frames,
        "onset_error_ms": 1000.0 * sum(r["onset_errors_sum"] for r in rows) / max(matched, 1),
        "onset_matched": matched / max(total, 1),
    }


SYSTEMS = (
    "aligned", "recognised", "recognised-words", "stream-100ms", "stream-200ms",
    "stream-100ms-warm", "stream-200ms-warm", "loudness-floor",
)  # fmt: skip
"""``-warm``: each sentence's stream starts from the cepstral mean the previous sentence's
stream ended with (the same voice's next turn); the others start cold, from the model's prior."""


def run_sample(
    s: Sample,
    lips: AudioLipSync,
    word_lips: AudioLipSync,
    systems: tuple[str, ...],
    timing: dict[str, list[float]],
    carry: dict[str, str],
) -> dict[str, dict[str, float]]:
    """Score one sentence with every system; ``carry`` holds warm streams' cepstral means."""
    x = to_internal(s.pcm)
    dur = x.shape[0] / 16000.0
    n = int(np.ceil(dur / HOP))
    truth = frame_visemes(s.truth, n)
    out: dict[str, dict[str, float]] = {}
    for name in systems:
        t0, c0 = time.perf_counter(), time.process_time()
        if name == "aligned":
            pred = frame_visemes(lips.timeline(x, s.text).segments, n)
        elif name == "recognised":
            pred = frame_visemes(lips.timeline(x).segments, n)
        elif name == "recognised-words":
            pred = frame_visemes(word_lips.timeline(x).segments, n)
        elif name.startswith("stream-"):
            delay = float(name.split("-")[1].removesuffix("ms")) / 1000.0
            warm = name.endswith("-warm")
            prior = carry.get(name) if warm else None
            frames, voice = stream_run(s.pcm, StreamParams(delay_s=delay, voice=prior))
            carry[name] = voice
            pred = frames.visemes
        else:
            _, speaking, _ = lips.analyse(x)
            pred = np.where(speaking, VISEME_INDEX["aa"], 0).astype(np.int8)
        pred = np.concatenate([pred, np.zeros(max(0, n - pred.shape[0]), np.int8)])[:n]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        timing.setdefault(name, []).extend([wall, cpu, dur])
        out[name] = score(truth, pred[:n])
    return out


def long_stream(make: Callable[[int, str], Sample], sentences: list[str]) -> dict[str, float]:
    """Steady-state streaming cost: every sentence back to back (0.4 s apart) as one live
    stream of 20 ms base64 PCM16 deltas at 24 kHz, as a realtime speech API sends them."""
    import base64

    from avatar_engine.audio.resample import resample
    from avatar_engine.audio.stream import LipSyncStream

    gap = np.zeros(int(0.4 * 24000), np.float32)
    pieces = []
    for i, text in enumerate(sentences):
        s = make(i, text)
        pieces += [resample(s.pcm.samples, s.pcm.rate, 24000), gap]
    audio = np.concatenate(pieces)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    deltas = [base64.b64encode(pcm[i : i + 960]).decode() for i in range(0, len(pcm), 960)]
    stream = LipSyncStream(24000, StreamParams(delay_s=0.2))
    c0 = time.process_time()
    frames = sum(len(stream.push_base64(d)) for d in deltas)
    frames += len(stream.finish())
    cpu = time.process_time() - c0
    seconds = audio.size / 24000
    print(
        f"\none live stream: {seconds:.1f} s of audio, {frames} frames, "
        f"{100 * cpu / seconds:.1f}% of one core (24 kHz base64 deltas, 200 ms delay)"
    )
    return {"seconds": seconds, "cpu_share": cpu / seconds, "frames": float(frames)}


FIXTURE_TEXT = SENTENCES[0]
FIXTURE_WPM = 175


def write_fixture(folder: str) -> None:
    """The end-to-end test's fixture: espeak-ng audio as WAV plus its ground-truth segments."""
    from avatar_engine.audio.wav import wav_bytes

    os.makedirs(folder, exist_ok=True)
    s = Espeak().synth(FIXTURE_TEXT, FIXTURE_WPM)
    with open(os.path.join(folder, "fox-espeak.wav"), "wb") as fh:
        fh.write(wav_bytes(s.pcm.samples, s.pcm.rate))
    truth = {
        "text": FIXTURE_TEXT,
        "made_with": (
            f"espeak-ng en-us, {FIXTURE_WPM} wpm, via benchmarks/lipsync_eval.py --fixture"
        ),
        "segments": [
            {"viseme": VISEMES[v], "start": round(a, 5), "end": round(b, 5)}
            for v, a, b, *_ in s.truth.rows()
        ],
    }
    with open(os.path.join(folder, "fox-espeak.truth.json"), "w", encoding="utf-8") as fh:
        json.dump(truth, fh, indent=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voices", default="espeak,flite")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--limit", type=int, default=None, help="first N sentences only")
    ap.add_argument("--json", default=None, help="also write all figures to this file")
    ap.add_argument("--per-sentence", action="store_true", help="print every sentence's scores")
    ap.add_argument(
        "--raw-events", action="store_true",
        help="espeak-ng truth straight from its events: no closure or NURSE-vowel corrections",
    )  # fmt: skip
    ap.add_argument(
        "--no-long-stream", action="store_true", help="skip the one-long-stream CPU measurement"
    )
    ap.add_argument(
        "--fixture", default=None, metavar="DIR",
        help="write the test fixture (one espeak-ng sentence + its truth) to DIR and exit",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.fixture:
        write_fixture(args.fixture)
        return 0
    systems = tuple(args.systems.split(","))
    sentences = SENTENCES[: args.limit]
    makers: dict[str, Callable[[int, str], Sample]] = {}
    for v in args.voices.split(","):
        if v == "espeak":
            es = Espeak(closures=not args.raw_events)
            if args.raw_events:
                _IPA_EXTRA.pop("ɜː")
            makers["espeak-ng"] = lambda i, t, es=es: es.synth(t, ESPEAK_RATES[i % 3])
        elif v == "flite":
            fl = Flite()
            makers["flite-slt"] = lambda i, t, fl=fl: fl.synth(t)
    lips = AudioLipSync()
    word_lips = AudioLipSync(recogniser="words")
    report: dict[str, Any] = {"voices": {}, "sentences": len(sentences)}
    for voice, make in makers.items():
        per: dict[str, list[dict[str, float]]] = {k: [] for k in systems}
        timing: dict[str, list[float]] = {}
        carry: dict[str, str] = {}
        rows = []
        for i, text in enumerate(sentences):
            sample = make(i, text)
            res = run_sample(sample, lips, word_lips, systems, timing, carry)
            for k, v in res.items():
                per[k].append(v)
            rows.append({"text": text, **{k: v["agreement"] for k, v in res.items()}})
            if args.per_sentence:
                shown = "  ".join(f"{k}={v['agreement']:.2f}" for k, v in res.items())
                print(f"[{voice}] {i:2d} {shown}  {text}", flush=True)
        summary: dict[str, Any] = {}
        for k in systems:
            c = combine(per[k])
            tm = np.array(timing[k]).reshape(-1, 3)
            c["x_realtime"] = float(tm[:, 2].sum() / tm[:, 0].sum())
            c["cpu_share"] = float(tm[:, 1].sum() / tm[:, 2].sum())
            summary[k] = c
        report["voices"][voice] = {"summary": summary, "sentences": rows}
        print(f"\n{voice}: {len(sentences)} sentences")
        print(
            f"{'system':16s} {'agree':>6s} {'onset ms':>9s} {'matched':>8s} "
            f"{'x RT':>7s} {'CPU':>6s}"
        )
        for k, c in summary.items():
            print(
                f"{k:16s} {100 * c['agreement']:5.1f}% {c['onset_error_ms']:9.1f} "
                f"{100 * c['onset_matched']:7.1f}% {c['x_realtime']:7.1f} "
                f"{100 * c['cpu_share']:5.1f}%"
            )
    if "espeak-ng" in makers and not args.no_long_stream:
        report["long_stream"] = long_stream(makers["espeak-ng"], sentences)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
