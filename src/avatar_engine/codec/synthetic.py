"""A scripted, speech-like ARKit sequence for codec vectors and benchmarks (deterministic).

It stands in for the Speech issue's pipeline until that lands: syllables at about 4.5 Hz in
phrases with pauses (jaw, lips, funnel/pucker for rounded vowels, closure for bilabials),
blinks every few seconds, brow raises on stressed syllables, slow head drift and eye saccades.
The point is realistic *statistics* for the codec (how many morphs move per frame, how often
they rest), not realistic animation.
"""

from __future__ import annotations

import numpy as np

from avatar_engine.rigs.arkit import ARKIT_NAMES
from avatar_engine.types import F32, F64

_I = {name: i for i, name in enumerate(ARKIT_NAMES)}


def _bump(t: F64, centre: float, width: float) -> F64:
    """A raised-cosine bump of total ``width`` seconds centred on ``centre`` (0 outside)."""
    u = np.clip((t - centre) / (width / 2), -1.0, 1.0)
    out: F64 = 0.5 * (1.0 + np.cos(np.pi * u))
    return out


def scripted_speech(frames: int, fps: float = 60.0, seed: int = 7) -> tuple[F32, F32]:
    """(arkit (frames, 52), rotations (frames, 9)) float32 for a talking face."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames, dtype=np.float64) / fps
    arkit = np.zeros((frames, 52), np.float64)
    rot = np.zeros((frames, 9), np.float64)
    duration = frames / fps
    # Phrases of 1.2-2.4 s separated by 0.3-0.8 s pauses; syllables every ~0.22 s inside.
    start = 0.2
    while start < duration:
        length = rng.uniform(1.2, 2.4)
        s = start
        while s < start + length:
            width = rng.uniform(0.16, 0.28)
            c = s + width / 2
            openness = rng.uniform(0.15, 0.55)
            bump = _bump(t, c, width)
            arkit[:, _I["jawOpen"]] += openness * bump
            arkit[:, _I["mouthLowerDownLeft"]] += 0.5 * openness * bump
            arkit[:, _I["mouthLowerDownRight"]] += 0.5 * openness * bump
            vowel = rng.integers(0, 4)
            if vowel == 0:  # rounded: oo / oh
                arkit[:, _I["mouthFunnel"]] += rng.uniform(0.2, 0.6) * bump
                arkit[:, _I["mouthPucker"]] += rng.uniform(0.2, 0.5) * bump
            elif vowel == 1:  # spread: ee
                arkit[:, _I["mouthStretchLeft"]] += 0.3 * bump
                arkit[:, _I["mouthStretchRight"]] += 0.3 * bump
                arkit[:, _I["mouthSmileLeft"]] += 0.15 * bump
                arkit[:, _I["mouthSmileRight"]] += 0.15 * bump
            if rng.random() < 0.3:  # bilabial before the vowel: m / b / p
                closure = _bump(t, s, 0.08)
                arkit[:, _I["mouthClose"]] += 0.5 * closure
                arkit[:, _I["mouthPressLeft"]] += 0.3 * closure
                arkit[:, _I["mouthPressRight"]] += 0.3 * closure
            if rng.random() < 0.15:  # stress: brows up
                arkit[:, _I["browInnerUp"]] += 0.4 * _bump(t, c, 0.5)
                arkit[:, _I["browOuterUpLeft"]] += 0.25 * _bump(t, c, 0.5)
                arkit[:, _I["browOuterUpRight"]] += 0.25 * _bump(t, c, 0.5)
            s += width * rng.uniform(0.8, 1.1)
        start += length + rng.uniform(0.3, 0.8)
    # Blinks: 0.15 s every 2-5 s.
    b = rng.uniform(0.5, 2.0)
    while b < duration:
        blink = _bump(t, b, 0.15)
        arkit[:, _I["eyeBlinkLeft"]] += blink
        arkit[:, _I["eyeBlinkRight"]] += blink
        arkit[:, _I["eyeSquintLeft"]] += 0.2 * blink
        arkit[:, _I["eyeSquintRight"]] += 0.2 * blink
        b += rng.uniform(2.0, 5.0)
    # A resting smile that changes slowly.
    smile = 0.12 + 0.08 * np.sin(2 * np.pi * 0.07 * t)
    arkit[:, _I["mouthSmileLeft"]] += smile
    arkit[:, _I["mouthSmileRight"]] += smile * 0.9
    # Head drift and eye saccades (Live Link units, small signed values).
    rot[:, 0] = 0.06 * np.sin(2 * np.pi * 0.23 * t)
    rot[:, 1] = 0.04 * np.sin(2 * np.pi * 0.31 * t + 1.0)
    rot[:, 2] = 0.02 * np.sin(2 * np.pi * 0.17 * t + 2.0)
    gaze = np.zeros((frames, 2))
    s = 0.0
    while s < duration:
        target = rng.uniform(-0.12, 0.12, size=2)
        gaze[t >= s] = target
        s += rng.uniform(0.4, 1.5)
    rot[:, 3] = rot[:, 6] = gaze[:, 0]
    rot[:, 4] = rot[:, 7] = gaze[:, 1]
    return np.clip(arkit, 0.0, 1.0).astype(np.float32), rot.astype(np.float32)
