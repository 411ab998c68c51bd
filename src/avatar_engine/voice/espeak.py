"""The built-in voice: espeak-ng through libespeak-ng, audio and its phonemes in one pass.

espeak-ng is initialised in synchronous mode with phoneme events in IPA
(``espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA``). Its synthesis callback
receives each block of audio together with one ``espeakEVENT_PHONEME`` per phoneme, carrying
the phoneme's IPA name and its absolute ``sample`` position in that same audio. The face is
built from those positions, so visemes fall exactly where the sounds are: there is no aligner
in between that could be wrong.

From events to an utterance (each step reuses the Speech package):

1. Phoneme ``i`` spans from its sample to the next event's; events with an empty name mark a
   pause or the end of speech, and the gaps they leave become silence.
2. espeak-ng plays a stop's closure, a run of digital silence, *before* it queues the stop's
   event (``Generate()`` in synthesize.c calls ``DoPause(prepause)`` first), so the event
   marks the release. The lips are already closed during that silence (a /p/ is silent and
   closed), so the stop takes the silence back (:func:`closure_starts`).
3. IPA names go through the Speech IPA table as a phoneme list
   (:func:`avatar_engine.speech.external.phoneme_list`). English readings the
   language-neutral table cannot know are substituted first (:data:`ENGLISH_READINGS`,
   :data:`AMERICAN_READINGS`), as is
   the one IPA name the list would read as ARPAbet (:data:`IPA_NOT_ARPABET`); a symbol the
   table lacks becomes a neutral vowel (as the audio path does for an unknown label), so a
   rare phoneme never stops a sentence.
4. espeak-ng's IPA names carry no stress marks, so a vowel's emphasis (how far the jaw opens)
   comes from its loudness in the audio, as in the audio lip-sync path.

libespeak-ng keeps global state and is not thread-safe: every call holds one process-wide
lock (the server calls voices from a worker thread).

Finding the library: Debian's ``libespeak-ng.so.1`` (``apt-get install espeak-ng``), else any
``libespeak-ng`` the loader finds, else the PyPI package ``espeakng-loader`` (which ships the
library and its data); otherwise :class:`~avatar_engine.voice.base.VoiceUnavailableError`.

Licence: espeak-ng is GPL-3.0-or-later. It is loaded as a shared library at run time and is
not shipped with avatar-engine (see docs/voice.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np

from avatar_engine.audio.lipsync import CLOSURE_MAX_S, EMPHASIS_RANGE
from avatar_engine.speech.external import phoneme_list
from avatar_engine.speech.g2p import UnknownLanguageError, is_english
from avatar_engine.speech.lipsync import from_segments
from avatar_engine.speech.timing import Segments
from avatar_engine.speech.visemes import (
    PRIMARY_STRESS,
    SECONDARY_STRESS,
    TableError,
    parse_ipa_token,
)
from avatar_engine.types import I16
from avatar_engine.voice.base import (
    VoicedSpeech,
    VoiceOptions,
    VoiceUnavailableError,
    check_text,
)

NAME: Final = "espeak"
INSTALL: Final = "`apt-get install espeak-ng` (Debian/Ubuntu) or `pip install espeakng-loader`"
LIBRARY_SONAME: Final = "libespeak-ng.so.1"

ENGLISH_READINGS: Final[dict[str, str]] = {"ᵻ": "\u026a"}  # \u026a: lax I
"""English readings the Speech IPA table (language-neutral) cannot know: ``ᵻ``, the reduced
vowel of roses and wanted, is a lax I."""
AMERICAN_READINGS: Final[dict[str, str]] = {"ɜː": "ɚ"}
"""en-us only: ``ɜː`` is how espeak-ng prints its NURSE phoneme, which in General American is
r-coloured (espeak-ng docs/languages/gmw/en.md, "Rhotic Vowels"), the vowel CMUdict writes
ER. British voices keep the plain vowel."""
IPA_NOT_ARPABET: Final[dict[str, str]] = {"y": "\u028f"}
"""IPA names that are also ARPAbet names with another shape. The phoneme list reads a label
as ARPAbet first, and ARPAbet ``Y`` is the glide of "yes" (spread lips) while IPA ``y`` is
the rounded vowel of French "tu": it is passed as U+028F, its near neighbour with the same
rounded viseme in the IPA table, which no ARPAbet name spells. (Every other shared name, such
as ``p`` or ``w``, has the same shape in both tables.)"""
SWITCH_RE: Final = re.compile(r"\([A-Za-z-]+\)")
"""A language-switch marker, as espeak-ng writes it in its phoneme output (``(en)``)."""
UNKNOWN_READING: Final = "ə"
"""What a symbol the IPA table lacks is read as: a neutral vowel, as the audio path reads an
unknown phone label (the mouth keeps moving; nothing is dropped)."""
ENGLISH_VOICE: Final = "en-us"
"""The espeak-ng voice for ``lang="en"``: American, like the rest of the engine's English
(CMUdict); ask for ``en-gb`` (or any espeak-ng voice name) explicitly for another."""
STOPS: Final = frozenset(["p", "b", "t", "d", "k", "\u0261", "g", "tʃ", "dʒ", "\u0294"])
"""IPA stops (U+0261 is IPA's script g, U+0294 the glottal stop) and affricates, whose event
marks the release, after a silent closure."""
CLOSURE_LEVEL: Final = 1e-3
"""-60 dBFS: below this a sample is espeak-ng's generated silence (its pauses are digital
zero), so a stop's closure is the run of such samples just before its event."""
EMPHASIS_DB: Final = 18.0
"""A vowel this many dB under the utterance's loudest vowel gets the low end of the range."""

