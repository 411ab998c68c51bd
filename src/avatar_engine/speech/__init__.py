"""Speech: text, phoneme timings and streamed LLM text -> co-articulated visemes on any rig.

Pipeline (see ``docs/speech.md``)::

    text --normalize--> words/pauses --G2P--> phones --duration model--> Segments
    TTS timings (ours / Azure / Polly / word stamps) ------------------> Segments
    Segments --co-articulation--> Keyframes (45 channels: lips/jaw/tongue x 15 visemes)
    Keyframes --CurveBank.sample (batched, per tick)--> (S, 45) --SpeechRig--> (S, M) morphs

The core does no I/O except running espeak-ng for languages other than English, and never
reads the clock: every time is an argument.
"""

from avatar_engine.speech.coarticulation import (
    CHANNEL_NAMES,
    CHANNELS,
    CoarticulationParams,
    Keyframes,
    coarticulate,
)
from avatar_engine.speech.g2p import MissingEspeakError
from avatar_engine.speech.lipsync import Utterance, from_segments, from_text
from avatar_engine.speech.rig import SpeechRig
from avatar_engine.speech.stream import SpeechSessions, StreamOptions, TextStream
from avatar_engine.speech.timing import Segments
from avatar_engine.speech.visemes import VISEMES

__all__ = [
    "CHANNELS",
    "CHANNEL_NAMES",
    "VISEMES",
    "CoarticulationParams",
    "Keyframes",
    "MissingEspeakError",
    "Segments",
    "SpeechRig",
    "SpeechSessions",
    "StreamOptions",
    "TextStream",
    "Utterance",
    "coarticulate",
    "from_segments",
    "from_text",
]
