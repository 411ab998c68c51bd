"""Speech audio into sessions: whole WAV files (offline recognition or alignment) and streamed
PCM16 chunks (a voice agent's audio deltas over REST); the face follows the audio, and the
audio itself is relayed to viewers, stamped so that it plays with the face it drives.

Offline: the file is recognised (or aligned to ``text``) in a worker thread, co-articulated
like text, and scheduled with its audio at one stream time, ``delay_ms`` after the request or
after the voice already queued (:func:`~avatar_engine.server.voice_speak.schedule_voiced`).
Streaming: the chunks of one utterance are a live voice
(:class:`~avatar_engine.server.voice_bridge.LiveInput`, the WebSocket bridge's machinery):
each chunk's audio is queued for viewers ``delay_ms`` after the utterance's first chunk
arrived, exactly where the streaming lip-sync puts its face (decided that bounded delay
behind the audio). ``final`` ends the utterance; the input stays (its lip-sync built ahead
and warm with the voice) for the session's next one, and gives way to a voice bridge.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Annotated

import numpy as np
from pydantic import Field

from avatar_engine.audio.lipsync import timeline_from_pcm
from avatar_engine.audio.wav import parse_wav
from avatar_engine.server.inputs import RequestBody
from avatar_engine.server.limits import MAX_WAV_BYTES
from avatar_engine.server.runtime import Runtime
from avatar_engine.server.voice_bridge import LiveInputBusyError, pcm16
from avatar_engine.server.voice_speak import schedule_voiced, voice_room
from avatar_engine.speech.lipsync import from_segments

REST_OWNER = "POST /audio chunks"


class AudioChunk(RequestBody):
    """A streamed chunk: base64 PCM16 little-endian mono at ``rate`` Hz."""

    pcm16: Annotated[str, Field(max_length=4_000_000)] = ""
    rate: Annotated[int, Field(ge=8000, le=48000)] = 24000
    final: bool = False
    """The utterance is over: flush what the delay budget still holds and close the stream."""
    delay_ms: Annotated[int, Field(ge=0, le=1000)] = 200
    """Delay budget of a new stream (how far behind the audio visemes may be decided); the
    audio is relayed to viewers this much after it arrived, with its face."""


class AudioInput:
    """The REST audio inputs of one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def wav(self, session_id: str, data: bytes, text: str | None, delay_ms: int) -> float:
        """Recognise or align a WAV file, play it and relay it; returns its duration (s)."""
        if len(data) > MAX_WAV_BYTES:
            raise ValueError(f"WAV bodies are limited to {MAX_WAV_BYTES} bytes")
        pcm = parse_wav(data, "request body")
        voice_room(self.runtime, session_id, pcm.duration * 1000.0, delay_ms)  # before the work
        timeline = await asyncio.to_thread(timeline_from_pcm, pcm, text)
        session = self.runtime.session(session_id)  # deleted meanwhile: 404
        utterance = from_segments(timeline.segments, fps=float(session.fps))
        samples = np.clip(np.round(pcm.samples * 32768.0), -32768, 32767).astype(np.int16)
        schedule_voiced(self.runtime, session, samples, pcm.rate, utterance, delay_ms=delay_ms)
        return pcm.duration

    async def chunk(self, session_id: str, chunk: AudioChunk) -> int:
        """Feed one streamed chunk; returns the 10 ms face frames decided since the previous
        response. The lip-sync runs in the background (a sender is never slowed down by it,
        so it keeps real time); ``final`` waits for the rest, so the counts add up."""
        runtime = self.runtime
        runtime.session(session_id)
        try:
            raw = base64.b64decode(chunk.pcm16, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("pcm16 is not valid base64") from None
        samples = pcm16(raw)
        live = runtime.live.get(session_id)
        if live is not None and live.owner != REST_OWNER:
            raise LiveInputBusyError(f"session {session_id!r} has a voice bridge open")
        if live is None or (live.rate, live.delay_ms) != (chunk.rate, chunk.delay_ms):
            if live is not None:
                runtime.live.close(live)  # another rate or delay: a new input
            live = runtime.live.open(session_id, chunk.rate, chunk.delay_ms, REST_OWNER,
                                     yields=True)  # fmt: skip
        live.audio(samples)
        if chunk.final:
            live.done()  # the input stays, warm, for the session's next utterance
            await live.drain()
        frames = live.frames - live.reported
        live.reported = live.frames
        return frames
