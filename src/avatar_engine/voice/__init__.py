"""Voice: text (or any TTS's audio) -> audio and the face for exactly that audio.

Every voice implements one small interface, :class:`Voice`: ``synthesize(text, options)``
returns :class:`VoicedSpeech`, int16 samples plus an utterance timed from the first sample.

- ``espeak`` (default, built in): espeak-ng through libespeak-ng, with its own phoneme events
  at exact sample positions (:mod:`.espeak`).
- ``piper`` (extra: ``pip install 'avatar-engine[piper]'``): Piper neural voices, aligned to
  their audio by the engine's own aligner (:mod:`.piper`).
- any other TTS: :func:`voiced_from_audio` takes its audio with text and/or timings.

:class:`AudioPacketizer` cuts voice audio into the 20 ms Opus or PCM16 packets of protocol
v1.1 (docs/protocol.md section 3.8). Everything here is computation: no sockets, no clock.
See docs/voice.md.
"""

from __future__ import annotations

from typing import Any, Final

from avatar_engine.voice.base import (
    DEFAULT_PITCH,
    DEFAULT_RATE_WPM,
    MAX_FPS,
    MAX_PITCH,
    MAX_RATE_WPM,
    MAX_TEXT_CHARS,
    MIN_FPS,
    MIN_PITCH,
    MIN_RATE_WPM,
    Voice,
    VoicedSpeech,
    VoiceOptions,
    VoiceUnavailableError,
    check_text,
)
from avatar_engine.voice.external import voiced_from_audio
from avatar_engine.voice.packets import AudioPacketizer

VOICE_NAMES: Final = ("espeak", "piper")
DEFAULT_VOICE: Final = "espeak"


def load_voice(name: str = DEFAULT_VOICE, **options: Any) -> Voice:
    """A voice by name: ``espeak`` (no options) or ``piper`` (``model``, optional ``config``).

    Raises :class:`VoiceUnavailableError` naming what to install when the voice cannot run
    here, and ValueError for an unknown name or bad options.
    """
    if name == "espeak":
        if options:
            raise ValueError(f"voice 'espeak' takes no options, got {', '.join(options)}")
        from avatar_engine.voice.espeak import EspeakVoice

        return EspeakVoice()
    if name == "piper":
        from avatar_engine.voice.piper import PiperVoice

        return PiperVoice(**options)
    raise ValueError(f"unknown voice {name!r}; choose one of {', '.join(VOICE_NAMES)}")


__all__ = [
    "DEFAULT_PITCH",
    "DEFAULT_RATE_WPM",
    "DEFAULT_VOICE",
    "MAX_FPS",
    "MAX_PITCH",
    "MAX_RATE_WPM",
    "MAX_TEXT_CHARS",
    "MIN_FPS",
    "MIN_PITCH",
    "MIN_RATE_WPM",
    "VOICE_NAMES",
    "AudioPacketizer",
    "Voice",
    "VoiceOptions",
    "VoiceUnavailableError",
    "VoicedSpeech",
    "check_text",
    "load_voice",
    "voiced_from_audio",
]
