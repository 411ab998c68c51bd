"""Audio-driven lip-sync: speech audio (with or without a transcript) -> viseme timelines.

Offline: :func:`timeline_from_wav` (or :class:`AudioLipSync` to reuse decoders) returns the
Speech package's viseme segments, ready for its co-articulation and rig mapping. Streaming:
:class:`LipSyncStream` takes PCM chunks (raw, base64 or float) and emits viseme frames a
bounded delay behind the audio. Features only ("is speaking / how loud"):
:class:`FeatureStage` and :class:`LevelTracker`. See docs/audio.md.
"""

from avatar_engine.audio.features import FeatureStage, LevelParams, LevelTracker
from avatar_engine.audio.lipsync import (
    AudioLipSync,
    AudioTimeline,
    timeline_from_pcm,
    timeline_from_wav,
)
from avatar_engine.audio.phones import (
    AlignmentError,
    DecoderConfig,
    RecognizerUnavailableError,
    TimedPhone,
)
from avatar_engine.audio.stream import LipSyncStream, StreamBank, StreamFrames, StreamParams
from avatar_engine.audio.wav import AudioFormatError, Pcm, read_wav

__all__ = [
    "AlignmentError",
    "AudioFormatError",
    "AudioLipSync",
    "AudioTimeline",
    "DecoderConfig",
    "FeatureStage",
    "LevelParams",
    "LevelTracker",
    "LipSyncStream",
    "Pcm",
    "RecognizerUnavailableError",
    "StreamBank",
    "StreamFrames",
    "StreamParams",
    "TimedPhone",
    "read_wav",
    "timeline_from_pcm",
    "timeline_from_wav",
]
