"""Voice audio -> the 20 ms packets of protocol v1.1 (docs/protocol.md section 3.8).

One :class:`AudioPacketizer` per stream of audio (a session's voice in one codec): push int16
samples at any rate as they come, get back every complete 20 ms packet, ready to be the
``payload`` of an AUDIO message:

- ``opus``: one Opus packet (RFC 6716, no Ogg, no OpusHead) per 960 samples at 48 kHz mono,
  encoded by libopus through PyAV (which aiortc already brings); about 24 kbps;
- ``pcm16``: 320 samples at 16 kHz, signed 16-bit little-endian, 640 bytes.

Input at another rate is resampled incrementally (:class:`avatar_engine.audio.resample.Resampler`,
the engine's own polyphase filter), so chunk boundaries anywhere give the same packets.

Timing: packet ``k`` of an utterance holds output samples ``[k * 20 ms, (k + 1) * 20 ms)`` of
that utterance, so its AUDIO ``t`` is the utterance's start plus ``20 k`` ms. Opus decoders
are told to assume pre-skip 0 (section 3.8), but the encoder looks 6.5 ms ahead
(:data:`OPUS_LOOKAHEAD`): its output is that much late. The packetizer therefore drops the
first 6.5 ms of each utterance it encodes (in speech that is the silence before the first
sound) and feeds 6.5 ms of zeros more at :meth:`AudioPacketizer.flush`, so decoded audio lines
up with ``t`` sample for sample and nothing at the end is lost.

:meth:`AudioPacketizer.flush` ends an utterance (Opus: the tail is padded to a whole packet;
PCM16: the last packet may be shorter); :meth:`AudioPacketizer.reset` drops everything after a
cut (barge-in). Both leave the packetizer ready for the next utterance with a fresh encoder.

Pure computation: no clock, no I/O.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from avatar_engine.audio.resample import Resampler
from avatar_engine.audio.wav import check_rate
from avatar_engine.codec.wire import AUDIO_PACKET_MS, AudioCodec
from avatar_engine.types import F32, I16

DEFAULT_BIT_RATE: Final = 24_000
MIN_BIT_RATE: Final = 16_000
MAX_BIT_RATE: Final = 64_000
"""Opus bit rates accepted, bits/s: speech is clear from 16 kbps; 24 kbps is a common voice
setting; above 64 kbps mono speech gains nothing audible."""
OPUS_LOOKAHEAD: Final = 312
"""libopus's encoder delay at 48 kHz (6.5 ms, its pre-skip), compensated as the module says;
a test checks it against the first packet's timestamp."""
MAX_PUSH_SAMPLES: Final = 48_000 * 600
"""One push takes at most ten minutes of 48 kHz audio (a bound, not a limit in practice)."""


