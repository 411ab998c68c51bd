"""Request bodies for the input endpoints, and how each becomes engine input.

``/speak`` takes text (G2P and the duration model) or TTS timings (our phoneme list, Azure
viseme events, Polly speech marks, word timestamps); ``/text`` takes streamed deltas; and
``/emotion`` and ``/state`` drive the expression layers. Each body is validated by pydantic
(422 with the reasons), then by the speech parsers (400 with the entry that is wrong).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from avatar_engine.animation.emotion import EMOTION_NAMES, Easing
from avatar_engine.engine.sessions import ConversationState
from avatar_engine.server.limits import (
    MAX_POLLY_CHARS,
    MAX_TEXT_CHARS,
    MAX_TIMING_ENTRIES,
    check_utterance_end,
)
from avatar_engine.speech import external
from avatar_engine.speech.lipsync import Utterance, from_segments
from avatar_engine.speech.stream import StreamOptions
from avatar_engine.speech.timing import DEFAULT_WPM

MAX_TEXT = MAX_TEXT_CHARS
"""Characters per request; longer text belongs on /text as deltas."""
MAX_AUDIO_B64 = 2_000_000
"""Base64 characters of ``/speak``'s ``audio`` (a WAV of about 1.5 MB: 46 s at 16 kHz)."""

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def enum_values(kind: type[StrEnum]) -> Any:
    """A request field of a StrEnum, validated as the ``Literal`` of its values and then turned
    into the member: the OpenAPI document (an inline string ``enum``, no extra component) and
    the 422 messages stay those of the string literal, while code reads the enum."""
    return Annotated[Literal[tuple(k.value for k in kind)], AfterValidator(kind)]


if TYPE_CHECKING:  # to mypy the fields are the enums themselves
    EasingField = Easing
    ConversationStateField = ConversationState
else:
    EasingField = enum_values(Easing)
    ConversationStateField = enum_values(ConversationState)


class RequestBody(BaseModel):
    """Base of every JSON request body: unknown keys are refused, and JSON types are kept
    apart as the OpenAPI document states them: ``true``/``false`` where a number goes and
    ``0``/``1`` or ``"yes"`` where a boolean goes are refused (pydantic's lax mode would
    convert them; a generated client must be able to trust the document)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _json_types_as_declared(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                if name not in data:
                    continue
                value, kind = data[name], str(info.annotation)
                if kind in ("bool", "<class 'bool'>") and not isinstance(value, bool):
                    raise ValueError(f"{name}: expected true or false")
                if _has_bool(value) and "bool" not in kind and "Any" not in kind:
                    raise ValueError(f"{name}: true/false where a number or text is expected")
        return data


def _has_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_has_bool(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_bool(v) for v in value)
    return False


def exactly_one_of(*names: str) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` that states "exactly one of ``names``" in the JSON schema.

    The fields become non-nullable (absent, or a value) and the object gets a ``oneOf`` of
    ``required`` lists, so a generated client sends bodies the validator below accepts.
    """

    def extra(schema: dict[str, Any]) -> None:
        properties = schema.get("properties", {})
        for name in names:
            prop = properties.get(name, {})
            variants = [v for v in prop.pop("anyOf", []) if v.get("type") != "null"]
            if len(variants) == 1:
                prop.update(variants[0])
            prop.pop("default", None)
        schema["oneOf"] = [{"required": [name]} for name in names]

    return extra