# --- the C API (speak_lib.h), bound by hand: no headers are needed at run time -------------
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_INITIALIZE_PHONEME_EVENTS: Final = 0x0001
_INITIALIZE_PHONEME_IPA: Final = 0x0002
_INITIALIZE_DONT_EXIT: Final = 0x8000
_EVENT_LIST_TERMINATED: Final = 0
_EVENT_PHONEME: Final = 7
_POS_CHARACTER: Final = 1
_CHARS_UTF8: Final = 1
_RATE: Final = 1
_PITCH: Final = 3
_EE_OK: Final = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int), ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", _EventId),
    ]  # fmt: skip


class _VoiceSpec(ctypes.Structure):
    """``espeak_VOICE``: only ``languages`` is set, to ask for a voice by language."""

    _fields_ = [
        ("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]  # fmt: skip


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True, slots=True)
class Located:
    """Where libespeak-ng was found: the library path and its data folder (None: built in)."""

    library: str
    data: str | None


def locate_library() -> Located:
    """Debian's library, any other the system loader knows, then ``espeakng-loader``'s."""
    for candidate in (LIBRARY_SONAME, None):
        # The system loader is asked only if needed: find_library runs ldconfig.
        name = candidate or ctypes.util.find_library("espeak-ng")
        if not name:
            continue
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return Located(name, None)
    try:
        import espeakng_loader  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise VoiceUnavailableError(NAME, INSTALL, "libespeak-ng not found") from None
    return Located(str(espeakng_loader.get_library_path()), str(espeakng_loader.get_data_path()))


class _Espeak:
    """The process's one libespeak-ng: initialised once, used under :data:`_LOCK`."""

    def __init__(self, where: Located) -> None:
        self.where = where
        self.lib = ctypes.CDLL(where.library)
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                               ctypes.c_int]  # fmt: skip
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_VoiceSpec)]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self.lib.espeak_SetSynthCallback.argtypes = [_Callback]
        data = None
        if where.data is not None:
            # espeak_Initialize wants the folder that *contains* espeak-ng-data.
            data = where.data.rstrip("/").removesuffix("espeak-ng-data").encode() or None
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        self.rate = int(self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, options))
        if self.rate <= 0:
            raise VoiceUnavailableError(NAME, INSTALL, f"espeak_Initialize failed ({where})")
        self._chunks: list[bytes] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _Callback(self._on_audio)  # kept alive as long as the library
        self.lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_audio(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_PHONEME:
                self._events.append((e.id.string.decode("utf-8", "replace"), int(e.sample)))
            i += 1
        return 0  # 0 = go on

    def set_voice(self, name: str) -> None:
        """Select a voice by language tag (``en-gb``, ``pt-br``), else by voice name; both
        failing (EE_NOT_FOUND, never a silent fallback to another language) is
        :class:`UnknownLanguageError`."""
        if name == self._voice:
            return
        raw = name.encode("ascii")
        by_language = self.lib.espeak_SetVoiceByProperties(ctypes.byref(_VoiceSpec(languages=raw)))
        if by_language != _EE_OK and self.lib.espeak_SetVoiceByName(raw) != _EE_OK:
            self._voice = None
            raise UnknownLanguageError(f"espeak-ng has no voice for language {name!r}")
        self._voice = name

    def synth(
        self, text: str, voice: str, wpm: int, pitch: int
    ) -> tuple[I16, list[tuple[str, int]]]:
        """Audio (int16 at :attr:`rate`) and (IPA name, sample) per phoneme event."""
        self.set_voice(voice)
        self.lib.espeak_SetParameter(_RATE, wpm, 0)
        self.lib.espeak_SetParameter(_PITCH, pitch, 0)
        self._chunks, self._events = [], []
        raw = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        chunks, events = self._chunks, self._events
        self._chunks, self._events = [], []
        if err != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with code {err}")
        audio = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.int16)
        return audio, events


