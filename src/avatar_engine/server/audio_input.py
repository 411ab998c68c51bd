"""Speech audio into sessions: whole WAV files (offline recognition or alignment) and streamed
PCM16 chunks (a voice agent's audio deltas), both turned into the session's speech layer.

Offline: the file is recognised (or aligned to ``text``) in a worker thread, co-articulated
like text, and played with its time 0 at the request's arrival plus ``delay_ms``.
Streaming: one :class:`LipSyncStream` per session (rate declared by the sender) emits
10 ms viseme frames a bounded delay behind the audio; each batch is spliced into the session's
speech curves as it arrives. Streams are bounded in number and closed on ``final``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Final

from pydantic import Field

from avatar_engine.audio.lipsync import timeline_from_pcm
from avatar_engine.audio.stream import LipSyncStream, StreamParams
from avatar_engine.audio.wav import parse_wav
from avatar_engine.server.inputs import RequestBody
from avatar_engine.server.limits import MAX_AUDIO_STREAMS, MAX_WAV_BYTES
from avatar_engine.server.quotas import QuotaExceededError
from avatar_engine.server.runtime import Runtime
from avatar_engine.speech.lipsync import from_segments

MAX_STREAMS: Final = MAX_AUDIO_STREAMS


class AudioChunk(RequestBody):
    """A streamed chunk: base64 PCM16 little-endian mono at ``rate`` Hz."""

    pcm16: Annotated[str, Field(max_length=4_000_000)] = ""
    rate: Annotated[int, Field(ge=8000, le=48000)] = 24000
    final: bool = False
    """The utterance is over: flush what the delay budget still holds and close the stream."""
    delay_ms: Annotated[int, Field(ge=0, le=1000)] = 200
    """Delay budget of a new stream (how far behind the audio visemes may be decided)."""


class AudioInput:
    """The per-session audio streams of one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.streams: dict[str, tuple[LipSyncStream, float]] = {}

    async def wav(self, session_id: str, data: bytes, text: str | None, delay_ms: int) -> float:
        """Recognise or align a WAV file and play it; returns its duration in seconds."""
        if len(data) > MAX_WAV_BYTES:
            raise ValueError(f"WAV bodies are limited to {MAX_WAV_BYTES} bytes")
        pcm = parse_wav(data, "request body")
        timeline = await asyncio.to_thread(timeline_from_pcm, pcm, text)
        session = self.runtime.engine.get(session_id)
        utterance = from_segments(timeline.segments, fps=float(session.fps))
        now = self.runtime.now()
        self.runtime.engine.play(session_id, utterance, now + delay_ms / 1000, now)
        self.runtime.kick()
        return pcm.duration

    def chunk(self, session_id: str, chunk: AudioChunk) -> int:
        """Feed one streamed chunk; returns the number of 10 ms frames emitted."""
        self.runtime.engine.get(session_id)
        now = self.runtime.now()
        entry = self.streams.get(session_id)
        if entry is None or entry[0].rate != chunk.rate:
            if len(self.streams) >= MAX_STREAMS and session_id not in self.streams:
                raise QuotaExceededError(
                    f"at most {MAX_STREAMS} audio streams at once (end one with final: true)"
                )
            stream = LipSyncStream(chunk.rate, StreamParams(delay_s=chunk.delay_ms / 1000))
            entry = (stream, now)
            self.streams[session_id] = entry
        stream, t0 = entry
        frames = stream.push_base64(chunk.pcm16) if chunk.pcm16 else None
        if chunk.final:
            tail = stream.finish()
            del self.streams[session_id]
            frames = tail if frames is None else type(tail).join([frames, tail], frames.first)
        if frames is None or not len(frames):
            return 0
        # Audio time 0 is when the stream's first chunk arrived; frames play on that clock,
        # but never in the past (they were decided up to the delay budget after their audio).
        times = frames.times + t0
        times = times + max(0.0, now - float(times[0]))
        self.runtime.engine.play_frames(session_id, times, frames.channels(), now)
        self.runtime.kick()
        return len(frames)

    def forget(self, session_id: str) -> None:
        self.streams.pop(session_id, None)
