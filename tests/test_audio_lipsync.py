"""Offline and streaming audio lip-sync, end to end (PocketSphinx; fixtures in tests/data/audio)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pocketsphinx")

from avatar_engine.audio.lipsync import (
    AudioLipSync,
    absorb_closures,
    carve_pauses,
    fill_voiced_silences,
    frame_visemes,
    timeline_from_wav,
    to_internal,
)
from avatar_engine.audio.phones import AlignmentError, TimedPhone
from avatar_engine.audio.stream import LipSyncStream, StreamFrames, StreamParams, stream_visemes
from avatar_engine.audio.wav import Pcm, read_wav, wav_bytes
from avatar_engine.kernels.audio_features import RATE
from avatar_engine.speech.timing import Segments
from avatar_engine.speech.visemes import VISEME_INDEX

DATA = Path(__file__).parent / "data" / "audio"
WAV = DATA / "fox-espeak.wav"
TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def lips() -> AudioLipSync:
    return AudioLipSync()


@pytest.fixture(scope="module")
def truth() -> tuple[Pcm, np.ndarray]:
    pcm = read_wav(WAV)
    rows = json.loads((DATA / "fox-espeak.truth.json").read_text("utf-8"))["segments"]
    seg = Segments.from_rows(
        [(VISEME_INDEX[r["viseme"]], r["start"], r["end"], 1.0, 1.0, "") for r in rows]
    )
    n = int(np.ceil(pcm.duration / 0.01))
    return pcm, frame_visemes(seg, n)


def _agreement(truth: np.ndarray, pred: np.ndarray) -> float:
    speech = np.flatnonzero(truth != 0)
    lo, hi = speech[0], speech[-1] + 1
    return float(np.mean(truth[lo:hi] == pred[lo:hi]))


def test_silence_is_a_closed_neutral_mouth(lips: AudioLipSync) -> None:
    tl = lips.timeline(np.zeros(RATE, np.float32))
    assert tl.method == "silence"
    assert set(tl.segments.viseme.tolist()) == {0}
    frames = StreamFrames.join(
        [s.push(np.zeros(4800, np.float32)) for s in [LipSyncStream(24000)] * 5]
    )
    assert np.all(frames.weights == 0) and np.all(frames.visemes == 0)


@pytest.mark.parametrize("freq", [150.0, 440.0, 1000.0])
def test_pure_tone_gives_no_speech_phonemes(lips: AudioLipSync, freq: float) -> None:
    t = np.arange(2 * RATE) / RATE
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    tl = lips.timeline(x)
    assert set(tl.segments.viseme.tolist()) == {0}
    streamed = stream_visemes(Pcm(x, RATE), StreamParams(delay_s=0.2))
    assert np.mean(streamed != 0) < 0.03  # at most the onset frames, on loudness alone


def test_aligned_end_to_end_is_sane(lips: AudioLipSync, truth: tuple[Pcm, np.ndarray]) -> None:
    _, tv = truth
    tl = timeline_from_wav(WAV, TEXT, lipsync=lips)
    assert tl.mode == "aligned"
    pred = frame_visemes(tl.segments, tv.shape[0])
    assert _agreement(tv, pred) > 0.6


def test_recognised_end_to_end_is_sane(lips: AudioLipSync, truth: tuple[Pcm, np.ndarray]) -> None:
    pcm, tv = truth
    tl = lips.timeline(to_internal(pcm))
    assert tl.mode == "recognised" and tl.method == "phone-loop"
    assert _agreement(tv, frame_visemes(tl.segments, tv.shape[0])) > 0.35


@pytest.mark.parametrize("gain", [0.01, 8.0])
def test_quiet_and_clipped_audio_still_work(
    lips: AudioLipSync, truth: tuple[Pcm, np.ndarray], gain: float
) -> None:
    pcm, tv = truth
    x = np.clip(pcm.samples * gain, -1.0, 32767 / 32768).astype(np.float32)
    y = read_wav_bytes(wav_bytes(x, pcm.rate))  # through PCM16 like a real file
    tl = lips.timeline(to_internal(y), TEXT)
    assert _agreement(tv, frame_visemes(tl.segments, tv.shape[0])) > 0.5
    assert tl.speaking.mean() > 0.5


def read_wav_bytes(data: bytes) -> Pcm:
    from avatar_engine.audio.wav import parse_wav

    return parse_wav(data)


def test_alignment_rejects_impossible_transcripts(lips: AudioLipSync) -> None:
    x = (0.3 * np.random.default_rng(0).standard_normal(RATE // 20)).astype(np.float32)
    with pytest.raises(AlignmentError):
        lips.timeline(x, "this sentence has far more phones than fifty milliseconds could hold")


def test_closures_are_given_to_the_following_stop() -> None:
    phones = [
        TimedPhone("AH", 0.0, 0.1),
        TimedPhone("SIL", 0.1, 0.16),
        TimedPhone("P", 0.16, 0.2),
        TimedPhone("SIL", 0.2, 0.6),
        TimedPhone("P", 0.6, 0.7),
    ]
    out = absorb_closures(phones)
    assert [p.phone for p in out] == ["AH", "P", "SIL", "P"]
    assert out[1].start == pytest.approx(0.1)


def _hops(n: int, on: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for a, b in on:
        mask[a:b] = True
    return mask


def test_a_pause_at_a_phones_edge_becomes_silence_but_one_inside_it_does_not() -> None:
    # DH stretched over a 200 ms pause before it; P with a 40 ms closure inside; AA then
    # 100 ms of pause after it.
    phones = [TimedPhone("DH", 0.0, 0.3), TimedPhone("P", 0.3, 0.5), TimedPhone("AA", 0.5, 0.8)]
    pause = _hops(80, [(0, 20), (35, 39), (70, 80)])
    out = carve_pauses(phones, pause)
    assert [p.phone for p in out] == ["SIL", "DH", "P", "AA", "SIL"]
    assert out[1].start == pytest.approx(0.2)
    assert out[2] == TimedPhone("P", 0.3, 0.5)
    assert out[3].end == pytest.approx(0.7)
    # A phone entirely over a pause is silence; shorter runs than 50 ms stay speech.
    assert [p.phone for p in carve_pauses([TimedPhone("N", 0.0, 0.1)], _hops(10, [(0, 10)]))] == [
        "SIL"
    ]
    assert carve_pauses([TimedPhone("N", 0.0, 0.1)], _hops(10, [(0, 4)])) == [
        TimedPhone("N", 0.0, 0.1)
    ]


def test_a_voiced_silence_between_phones_goes_to_its_neighbours() -> None:
    phones = [
        TimedPhone("AH", 0.0, 0.1),
        TimedPhone("SIL", 0.1, 0.2),
        TimedPhone("IY", 0.2, 0.3),
        TimedPhone("SIL", 0.3, 0.5),
        TimedPhone("T", 0.5, 0.6),
    ]
    voiced = _hops(60, [(0, 30)])  # the second silence is unvoiced: a real gap
    out = fill_voiced_silences(phones, voiced)
    assert [p.phone for p in out] == ["AH", "IY", "SIL", "T"]
    assert out[0].end == pytest.approx(0.15) and out[1].start == pytest.approx(0.15)
    assert out[2] == TimedPhone("SIL", 0.3, 0.5)


def test_stream_chunking_does_not_change_frames(truth: tuple[Pcm, np.ndarray]) -> None:
    pcm, _ = truth
    x = pcm.samples

    def run(chunks: list[np.ndarray]) -> StreamFrames:
        s = LipSyncStream(pcm.rate)
        return StreamFrames.join([s.push(c) for c in chunks] + [s.finish()])

    whole = run([x])
    cuts = np.sort(np.random.default_rng(7).integers(0, x.size, 25))
    pieces = run(list(np.split(x, cuts)))
    tiny = run([x[i : i + 37] for i in range(0, x.size, 37)])
    for other in (pieces, tiny):
        assert len(other) == len(whole)
        np.testing.assert_array_equal(other.visemes, whole.visemes)
        np.testing.assert_allclose(other.weights, whole.weights, atol=1e-6)


def test_stream_delay_budget_and_fast_path() -> None:
    rate = 24000
    t = np.arange(rate) / rate
    voiced = 0.3 * np.sign(np.sin(2 * np.pi * 120 * t)) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    x = np.concatenate([np.zeros(rate // 2), voiced]).astype(np.float32)
    s = LipSyncStream(rate, StreamParams(delay_s=0.1))
    emitted_at: list[tuple[int, int]] = []  # (frames emitted so far, samples pushed so far)
    parts = []
    step = 480  # 20 ms deltas
    for i in range(0, x.size, step):
        chunk = (np.clip(x[i : i + step], -1, 1) * 32767).astype("<i2").tobytes()
        parts.append(s.push_base64(base64.b64encode(chunk).decode()))
        emitted_at.append((s.frames_emitted, i + step))
    parts.append(s.finish())
    frames = StreamFrames.join(parts)
    for n_frames, n_samples in emitted_at:  # never more than the budget behind the audio
        assert n_samples / rate - n_frames * 0.01 <= 0.1 + 0.001  # + resampler latency
    onset = 50  # first frame of voiced audio
    assert frames.amplitude[onset - 2] == 0.0  # (onset - 1 sees the resampler's pre-ringing)
    assert frames.amplitude[onset] > 0.3  # the jaw opens in the first voiced frame
    assert frames.weights[onset].sum() > 0.1
    jumps = np.abs(np.diff(frames.weights, axis=0)).max()
    assert jumps < 0.75  # smoothed: no frame-to-frame snap of a full viseme


def test_stream_rejects_bad_rates_and_delays() -> None:
    from avatar_engine.audio.wav import AudioFormatError

    with pytest.raises(AudioFormatError):
        LipSyncStream(11025)
    with pytest.raises(ValueError, match="delay_s"):
        LipSyncStream(16000, StreamParams(delay_s=5.0))


def test_stream_frames_drive_a_rig(truth: tuple[Pcm, np.ndarray]) -> None:
    from avatar_engine.rigs.profile import load_rig
    from avatar_engine.speech.rig import SpeechRig

    pcm, _ = truth
    s = LipSyncStream(pcm.rate)
    frames = StreamFrames.join([s.push(pcm.samples), s.finish()])
    rig = SpeechRig(load_rig("cc4-extended"))
    channels = np.ascontiguousarray(frames.channels())
    out = np.empty((len(frames), rig.rig.morph_count), np.float32)
    rig.run(channels, out)
    assert out.max() > 0.3 and np.isfinite(out).all()


def test_offline_results_do_not_depend_on_call_history(
    lips: AudioLipSync, truth: tuple[Pcm, np.ndarray]
) -> None:
    pcm, _ = truth
    x = to_internal(pcm)
    first = lips.timeline(x).phones
    lips.timeline(np.roll(x, 5000) * np.float32(0.2))  # something else in between
    assert lips.timeline(x).phones == first


def test_word_recogniser_option(truth: tuple[Pcm, np.ndarray]) -> None:
    pcm, tv = truth
    tl = AudioLipSync(recogniser="words").timeline(to_internal(pcm))
    assert tl.method in ("words-align", "phone-loop")
    assert _agreement(tv, frame_visemes(tl.segments, tv.shape[0])) > 0.35
    with pytest.raises(ValueError, match="recogniser"):
        AudioLipSync(recogniser="oracle")


def test_stream_bank_matches_separate_streams(truth: tuple[Pcm, np.ndarray]) -> None:
    from avatar_engine.audio.stream import StreamBank

    pcm, _ = truth
    x = pcm.samples
    voices = {"a": x, "b": x[::-1].copy() * np.float32(0.5), "c": np.zeros(x.size, np.float32)}
    bank = StreamBank()
    for k in voices:
        bank.open(k, pcm.rate)
    got: dict[str, list[StreamFrames]] = {k: [] for k in voices}
    step = 441 * 3  # 60 ms rounds, every stream pushed in the same kernel call
    for i in range(0, x.size, step):
        for k, frames in bank.push({k: v[i : i + step] for k, v in voices.items()}).items():
            got[k].append(frames)
    for k, samples in voices.items():
        got[k].append(bank.close(k))
        alone = LipSyncStream(pcm.rate)
        ref = StreamFrames.join([alone.push(samples), alone.finish()])
        mine = StreamFrames.join(got[k])
        np.testing.assert_array_equal(mine.visemes, ref.visemes)
        np.testing.assert_allclose(mine.weights, ref.weights, atol=1e-6)


def test_stream_splits_utterances_at_pauses(truth: tuple[Pcm, np.ndarray]) -> None:
    """A long stream ends decoder utterances at pauses (bounded cost); phones after a split
    keep their place in stream time, the voice learned in the first utterance carries into
    the next, and chunking still changes nothing."""
    pcm, expected = truth
    gap = np.zeros(int(0.8 * pcm.rate), np.float32)
    x = np.concatenate([pcm.samples, gap, pcm.samples])

    def run(chunks: list[np.ndarray]) -> StreamFrames:
        s = LipSyncStream(pcm.rate)
        out = StreamFrames.join([s.push(c) for c in chunks] + [s.finish()])
        assert s._utt_hop0 > 0  # the pause ended the first utterance
        return out

    whole = run([x])
    pieces = run(list(np.split(x, np.sort(np.random.default_rng(3).integers(0, x.size, 40)))))
    np.testing.assert_array_equal(pieces.visemes, whole.visemes)
    n = expected.shape[0]
    shift = round((pcm.samples.size + gap.size) / pcm.rate * 100)
    first = _agreement(expected, whole.visemes[:n])
    second = _agreement(expected, whole.visemes[shift : shift + n])
    # The same audio again, in the same place, heard at least as well now the voice is known.
    assert second >= first - 0.02 and second > 0.55, (first, second)