class AudioPacketizer:
    """Cut int16 audio into protocol v1.1 AUDIO payloads for one codec."""

    __slots__ = (
        "_encoder",
        "_in_rate",
        "_pending",
        "_pts",
        "_resampler",
        "_skip",
        "bit_rate",
        "codec",
        "frame_samples",
        "rate",
    )

    def __init__(self, codec: AudioCodec | str = AudioCodec.OPUS, *,
                 bit_rate: int = DEFAULT_BIT_RATE) -> None:  # fmt: skip
        c = AudioCodec.from_name(codec) if isinstance(codec, str) else AudioCodec(codec)
        if c is AudioCodec.OFF:
            raise ValueError("a packetizer needs a codec: opus or pcm16")
        if isinstance(bit_rate, bool) or not MIN_BIT_RATE <= int(bit_rate) <= MAX_BIT_RATE:
            raise ValueError(f"bit_rate must lie in {MIN_BIT_RATE}..{MAX_BIT_RATE} bits/s")
        self.codec = c
        self.rate = c.rate
        """Output sample rate (the hello's ``audio_rate``): 48000 for Opus, 16000 for PCM16."""
        self.frame_samples = self.rate * AUDIO_PACKET_MS // 1000
        self.bit_rate = int(bit_rate)
        self._in_rate: int | None = None
        self._resampler: Resampler | None = None
        self._pending: I16 = np.zeros(0, dtype=np.int16)
        self._encoder: Any = None
        self._pts = 0
        self._skip = 0
        self._start()

    def _start(self) -> None:
        """A fresh utterance: new encoder state, nothing pending, no input rate yet."""
        self._in_rate = None
        self._resampler = None
        self._pending = np.zeros(0, dtype=np.int16)
        self._pts = 0
        if self.codec is AudioCodec.OPUS:
            self._encoder = _opus_encoder(self.rate, self.bit_rate)
            self._skip = OPUS_LOOKAHEAD

    def push(self, samples: npt.ArrayLike, rate: int) -> list[bytes]:
        """Feed mono int16 samples at ``rate`` Hz; returns every complete 20 ms packet.

        The rate is fixed for an utterance: a different rate before :meth:`flush` or
        :meth:`reset` is a ValueError, as is a non-int16 or non-1-D array.
        """
        x = np.asarray(samples)
        if x.dtype != np.int16 or x.ndim != 1:
            raise ValueError("samples must be a 1-D int16 array (mono PCM16)")
        if x.shape[0] > MAX_PUSH_SAMPLES:
            raise ValueError(f"one push takes at most {MAX_PUSH_SAMPLES} samples")
        r = check_rate(rate)
        if self._in_rate is None:
            self._in_rate = r
            self._resampler = None if r == self.rate else Resampler(r, self.rate)
        elif r != self._in_rate:
            raise ValueError(
                f"sample rate changed from {self._in_rate} to {r} Hz within an utterance; "
                "flush() or reset() first"
            )
        if self._resampler is None:
            return self._take(x)
        return self._take(_to_int16(self._resampler.push(x.astype(np.float32) / 32768.0)))

    def flush(self) -> list[bytes]:
        """End the utterance: the rest as packets (Opus: zero-padded to a whole 20 ms, plus
        the encoder's lookahead; PCM16: a shorter last packet). Then ready for the next."""
        tail: list[bytes] = []
        if self._resampler is not None:
            tail = self._take(_to_int16(self._resampler.flush()))
        if self.codec is AudioCodec.OPUS:
            if self._pts or self._pending.shape[0]:  # something was encoded or is waiting
                pad = OPUS_LOOKAHEAD + (-(self._pending.shape[0] + OPUS_LOOKAHEAD)) % (
                    self.frame_samples
                )
                tail += self._take(np.zeros(pad, dtype=np.int16))
        elif self._pending.shape[0]:
            tail.append(self._pending.astype("<i2").tobytes())
        self._start()
        return tail

    def reset(self) -> None:
        """Drop everything pending (a cut): the next push starts a new utterance."""
        self._start()

    def _take(self, x: I16) -> list[bytes]:
        if self._skip and x.shape[0]:
            dropped = min(self._skip, x.shape[0])
            x = x[dropped:]
            self._skip -= dropped
        if not x.shape[0]:
            return []
        buf = np.concatenate([self._pending, x]) if self._pending.shape[0] else x
        whole = buf.shape[0] // self.frame_samples * self.frame_samples
        self._pending = np.array(buf[whole:], dtype=np.int16)  # a copy: never a caller's view
        if whole == 0:
            return []
        frames = buf[:whole].reshape(-1, self.frame_samples)
        if self.codec is AudioCodec.PCM16:
            return [row.astype("<i2").tobytes() for row in frames]
        return self._encode(frames)

    def _encode(self, frames: I16) -> list[bytes]:
        import av

        out: list[bytes] = []
        for row in frames:  # one libopus call per 20 ms packet: the codec's own unit
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(row)[None, :], format="s16", layout="mono"
            )
            frame.sample_rate = self.rate
            frame.pts = self._pts
            self._pts += self.frame_samples
            out.extend(bytes(p) for p in self._encoder.encode(frame))
        return out


def _to_int16(x: F32) -> I16:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _opus_encoder(rate: int, bit_rate: int) -> Any:
    """A libopus encoder context (mono, s16, 20 ms frames, tuned for speech)."""
    try:
        import av
    except ImportError:  # aiortc depends on PyAV, so this means a broken install
        raise RuntimeError("Opus needs PyAV: pip install av") from None
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate = rate
    ctx.layout = "mono"
    ctx.format = "s16"
    ctx.bit_rate = bit_rate
    ctx.options = {"application": "voip", "frame_duration": str(AUDIO_PACKET_MS)}
    ctx.open()
    return ctx
