"""The one small interface every voice implements, and what a voice returns.

A voice turns text into audio *and* the utterance that animates the face for exactly that
audio: :class:`VoicedSpeech` carries both, on one time axis (0 = the first sample), so the
caller plays the samples from some time ``start`` and hands the utterance to
``Engine.play(session, utterance, start, now)``: face and voice cannot drift apart, because
they were never timed separately.

Pure computation, like the rest of the core: no clock, no sockets. A voice may load a native
library or a model once (that is set-up, not I/O per call).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

import numpy as np

from avatar_engine.speech.lipsync import DEFAULT_FPS, Utterance
from avatar_engine.speech.timing import DEFAULT_WPM
from avatar_engine.types import I16

MIN_RATE_WPM: Final = 80.0
MAX_RATE_WPM: Final = 450.0
"""Speaking rates a voice accepts: espeak-ng's own range (``espeakRATE_MINIMUM`` 80 and
``espeakRATE_MAXIMUM`` 450 words per minute), well inside the duration model's 40..600."""
DEFAULT_RATE_WPM: Final = DEFAULT_WPM
"""The text path's default rate (160 wpm), so a voiced and a silent ``/speak`` match."""
MIN_PITCH: Final = 0
MAX_PITCH: Final = 100
DEFAULT_PITCH: Final = 50
"""Pitch 0..100, 50 being the voice's own (espeak-ng's ``espeakPITCH`` scale)."""
MIN_FPS: Final = 1.0
MAX_FPS: Final = 1000.0
"""The frame rates the CLI and the server accept for curves and utterances."""
MAX_TEXT_CHARS: Final = 5000
"""The longest text one synthesis takes: about five minutes of speech at 160 wpm, a second or
two of one core for espeak-ng. Longer text is a caller's 4xx (split it into sentences)."""
MAX_LANG_CHARS: Final = 32
_LANG_RE: Final = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")
"""A BCP-47-like language tag (``en``, ``en-us``, ``pt-br``, ``cmn``): what espeak-ng names
its voices by. Anything else is refused before it reaches a native library."""


class VoiceUnavailableError(RuntimeError):
    """A voice that cannot run here; the message names what to install (a caller's 4xx)."""

    def __init__(self, voice: str, install: str, detail: str = "") -> None:
        self.voice = voice
        self.install = install
        extra = f" ({detail})" if detail else ""
        super().__init__(f"voice {voice!r} needs {install}{extra}")


@dataclass(frozen=True, slots=True)
class VoiceOptions:
    """Per-call synthesis options, validated on construction (ValueError names the field)."""

    lang: str = "en"
    rate_wpm: float = DEFAULT_RATE_WPM
    pitch: int = DEFAULT_PITCH
    fps: float = DEFAULT_FPS
    """The frame rate of the session the utterance is for (the shortest segment kept is one
    frame, as in :func:`avatar_engine.speech.lipsync.from_segments`)."""

    def __post_init__(self) -> None:
        if not isinstance(self.lang, str) or len(self.lang) > MAX_LANG_CHARS:
            raise ValueError(f"lang must be a language tag of at most {MAX_LANG_CHARS} characters")
        if not _LANG_RE.match(self.lang):
            raise ValueError(f"lang {self.lang!r} is not a language tag (e.g. en, en-us, fr)")
        _check_range("rate_wpm", self.rate_wpm, MIN_RATE_WPM, MAX_RATE_WPM)
        if isinstance(self.pitch, bool) or not isinstance(self.pitch, int | np.integer):
            raise ValueError(f"pitch must be an integer {MIN_PITCH}..{MAX_PITCH}")
        _check_range("pitch", self.pitch, MIN_PITCH, MAX_PITCH)
        _check_range("fps", self.fps, MIN_FPS, MAX_FPS)


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not math.isfinite(value)
        or not lo <= value <= hi
    ):
        raise ValueError(f"{name} must lie in {lo:g}..{hi:g}, got {value!r}")


def check_text(text: str) -> str:
    """The text a voice will say: a string of 1..:data:`MAX_TEXT_CHARS` characters with
    something to say. ValueError otherwise (callers answer 4xx with the limit)."""
    if not isinstance(text, str):
        raise ValueError("text must be a string")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(
            f"text is {len(text)} characters; one request takes at most {MAX_TEXT_CHARS}"
        )
    if not text.strip():
        raise ValueError("text is empty")
    return text


@dataclass(frozen=True, slots=True)
class VoicedSpeech:
    """Audio and the face for it, on one time axis: 0 is the first sample."""

    samples: I16
    """Mono PCM, int16."""
    rate: int
    """Sample rate of ``samples``, Hz."""
    utterance: Utterance
    """Segments and keyframes timed from the first sample: play it with ``start`` = the time
    that sample plays."""
    text: str
    timing: str = "events"
    """How the face was timed: ``events`` (the synthesiser's own phoneme positions),
    ``timings`` (a TTS's timings as given), ``aligned:<method>`` (the transcript aligned to the
    audio) or ``recognised:<method>`` (phones heard in the audio): callers can show it."""

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return float(self.samples.shape[0]) / float(self.rate)

    @property
    def lead_s(self) -> float:
        """How long before the first sample the face starts moving (the lips anticipate the
        first sound; at most the co-articulation lead, 0.15 s). Schedule the first sample at
        least this far after now to show all of it; a later part of the face is never cut."""
        keys = self.utterance.keys
        return max(0.0, -float(keys.times[0])) if len(keys) else 0.0


@runtime_checkable
class Voice(Protocol):
    """Text -> :class:`VoicedSpeech`. Implementations serialise their own native calls, so one
    voice may be shared by worker threads."""

    name: str

    def synthesize(self, text: str, options: VoiceOptions) -> VoicedSpeech:
        """Say ``text`` (checked with :func:`check_text`); raises ValueError for bad input,
        :class:`~avatar_engine.speech.g2p.UnknownLanguageError` for a language the voice lacks."""
        ...