_LOCK = threading.Lock()
_INSTANCE: list[_Espeak] = []
"""The initialised library (at most one: espeak_Initialize is process-global)."""


def _library() -> _Espeak:
    """The process's libespeak-ng, initialised on first use (call with :data:`_LOCK` held)."""
    if not _INSTANCE:
        _INSTANCE.append(_Espeak(locate_library()))
    return _INSTANCE[0]


def espeak_voice_name(lang: str) -> str:
    """A language tag -> the espeak-ng voice name (``en`` -> :data:`ENGLISH_VOICE`)."""
    tag = lang.lower().replace("_", "-")
    return ENGLISH_VOICE if tag in ("en", "english") else tag


def closure_starts(
    events: Sequence[tuple[str, int]], audio: I16, rate: int
) -> list[tuple[str, int]]:
    """Move each stop's event back over the silent closure espeak-ng plays just before it
    (never past the previous event, nor more than the audio path's ``CLOSURE_MAX_S``, so a
    pause before a stop stays a pause): the stop owns its closure (module docstring, step 2).
    """
    out = list(events)
    longest = round(CLOSURE_MAX_S * rate)
    quiet = np.abs(audio.astype(np.int32)) < CLOSURE_LEVEL * 32768.0
    # Start of the quiet run ending at each sample: index of the last loud sample + 1.
    loud_idx = np.where(~quiet, np.arange(quiet.shape[0]), -1)
    last_loud = np.maximum.accumulate(loud_idx) if quiet.shape[0] else loud_idx
    for i in range(1, len(out)):  # tens of phonemes per sentence
        name, pos = out[i]
        if name not in STOPS or pos <= 0:
            continue
        pos = min(pos, audio.shape[0])
        run_start = int(last_loud[pos - 1]) + 1
        out[i] = (name, max(min(run_start, pos), out[i - 1][1], pos - longest))
    return out


def readings_for(voice: str) -> dict[str, str]:
    """The substitutions for one espeak-ng voice (module docstring, step 3)."""
    out = dict(IPA_NOT_ARPABET)
    if is_english(voice.partition("-")[0]):
        out.update(ENGLISH_READINGS)
        if voice.startswith(ENGLISH_VOICE):
            out.update(AMERICAN_READINGS)
    return out


