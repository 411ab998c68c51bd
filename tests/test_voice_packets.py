"""The audio packetizer: protocol v1.1 AUDIO payloads (docs/protocol.md section 3.8)."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt
import pytest

from avatar_engine.audio.resample import resample
from avatar_engine.codec.wire import AudioCodec, pcm16_max_bytes
from avatar_engine.voice import AudioPacketizer, VoiceOptions, load_voice
from avatar_engine.voice.packets import OPUS_LOOKAHEAD, _opus_encoder

I16 = npt.NDArray[np.int16]


@pytest.fixture(scope="module")
def speech() -> tuple[I16, int]:
    s = load_voice("espeak").synthesize(
        "Open the window, it is very warm in here. Thank you!", VoiceOptions()
    )
    return s.samples, s.rate


def _packets(p: AudioPacketizer, x: I16, rate: int, chunk: int) -> list[bytes]:
    out: list[bytes] = []
    for i in range(0, x.shape[0], chunk):
        out += p.push(x[i : i + chunk], rate)
    return out + p.flush()


def _decode_opus(packets: list[bytes]) -> npt.NDArray[np.float64]:
    """Decode each packet on its own terms, as a client does: mono, 48 kHz, pre-skip 0."""
    dec = av.CodecContext.create("libopus", "r")
    dec.sample_rate = 48000
    dec.layout = "mono"
    pieces = []
    for data in packets:
        for frame in dec.decode(av.Packet(data)):
            pieces.append(frame.to_ndarray().astype(np.float64).reshape(-1))
    x = np.concatenate(pieces)
    return x / 32768.0 if np.abs(x).max() > 2.0 else x  # s16 or float planar


F64 = npt.NDArray[np.float64]


def _envelope(x: F64, rate: int, hop_s: float = 0.01) -> F64:
    hop = int(rate * hop_s)
    n = x.shape[0] // hop
    return np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))


def test_opus_round_trip_keeps_the_voice_and_its_timing(speech: tuple[I16, int]) -> None:
    x, rate = speech
    packets = _packets(AudioPacketizer("opus"), x, rate, 1000)
    duration = x.shape[0] / rate
    # One packet per 20 ms, enough to hold everything.
    assert len(packets) == -(-round(duration * 48000) // 960)
    assert all(0 < len(p) < 400 for p in packets)
    kbps = sum(len(p) for p in packets) * 8 / duration / 1000
    assert 12.0 < kbps < 40.0, kbps
    decoded = _decode_opus(packets)
    assert decoded.shape[0] == 960 * len(packets)
    reference = resample(x.astype(np.float32) / 32768.0, rate, 48000).astype(np.float64)
    a, b = _envelope(reference, 48000), _envelope(decoded, 48000)
    n = min(a.shape[0], b.shape[0])
    a, b = a[:n], b[:n]
    assert np.corrcoef(a, b)[0, 1] > 0.95
    # Loudness is kept within 2 dB, and the envelopes line up: the best lag is 0 (10 ms hops).
    assert abs(20 * np.log10(np.sqrt(np.mean(b**2)) / np.sqrt(np.mean(a**2)))) < 2.0
    lags = range(-5, 6)
    score = [float(np.dot(a[5:-5], np.roll(b, -k)[5:-5])) for k in lags]
    assert lags[int(np.argmax(score))] == 0
    # Sample-exact alignment: cross-correlate the waveforms around zero lag.
    seg = slice(48000 // 2, 48000 // 2 + 48000)
    xc = [float(np.dot(reference[seg], np.roll(decoded, -k)[seg])) for k in range(-96, 97)]
    assert abs(int(np.argmax(xc)) - 96) <= 24, "decoded audio is within 0.5 ms of t"


def test_opus_encoder_lookahead_is_what_we_compensate() -> None:
    ctx = _opus_encoder(48000, 24000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
    frame.sample_rate = 48000
    frame.pts = 0
    (packet,) = ctx.encode(frame)
    assert packet.pts == -OPUS_LOOKAHEAD


def test_opus_packets_do_not_depend_on_chunking(speech: tuple[I16, int]) -> None:
    x, rate = speech
    a = _packets(AudioPacketizer("opus"), x, rate, 441)
    b = _packets(AudioPacketizer("opus"), x, rate, 9999)
    assert a == b


def test_pcm16_at_16k_is_exact_and_framed() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(-30000, 30000, size=16000 + 123, dtype=np.int16)
    p = AudioPacketizer(AudioCodec.PCM16)
    assert p.rate == 16000 and p.frame_samples == 320
    out = p.push(x[:1000], 16000)
    assert [len(b) for b in out] == [640] * 3  # complete 20 ms packets only
    out += p.push(x[1000:], 16000)
    tail = p.flush()
    assert len(tail) == 1 and len(tail[0]) == 2 * ((16000 + 123) % 320)
    packets = out + tail
    assert all(len(b) <= pcm16_max_bytes(16000) and len(b) % 2 == 0 for b in packets)
    assert b"".join(packets) == x.astype("<i2").tobytes()


def test_pcm16_resamples_like_the_engine_resampler(speech: tuple[I16, int]) -> None:
    x, rate = speech
    packets = _packets(AudioPacketizer("pcm16"), x, rate, 777)
    got = np.frombuffer(b"".join(packets), "<i2")
    want = resample(x.astype(np.float32) / 32768.0, rate, 16000)
    want16 = np.clip(np.round(want * 32768.0), -32768, 32767).astype(np.int16)
    assert np.array_equal(got, want16)
    assert all(len(b) == 640 for b in packets[:-1])


def test_flush_and_reset_start_new_utterances() -> None:
    x = (np.sin(np.arange(4000) * 0.05) * 8000).astype(np.int16)
    p = AudioPacketizer("pcm16")
    first = p.push(x, 16000)
    p.reset()  # a cut: the pending 160 samples are dropped
    assert p.flush() == []
    assert p.push(x, 16000) == first
    # After a flush the rate may change: it is a new utterance.
    p.flush()
    assert len(b"".join(p.push(x, 48000) + p.flush())) == 2 * -(-4000 // 3)
    o = AudioPacketizer("opus")
    assert o.flush() == []  # nothing pushed, nothing sent
    a = o.push(x, 48000) + o.flush()
    o.push(x[:500], 48000)
    o.reset()
    b = o.push(x, 48000) + o.flush()
    assert a == b  # reset leaves no trace in the encoder


def test_bad_input() -> None:
    p = AudioPacketizer("opus")
    with pytest.raises(ValueError, match="int16"):
        p.push(np.zeros(10, np.float32), 48000)
    with pytest.raises(ValueError, match="int16"):
        p.push(np.zeros((2, 10), np.int16), 48000)
    with pytest.raises(ValueError, match="sample rate"):
        p.push(np.zeros(10, np.int16), 1000)
    p.push(np.zeros(10, np.int16), 24000)
    with pytest.raises(ValueError, match="changed"):
        p.push(np.zeros(10, np.int16), 16000)
    with pytest.raises(ValueError, match="codec"):
        AudioPacketizer("off")
    with pytest.raises(ValueError, match="audio must be"):
        AudioPacketizer("mp3")
    with pytest.raises(ValueError, match="bit_rate"):
        AudioPacketizer("opus", bit_rate=500_000)
