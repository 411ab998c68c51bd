"""An emotion transition layered over speech, as a PNG: what the compositor does to the mouth.

    python benchmarks/plot_emotion_speech.py [--out docs/img/emotion-over-speech.png]

A session speaks a synthetic utterance (syllable-rate jaw and lip shapes in the speech plane,
stressed syllables as events) from 0.5 s to 5.4 s. At 1.5 s it turns happy (cubic, 0.8 s);
at 4.0 s it turns sad (critically damped spring, 0.8 s); at 6.0 s it goes back to neutral.
The plot shows the speech plane, the emotion plane and the composited output for the mouth
(jawOpen, mouthSmileLeft, mouthFunnel) and the brows (raised on some stressed syllables):
speech owns the jaw while the smile is kept at half strength on the lips during speech.
Needs matplotlib (``pip install -e .[plot]``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from avatar_engine.animation import Animator
from avatar_engine.animation.layers import Layer
from avatar_engine.rigs.profile import load_rig

FPS = 60.0
SPEECH_START = 0.5
SPEECH_END = SPEECH_START + 22 / 4.5  # 22 whole syllables at 4.5 Hz


def speech_plane(t: float) -> dict[str, float]:
    """Syllables at ~4.5 Hz: jaw pulses, a rounded vowel every third syllable."""
    if not SPEECH_START <= t < SPEECH_END:
        return {}
    ph = (t - SPEECH_START) * 4.5
    syll = int(ph)
    x = ph - syll
    open_ = max(0.0, np.sin(np.pi * x)) ** 1.5
    rounded = syll % 3 == 2
    return {
        "jawOpen": 0.45 * open_ * (0.6 if rounded else 1.0),
        "mouthFunnel": 0.5 * open_ if rounded else 0.0,
        "mouthClose": 0.25 * (1.0 - open_) if syll % 4 == 0 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/img/emotion-over-speech.png"))
    parser.add_argument("--seconds", type=float, default=7.5)
    args = parser.parse_args()
    rig = load_rig("arkit52")
    anim = Animator(rig, capacity=1, backend="numpy")
    row = anim.add_session(seed=3)
    names = ("jawOpen", "mouthSmileLeft", "mouthFunnel", "browInnerUp")
    idx = [rig.morph_index(n) for n in names]
    frames = int(args.seconds * FPS)
    t_axis = np.arange(1, frames + 1) / FPS
    out = np.zeros((frames, len(names)))
    speech = np.zeros((frames, len(names)))
    emotion = np.zeros((frames, len(names)))
    events: list[tuple[float, str]] = []
    for i, t in enumerate(t_axis):
        if abs(t - 1.5) < 0.5 / FPS:
            anim.set_emotion(row, {"happy": 0.9}, transition=0.8, easing="cubic")
            events.append((t, "happy (cubic 0.8 s)"))
        if abs(t - 4.0) < 0.5 / FPS:
            anim.set_emotion(row, {"sad": 0.9}, transition=0.8, easing="spring")
            events.append((t, "sad (spring 0.8 s)"))
        if abs(t - 6.0) < 0.5 / FPS:
            anim.set_emotion(row, {}, transition=0.6)
            events.append((t, "neutral"))
        plane = speech_plane(t)
        anim.speech_morphs[row] = 0.0
        for name, value in plane.items():
            anim.speech_morphs[row, rig.morph_index(name)] = value
        anim.speaking[row] = 1.0 if plane else 0.0
        syllable = int((t - SPEECH_START) * 4.5 * 1.0)
        prev = int((t - 1 / FPS - SPEECH_START) * 4.5)
        if plane and syllable != prev and syllable % 3 == 0:
            anim.stress[row] = 1.0
        anim.step(float(t), 1 / FPS)
        out[i] = anim.out_m[row, idx]
        speech[i] = anim.layers_m[Layer.SPEECH, row, idx]
        emotion[i] = anim.layers_m[Layer.EMOTION, row, idx]
    fig, ax = plt.subplots(len(names), 1, figsize=(12, 9), sharex=True)
    for k, name in enumerate(names):
        ax[k].plot(t_axis, out[:, k], lw=1.6, color="k", label="output")
        ax[k].plot(t_axis, speech[:, k], lw=0.9, ls="--", color="tab:blue", label="speech plane")
        ax[k].plot(
            t_axis, emotion[:, k], lw=0.9, ls="--", color="tab:orange", label="emotion plane"
        )
        ax[k].axvspan(SPEECH_START, SPEECH_END, color="tab:blue", alpha=0.06)
        ax[k].set_ylabel(name)
        for te, label in events:
            ax[k].axvline(te, color="tab:red", lw=0.6, ls="--")
            if k == 0:
                ax[k].text(te + 0.03, 0.9 * ax[k].get_ylim()[1], label, fontsize=8, color="tab:red")
    ax[0].legend(loc="upper right", fontsize=8)
    ax[0].set_title("Emotion transitions over speech (speaking in the shaded span)")
    ax[-1].set_xlabel("time (s)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    smile = names.index("mouthSmileLeft")
    during = out[int(3.5 * FPS), smile], emotion[int(3.5 * FPS), smile]
    print(
        f"mouthSmileLeft at 3.5 s (speaking): output {during[0]:.3f}, emotion plane {during[1]:.3f}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
