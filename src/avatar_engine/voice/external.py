"""Any other TTS: its audio, with whatever it says about timing, -> :class:`VoicedSpeech`.

Three cases, best first:

- **timings** (already parsed :class:`~avatar_engine.speech.timing.Segments`, from our phoneme
  list, Azure viseme events, Polly speech marks or word timestamps: the parsers in
  :mod:`avatar_engine.speech.external`) drive the face as given, on the audio's time axis;
- **text only**: the engine's aligner places the transcript's phones on the audio
  (:func:`avatar_engine.audio.lipsync.timeline_from_pcm` with text; English);
- **neither**: the phone recogniser hears the audio
  (:func:`avatar_engine.audio.lipsync.timeline_from_pcm` without text).

The audio is passed through untouched (the caller relays it to viewers), and the utterance is
timed from its first sample, as every voice's is.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.audio.lipsync import AudioLipSync, timeline_from_pcm
from avatar_engine.audio.wav import Pcm, check_rate
from avatar_engine.speech.lipsync import DEFAULT_FPS, from_segments
from avatar_engine.speech.timing import Segments
from avatar_engine.voice.base import MAX_FPS, MAX_TEXT_CHARS, MIN_FPS, VoicedSpeech

MAX_AUDIO_S: Final = 600.0
"""The longest audio one call takes (ten minutes): alignment memory grows with length."""


def voiced_from_audio(
    samples: npt.ArrayLike,
    rate: int,
    *,
    text: str | None = None,
    timings: Segments | None = None,
    fps: float = DEFAULT_FPS,
    lipsync: AudioLipSync | None = None,
) -> VoicedSpeech:
    """A TTS's mono int16 audio at ``rate`` Hz -> :class:`VoicedSpeech`.

    ``timings`` win when given; else ``text`` is aligned; else the audio is recognised.
    ``lipsync`` reuses decoders across calls (they take a second to build). Raises
    ValueError for bad input (:class:`~avatar_engine.audio.wav.AudioFormatError` for a bad
    rate, :class:`~avatar_engine.audio.phones.AlignmentError` when the text cannot be fitted).
    """
    x = np.asarray(samples)
    if x.dtype != np.int16 or x.ndim != 1:
        raise ValueError("samples must be a 1-D int16 array (mono PCM16)")
    r = check_rate(rate)
    if x.shape[0] > MAX_AUDIO_S * r:
        raise ValueError(f"audio is longer than {MAX_AUDIO_S:g} s")
    if not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"fps must lie in {MIN_FPS:g}..{MAX_FPS:g}")
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text is {len(text)} characters; at most {MAX_TEXT_CHARS}")
    said = text if text is not None and text.strip() else None
    if timings is not None:
        segments, how = timings, "timings"
    else:
        pcm = Pcm(x.astype(np.float32) * np.float32(1.0 / 32768.0), r)
        timeline = timeline_from_pcm(pcm, said, lipsync=lipsync)
        segments, how = timeline.segments, f"{timeline.mode}:{timeline.method}"
    utterance = from_segments(segments, fps=fps)
    # A copy: the caller may reuse its buffer, and VoicedSpeech is immutable.
    return VoicedSpeech(np.array(x, dtype=np.int16), r, utterance, said or "", how)