def reading(name: str, readings: Mapping[str, str]) -> str:
    """The label the IPA table is asked about for one espeak-ng phoneme name."""
    base = name.lstrip(PRIMARY_STRESS + SECONDARY_STRESS)
    if base in readings:  # keep the stress mark libespeak-ng 1.52 puts in front
        return name[: len(name) - len(base)] + readings[base]
    try:
        parse_ipa_token(name)
    except TableError:
        return UNKNOWN_READING
    return name


def events_to_segments(
    events: Sequence[tuple[str, int]], rate: int, readings: Mapping[str, str]
) -> Segments:
    """Phoneme events (IPA name, sample; empty name = pause or end) -> viseme segments.

    Language-switch markers (``(en)`` where a Chinese or Japanese voice reads a Latin word
    with English rules) come as events too; they are no sound, so they are dropped.
    """
    entries: list[dict[str, object]] = []
    ordered = sorted((e for e in events if not SWITCH_RE.fullmatch(e[0])), key=lambda e: e[1])
    for (name, s0), (_, s1) in itertools.pairwise(ordered):
        if name.strip() and s1 > s0:
            entries.append({"p": reading(name, readings), "start": s0 / rate, "end": s1 / rate})
    return phoneme_list(entries)


def loudness_emphasis(segments: Segments, audio: I16, rate: int) -> Segments:
    """Vowel emphasis from each vowel's loudness (step 4): the loudest vowel opens the jaw
    fully, one :data:`EMPHASIS_DB` quieter gets the low end; consonants keep theirs."""
    n = len(segments)
    if n == 0 or audio.shape[0] == 0:
        return segments
    vowel = np.array([_is_vowel(label) for label in segments.labels], dtype=bool)
    if not vowel.any():
        return segments
    x = audio.astype(np.float64) / 32768.0
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    i0 = np.clip(np.round(segments.start * rate).astype(np.int64), 0, x.shape[0])
    i1 = np.clip(np.round(segments.end * rate).astype(np.int64), 0, x.shape[0])
    width = np.maximum(i1 - i0, 1)
    db = 10.0 * np.log10(np.maximum((energy[i1] - energy[i0]) / width, 1e-12))
    top = float(db[vowel].max())
    lo, hi = EMPHASIS_RANGE
    share = np.clip(1.0 - (top - db) / EMPHASIS_DB, 0.0, 1.0)
    emphasis = np.where(vowel, lo + (hi - lo) * share, segments.emphasis).astype(np.float32)
    return replace(segments, emphasis=emphasis)


def _is_vowel(label: str) -> bool:
    try:
        phone = parse_ipa_token(label)
    except TableError:
        return False
    return phone is not None and phone.vowel


def _clean(text: str) -> str:
    """Control characters become spaces: they mean nothing to say and could confuse the
    library's text reader."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


class EspeakVoice:
    """espeak-ng: about 100 languages, formant synthesis, events at exact sample positions."""

    name = NAME

    def __init__(self) -> None:
        with _LOCK:
            self.rate = _library().rate  # fails now, with the install hint, not on first use

    def synthesize(self, text: str, options: VoiceOptions) -> VoicedSpeech:
        """Say ``text``; the utterance's segments sit on espeak-ng's own phoneme positions."""
        check_text(text)
        voice = espeak_voice_name(options.lang)
        with _LOCK:
            lib = _library()
            audio, events = lib.synth(
                _clean(text), voice, round(options.rate_wpm), int(options.pitch)
            )
            rate = lib.rate
        events = closure_starts(sorted(events, key=lambda e: e[1]), audio, rate)
        segments = events_to_segments(events, rate, readings_for(voice))
        segments = loudness_emphasis(segments, audio, rate)
        return VoicedSpeech(audio, rate, from_segments(segments, fps=options.fps), text)