def given_fields(model: BaseModel, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` a body gave; an explicit null is refused (the schema has none)."""
    given = []
    for name in names:
        if name in model.model_fields_set and getattr(model, name) is None:
            raise ValueError(f"{name}: null is not allowed (leave the field out instead)")
        if getattr(model, name) is not None:
            given.append(name)
    return given


_SOURCES = ("text", "phonemes", "azure", "polly", "words")


class Style(RequestBody):
    """Delivery options of every speech input: language, speaking rate, jaw and lip intensity."""

    lang: Annotated[str, Field(pattern=r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")] = "en"
    rate: Annotated[float, Field(ge=60, le=400, description="words per minute")] = DEFAULT_WPM
    ja: Unit = 0.5
    li: Unit = 0.5

    def stream_options(self) -> StreamOptions:
        """The same options as the speech package's :class:`StreamOptions`."""
        return StreamOptions(lang=self.lang, rate_wpm=self.rate, ja=self.ja, li=self.li)


class SpeakRequest(Style):
    """Exactly one of ``text``, ``phonemes``, ``azure``, ``polly``, ``words``; optionally the
    ``audio`` they describe (any TTS's WAV, base64), else text is said by ``voice``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of(*_SOURCES))
    text: Annotated[str | None, Field(max_length=MAX_TEXT)] = None
    phonemes: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_TIMING_ENTRIES
    )
    azure: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_TIMING_ENTRIES
    )
    polly: Annotated[str | None, Field(min_length=1, max_length=MAX_POLLY_CHARS)] = None
    words: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_TIMING_ENTRIES
    )
    interrupt: bool = False
    """Stop what the session is saying first (barge-in) instead of queueing after it."""
    delay_ms: Annotated[int, Field(ge=0, le=10_000)] = 0
    """For timings: when their time 0 plays, after this request arrives (audio start)."""
    voice: Literal["espeak", "piper", "none"] | None = None
    """Who says ``text`` aloud (default: the server's voice, espeak-ng); ``none``: face only."""
    pitch: Annotated[int, Field(ge=0, le=100)] = 50
    """Voice pitch 0..100 (50: the voice's own)."""
    audio: Annotated[str | None, Field(max_length=MAX_AUDIO_B64)] = None
    """Base64 of a 16-bit PCM WAV (mono or stereo, 8..192 kHz) from any TTS: relayed to
    viewers with the face from the timings given, or from ``text`` aligned to it."""

    @model_validator(mode="after")
    def _one_source(self) -> SpeakRequest:
        given = given_fields(self, _SOURCES)
        if len(given) != 1:
            raise ValueError(
                "give exactly one of text, phonemes, azure, polly, words "
                f"(got {', '.join(given) or 'none'})"
            )
        return self

    def utterance(self, fps: float) -> Utterance:
        """Timed speech from TTS timings (raises TimingFormatError naming the bad entry)."""
        if self.phonemes is not None:
            seg = external.phoneme_list(self.phonemes)
        elif self.azure is not None:
            seg = external.azure_events(self.azure)
        elif self.polly is not None:
            seg = external.polly_marks(self.polly)
        else:
            seg = external.word_timestamps(self.words, lang=self.lang)
        if len(seg):
            check_utterance_end(float(seg.end.max()))  # before anything is allocated for it
        return from_segments(seg, ja=self.ja, li=self.li, fps=fps)


class TextDelta(Style):
    """A piece of streamed text (e.g. an LLM's transcript delta)."""

    delta: Annotated[str, Field(max_length=MAX_TEXT)] = ""
    final: bool = False
    """The text is complete: speak the last word now instead of waiting for the quiet gap."""
    interrupt: bool = False
    """Barge-in: stop speech at once (and ease to neutral) before applying ``delta``."""


class EmotionRequest(RequestBody):
    """Exactly one of ``emotion`` or ``mix``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of("emotion", "mix"))
    emotion: Literal[EMOTION_NAMES] | None = None  # type: ignore[valid-type]
    mix: dict[Literal[EMOTION_NAMES], Unit] | None = None  # type: ignore[valid-type]
    intensity: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    transition_ms: Annotated[int, Field(ge=0, le=60_000)] = 400
    hold_ms: Annotated[int | None, Field(ge=0, le=3_600_000)] = None
    """Hold this long, then decay back to the baseline (default: hold until changed)."""
    easing: EasingField = Easing.CUBIC

    @model_validator(mode="after")
    def _one_of(self) -> EmotionRequest:
        if len(given_fields(self, ("emotion", "mix"))) != 1:
            raise ValueError("give exactly one of emotion or mix")
        return self

    def as_mix(self) -> dict[str, float]:
        """The request as an emotion mix (name -> weight); ``neutral`` is the empty mix."""
        if self.mix is not None:
            return dict(self.mix)
        assert self.emotion is not None
        return {} if self.emotion == "neutral" else {self.emotion: 1.0}


class StateRequest(RequestBody):
    """The conversation state a session shows: ``thinking``, ``listening`` or ``idle``."""

    state: ConversationStateField


class LookRequest(RequestBody):
    """Where the eyes and head look: yaw and pitch in -1..1 of the rig's range."""

    yaw: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.0
    pitch: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.0
