"""``POST /speak`` out loud: the voice says the text, the face plays what the voice said, and
both start at one stream time, so viewers hear and see them together.

Three ways a request gets a voice:

- ``text`` (no ``audio``): the voice named by ``voice`` (default: espeak-ng, built in)
  synthesises it in a worker thread, with its own phoneme timings;
- ``audio`` (any TTS's WAV, base64) with timings: the face from the timings, the audio relayed;
- ``audio`` with ``text``: the engine's aligner places the text on the audio (a worker thread).

Placement: the utterance starts ``delay_ms`` after its audio is ready (default
:data:`VOICE_LEAD_MS` for a request with a voice), or when the audio already queued for the
session ends (sentences posted one after another play one after another), unless
``interrupt`` cuts what is queued first. The face's keys go to
:meth:`~avatar_engine.server.voice_out.VoiceOut.feed_face` at the same stream times as the
audio, so its first key and the audio's first sample share ``t``. The face starts moving a
little before the sound (anticipation: espeak-ng's curves begin about 150 ms ahead of it);
when the lead is shorter, that part is fitted between now and the sound rather than lost
(:func:`fit_anticipation`).

When the default voice cannot run here (no libespeak-ng), the face still speaks the text
(the text path), and the degradation is visible: the session's state goes to ``degraded``
(an EVENT to viewers) and the response says why. A voice the request *names* that is not
installed is the caller's 400 naming what to install.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import threading
from typing import TYPE_CHECKING, Final

import numpy as np

from avatar_engine.audio.wav import parse_wav
from avatar_engine.engine.live_voice import FaceFrames
from avatar_engine.engine.sessions import Session
from avatar_engine.engine.voice_track import MAX_QUEUED_MS, VoiceQueueFullError
from avatar_engine.server.inputs import SpeakRequest
from avatar_engine.speech.lipsync import Utterance
from avatar_engine.voice import (
    Voice,
    VoiceOptions,
    VoiceUnavailableError,
    load_voice,
    voiced_from_audio,
)

if TYPE_CHECKING:
    from avatar_engine.server.runtime import Runtime

DEFAULT_VOICE: Final = "espeak"
VOICE_LEAD_MS: Final = 40
"""Default ``delay_ms`` of a ``/speak`` with a voice: its first packets are sent this long
before they play. A client needs each packet its audio output latency (plus decoding) before
its time; the browser client shortens its face's playout delay by however early audio
arrives (clients/threejs/src/playout.js), so a lead up to that latency (browsers: about
40-70 ms) costs a listener nothing, and beyond it adds to the time to the first sound. 40 ms
lets the first packets travel ahead of their time on a loaded server."""


class Voices:
    """Voices loaded once per process (a native library or a model), failures remembered."""

    def __init__(self, piper_model: str | None = None) -> None:
        self.piper_model = piper_model
        self._voices: dict[str, Voice | Exception] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Voice:
        """The voice, or :class:`~avatar_engine.voice.VoiceUnavailableError` naming what to
        install (remembered: installing it takes a restart)."""
        with self._lock:
            found = self._voices.get(name)
            if found is None:
                found = self._voices[name] = self._load(name)
        if isinstance(found, Exception):
            raise found
        return found

    def _load(self, name: str) -> Voice | Exception:
        try:
            if name == "piper":
                if self.piper_model is None:
                    return VoiceUnavailableError(
                        "piper", "a voice model: serve --piper-model VOICE.onnx",
                        "no model is configured",
                    )  # fmt: skip
                return load_voice("piper", model=self.piper_model)
            return load_voice(name)
        except (VoiceUnavailableError, ValueError) as exc:
            return exc


def _wav_samples(b64: str) -> tuple[np.ndarray, int]:
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("audio: not valid base64") from None
    pcm = parse_wav(data, "audio")
    samples = np.clip(np.round(pcm.samples * 32768.0), -32768, 32767).astype(np.int16)
    return samples, pcm.rate


async def speak_request(
    runtime: Runtime, voices: Voices, session: Session, body: SpeakRequest
) -> dict[str, object]:
    """Schedule a ``/speak`` request (returns the response body); raises ValueError and the
    voice's errors for the caller's 4xx."""

    fps = float(session.fps)
    lead = body.delay_ms if "delay_ms" in body.model_fields_set else VOICE_LEAD_MS
    if body.audio is not None:
        samples, rate = _wav_samples(body.audio)
        if not body.interrupt:  # fail before aligning audio that cannot queue
            voice_room(runtime, session.id, 1000.0 * samples.shape[0] / rate, lead)
        if body.text is None:
            utterance = await asyncio.to_thread(body.utterance, fps)
            how = "timings"
        else:
            voiced = await asyncio.to_thread(
                voiced_from_audio, samples, rate, text=body.text, fps=fps
            )
            utterance, how = voiced.utterance, "aligned"
        return _schedule(runtime, session, body, lead, samples, rate, utterance, "relay", how)
    if body.text is None:
        return await _face_only(runtime, session, body)
    if body.voice == "none":
        return _text_face(runtime, session, body, body.text)
    name = body.voice or DEFAULT_VOICE
    try:
        voice = voices.get(name)
    except VoiceUnavailableError as exc:
        if body.voice is not None:
            raise  # the caller asked for this voice: 400 naming what to install
        return _degraded(runtime, session, body, body.text, exc)
    options = VoiceOptions(lang=body.lang, rate_wpm=body.rate, pitch=body.pitch, fps=fps)
    voiced = await asyncio.to_thread(voice.synthesize, body.text, options)
    return _schedule(runtime, session, body, lead, voiced.samples, voiced.rate,
                     voiced.utterance, name, "voice")  # fmt: skip


def _schedule(
    runtime: Runtime,
    session: Session,
    body: SpeakRequest,
    lead_ms: int,
    samples: np.ndarray,
    rate: int,
    utterance: Utterance,
    voice: str,
    how: str,
) -> dict[str, object]:
    placed = schedule_voiced(runtime, session, samples, rate, utterance,
                             delay_ms=lead_ms, interrupt=body.interrupt)  # fmt: skip
    return {"session": session.id, "scheduled": True, "voice": voice, "face": how, **placed}


def voice_room(runtime: Runtime, session_id: str, duration_ms: float, delay_ms: int = 0) -> int:
    """Where audio of ``duration_ms`` would start (``delay_ms`` from now, or after the voice
    already queued); :class:`VoiceQueueFullError` if it would end beyond the bound. Checked
    before any costly work (recognition, alignment) is spent on audio that cannot queue."""
    now_ms = runtime.t_ms()
    start_ms = now_ms + delay_ms
    track = runtime.voice.tracks.get(session_id)
    if track is not None and not track.empty:
        start_ms = max(start_ms, math.ceil(track.end_ms))
    if start_ms + duration_ms - now_ms > MAX_QUEUED_MS:
        raise VoiceQueueFullError(
            f"voice queue full: at most {MAX_QUEUED_MS / 1000:g} s of audio may wait ahead of "
            f"playback; this would end {(start_ms + duration_ms - now_ms) / 1000:.1f} s ahead"
        )
    return start_ms


def schedule_voiced(
    runtime: Runtime,
    session: Session,
    samples: np.ndarray,
    rate: int,
    utterance: Utterance,
    *,
    delay_ms: int = 0,
    interrupt: bool = False,
) -> dict[str, int]:
    """Face and audio at one stream time: ``delay_ms`` from now, or after the audio already
    queued (unless ``interrupt`` cuts it first). Returns ``start_ms`` (stream time) and
    ``duration_ms``; raises :class:`VoiceQueueFullError` before anything is queued."""
    now = runtime.now()
    now_ms = runtime.t_ms(now)
    if interrupt:
        runtime.voice.cut(session.id, now_ms)
        runtime.interrupt(session.id)
    duration_ms = 1000.0 * samples.shape[0] / rate
    start_ms = voice_room(runtime, session.id, duration_ms, delay_ms)
    track = runtime.voice.track(session.id)
    track.queue(samples, rate, start_ms, now_ms)
    keys = utterance.keys
    times = fit_anticipation(start_ms + keys.times * 1000.0, start_ms, now_ms)
    runtime.voice.feed_face(session.id, FaceFrames(times, keys.values), now_ms)
    runtime.voice.wake(session.id)
    if runtime.voice.degraded.pop(session.id, None):
        runtime.recover(session.id)
    runtime.kick()
    return {"start_ms": start_ms, "duration_ms": round(duration_ms)}


def fit_anticipation(times: np.ndarray, start_ms: float, now_ms: float) -> np.ndarray:
    """Key times (stream ms, ascending) of a face whose sound starts at ``start_ms``: the keys
    before the sound that would fall before ``now_ms`` (in the past, never shown) are moved
    into ``[now_ms, start_ms)`` instead, keeping their order and shape, so the face still
    moves into the first sound rather than jumping to its middle."""
    first = float(times[0]) if times.shape[0] else start_ms
    if first >= now_ms or start_ms <= now_ms:
        return times
    before = times < start_ms
    scale = (start_ms - now_ms) / (start_ms - first)
    out = times.copy()
    out[before] = now_ms + (times[before] - first) * scale
    return out


async def _face_only(runtime: Runtime, session: Session, body: SpeakRequest) -> dict[str, object]:
    """TTS timings without their audio: the face alone, ``delay_ms`` after the request (the
    caller plays the audio). Parsed in a worker thread: timings may be long."""
    utterance = await asyncio.to_thread(body.utterance, float(session.fps))
    now = runtime.now()
    if body.interrupt:
        runtime.voice.cut(session.id, runtime.t_ms(now))
    runtime.play(session.id, utterance, now + body.delay_ms / 1000)
    runtime.kick()
    return {"session": session.id, "scheduled": True, "voice": None}


def _text_face(
    runtime: Runtime, session: Session, body: SpeakRequest, text: str
) -> dict[str, object]:
    """Text on the face alone (the streamed-text path: words as soon as they are complete)."""
    now = runtime.now()
    if body.interrupt:
        runtime.voice.cut(session.id, runtime.t_ms(now))
    spoken = text if text.endswith((" ", "\n")) else text + " "
    runtime.push_text(session.id, spoken, options=body.stream_options(), interrupt=body.interrupt)
    runtime.kick()
    return {"session": session.id, "scheduled": True, "voice": None}


def _degraded(
    runtime: Runtime, session: Session, body: SpeakRequest, text: str, exc: Exception
) -> dict[str, object]:
    """The default voice cannot run: the face still speaks, and the response and the
    session's state (an EVENT to viewers) say that it is silent and why."""
    response = _text_face(runtime, session, body, text)
    runtime.voice.degraded[session.id] = str(exc)
    runtime.degrade(session.id)
    return {**response, "degraded": f"silent: {exc}"}
