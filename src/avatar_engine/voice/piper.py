"""Piper neural voices (optional extra: ``pip install 'avatar-engine[piper]'``).

Piper (the ``piper-tts`` package, GPL-3.0-or-later) runs a VITS voice exported to ONNX: a
``.onnx`` model plus its ``.onnx.json`` config, each voice under the licence on its model
card (docs/voice.md lists what to check). It synthesises one chunk of audio per sentence;
the common voices carry no phoneme timings, so the face comes from the engine's own aligner,
which places the text's phones on the audio (:func:`avatar_engine.voice.external.voiced_from_audio`
with text). The aligner is English (PocketSphinx en-us): a voice of another language is
recognised instead of aligned, which the result's ``timing`` says.

Options map onto Piper's synthesis config: ``rate_wpm`` scales the model's own
``length_scale`` by ``DEFAULT_RATE_WPM / rate_wpm`` (assuming a voice's natural pace is the
engine's default 160 wpm); ``lang`` must be the model's language (a Piper voice speaks one);
Piper has no pitch control, so a pitch other than the default is refused rather than ignored.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Final

import numpy as np

from avatar_engine.audio.lipsync import AudioLipSync
from avatar_engine.speech.g2p import UnknownLanguageError, is_english
from avatar_engine.voice.base import (
    DEFAULT_PITCH,
    DEFAULT_RATE_WPM,
    VoicedSpeech,
    VoiceOptions,
    VoiceUnavailableError,
    check_text,
)
from avatar_engine.voice.external import voiced_from_audio

NAME: Final = "piper"
INSTALL: Final = "`pip install 'avatar-engine[piper]'`"
MODEL_SUFFIX: Final = ".onnx"


def _primary(tag: str) -> str:
    return tag.lower().replace("_", "-").split("-")[0]


class PiperVoice:
    """One Piper voice model, loaded once; calls are serialised (one ONNX session, one
    aligner)."""

    name = NAME

    def __init__(self, model: str | Path, config: str | Path | None = None) -> None:
        try:
            # An optional extra: without it mypy sees no module (hence the ignore).
            from piper import (  # type: ignore[import-not-found, unused-ignore]
                PiperVoice as _Piper,
            )
            from piper import SynthesisConfig  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise VoiceUnavailableError(NAME, INSTALL, "piper-tts is not installed") from None
        path = Path(model)
        if path.suffix != MODEL_SUFFIX or not path.is_file():
            raise ValueError(f"piper model {str(path)!r} is not an existing {MODEL_SUFFIX} file")
        config_path = Path(config) if config is not None else Path(f"{path}.json")
        if not config_path.is_file():
            raise ValueError(f"piper voice config {str(config_path)!r} does not exist")
        self._voice: Any = _Piper.load(path, config_path=config_path)
        self._config_type = SynthesisConfig
        self.model = path
        self.rate = int(self._voice.config.sample_rate)
        self.lang = str(self._voice.config.espeak_voice)
        """The model's language (its espeak-ng voice name, e.g. ``en-us``)."""
        self._lipsync = AudioLipSync()
        self._lock = threading.Lock()

    def synthesize(self, text: str, options: VoiceOptions) -> VoicedSpeech:
        """Say ``text`` with this model; the face is aligned to the audio it made."""
        check_text(text)
        if _primary(options.lang) != _primary(self.lang):
            raise UnknownLanguageError(
                f"piper voice {self.model.name} speaks {self.lang}, not {options.lang!r}"
            )
        if options.pitch != DEFAULT_PITCH:
            raise ValueError(f"voice 'piper' has no pitch control; leave pitch at {DEFAULT_PITCH}")
        length = float(self._voice.config.length_scale) * DEFAULT_RATE_WPM / options.rate_wpm
        syn = self._config_type(length_scale=length)
        with self._lock:
            chunks = [c.audio_int16_array for c in self._voice.synthesize(text, syn_config=syn)]
            audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
            said = text if is_english(_primary(self.lang)) else None
            speech = voiced_from_audio(
                audio.astype(np.int16), self.rate, text=said, fps=options.fps,
                lipsync=self._lipsync,
            )  # fmt: skip
        return VoicedSpeech(speech.samples, speech.rate, speech.utterance, text, speech.timing)
