"""``lipsync --plot``: the most active morph curves over time, phonemes labelled along the top.

Matplotlib is optional (``pip install avatar-engine[plot]``) and imported only when a plot is
asked for, so the command line starts without it.
"""

from __future__ import annotations

import numpy as np

from avatar_engine.cli.usage import UsageError
from avatar_engine.speech.lipsync import Utterance
from avatar_engine.types import F32

PLOT_CURVES = 8
MAX_PLOT_INCHES = 60.0
"""Long utterances are squeezed rather than drawn kilometres wide."""


def plot_curves(
    utt: Utterance,
    frames: F32,
    morph_names: tuple[str, ...],
    fps: float,
    path: str,
) -> None:
    """The PLOT_CURVES most active morphs over time, phonemes labelled along the top."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'avatar-engine[plot]'") from None
    t = np.arange(frames.shape[0]) / fps
    order = np.argsort(-frames.max(axis=0), kind="stable")[:PLOT_CURVES]
    seconds = float(t[-1]) if t.size else 0.0
    fig, ax = plt.subplots(figsize=(min(max(8.0, seconds * 2.5), MAX_PLOT_INCHES), 4.5))
    for m in order:
        if frames[:, m].max() > 0:
            ax.plot(t, frames[:, m], label=morph_names[m], linewidth=1.4)
    seg = utt.segments
    for label, start, end in zip(seg.labels, seg.start.tolist(), seg.end.tolist(), strict=True):
        if label == "|":
            continue
        ax.axvline(start, color="0.85", linewidth=0.5, zorder=0)
        ax.text((start + end) / 2, 1.04, label, ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_ylim(0.0, 1.15)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("morph weight")
    ax.legend(loc="upper right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
