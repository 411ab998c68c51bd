"""Expression: emotion mixes, procedural life, capture smoothing, the layer compositor.

Pure computation (sans-I/O): time is an argument, randomness is seeded per session, and all
per-session state lives in arrays with one row per session. The entry point is
:class:`Animator`, which runs the whole animate step for every session in one call.
"""

from avatar_engine.animation.animator import Animator, coupling_pairs
from avatar_engine.animation.emotion import EMOTION_NAMES, mix_vector
from avatar_engine.animation.layers import LAYER_NAMES, LayerConfig
from avatar_engine.animation.params import (
    BlinkParams,
    BreathParams,
    EnvelopeParams,
    GazeParams,
    HeadParams,
    LifeParams,
)
from avatar_engine.animation.procedural import PROC_ARKIT, ProceduralLife

__all__ = [
    "EMOTION_NAMES",
    "LAYER_NAMES",
    "PROC_ARKIT",
    "Animator",
    "BlinkParams",
    "BreathParams",
    "EnvelopeParams",
    "GazeParams",
    "HeadParams",
    "LayerConfig",
    "LifeParams",
    "ProceduralLife",
    "coupling_pairs",
    "mix_vector",
]
