"""asv: audio lip-sync costs: the feature kernel per backend, resampling, the offline modes,
and one live stream.

Inputs come from ``tests/data/audio/fox-espeak.wav`` (2.6 s of espeak-ng speech), so no
synthesiser is needed to run them. Divide by the audio's duration for "x real time" figures;
``python benchmarks/lipsync_eval.py`` prints them directly for the whole evaluation set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar_engine.audio.features import FeatureStage, hop_windows
from avatar_engine.audio.lipsync import AudioLipSync, to_internal
from avatar_engine.audio.resample import resample
from avatar_engine.audio.stream import LipSyncStream, StreamBank, StreamFrames
from avatar_engine.audio.wav import read_wav
from avatar_engine.kernels.audio_features import HOP, N_FEATURES, WINDOW
from avatar_engine.kernels.backends import available_backends

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "data" / "audio" / "fox-espeak.wav"
TEXT = "The quick brown fox jumps over the lazy dog."


def _speech16k() -> np.ndarray:
    return to_internal(read_wav(FIXTURE))


class FeatureKernel:
    """One kernel call over B hop windows (B = 100 per second of one stream)."""

    params = (list(available_backends()), [100, 1000, 10000])
    param_names = ("backend", "rows")

    def setup(self, backend: str, rows: int) -> None:
        x = _speech16k()
        reps = -(-(rows * HOP + WINDOW) // x.size) + 1
        signal = np.tile(x, reps)[: rows * HOP]
        self.windows = hop_windows(np.zeros(WINDOW - HOP, np.float32), signal)
        self.thr = np.full(rows, 1e-3, np.float32)
        self.out = np.empty((rows, N_FEATURES), np.float32)
        self.stage = FeatureStage(backend=backend)
        self.stage.run(self.windows, self.thr, self.out)  # JIT warm-up

    def time_features(self, backend: str, rows: int) -> None:
        self.stage.run(self.windows, self.thr, self.out)


class Resample:
    params = ([22050, 24000, 48000],)
    param_names = ("rate",)

    def setup(self, rate: int) -> None:
        self.x = np.random.default_rng(0).standard_normal(rate).astype(np.float32) * 0.1

    def time_one_second(self, rate: int) -> None:
        resample(self.x, rate)


class Offline:
    """Whole-utterance lip-sync of the 2.6 s fixture (decoders built once, in setup)."""

    def setup(self) -> None:
        self.x = _speech16k()
        self.lips = AudioLipSync()
        self.lips.timeline(self.x)
        self.lips.timeline(self.x, TEXT)

    def time_recognised(self) -> None:
        self.lips.timeline(self.x)

    def time_aligned(self) -> None:
        self.lips.timeline(self.x, TEXT)

    def track_seconds_of_audio(self) -> float:
        return float(self.x.size / 16000)


class Stream:
    """One live stream fed 20 ms chunks of 24 kHz PCM16 (a realtime speech API's deltas)."""

    timeout = 120.0

    def setup(self) -> None:
        x = resample(_speech16k(), 16000, 24000)
        pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
        self.chunks = [pcm[i : i + 960] for i in range(0, len(pcm), 960)]

    def time_stream_fixture(self) -> None:
        s = LipSyncStream(24000)
        StreamFrames.join([s.push_pcm16(c) for c in self.chunks] + [s.finish()])


class Bank:
    """Eight live streams in one bank, 20 ms rounds: one feature-kernel call per round."""

    timeout = 300.0
    params = ([8],)
    param_names = ("streams",)

    def setup(self, streams: int) -> None:
        self.x = resample(_speech16k(), 16000, 24000)
        self.streams = streams

    def time_bank_fixture(self, streams: int) -> None:
        bank = StreamBank()
        keys = [f"s{i}" for i in range(streams)]
        for k in keys:
            bank.open(k, 24000)
        for i in range(0, self.x.size, 480):
            bank.push({k: self.x[i : i + 480] for k in keys})
        for k in keys:
            bank.close(k)
