"""A minute of idle life for one session: blinks, gaze, breath and head motion, as a PNG.

    python benchmarks/plot_idle_life.py [--seconds 60] [--seed 7] [--out docs/img/idle-life.png]
    python benchmarks/plot_idle_life.py --stats 10   # blink statistics, 6 sessions x 10 min

Also prints the blink statistics of the run (count, mean/min interval, double blinks).
Needs matplotlib for the plot (``pip install -e .[plot]``); ``--stats`` does not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from avatar_engine.animation import Animator, LifeParams, ProceduralLife
from avatar_engine.rigs.profile import load_rig

FPS = 60.0


def simulate(seconds: float, seed: int) -> dict[str, np.ndarray]:
    rig = load_rig("arkit52")
    anim = Animator(rig, capacity=1, backend="numpy")
    row = anim.add_session(seed=seed)
    frames = int(seconds * FPS)
    rec = {k: np.zeros(frames) for k in ("t", "blink", "gaze_yaw", "gaze_pitch", "head_yaw",
                                         "head_pitch", "breath")}  # fmt: skip
    onsets = []
    count = 0
    blink = rig.morph_index("eyeBlinkLeft")
    for i in range(frames):
        t = (i + 1) / FPS
        anim.step(t, 1 / FPS)
        out_c = anim.out_c[row]
        rec["t"][i] = t
        rec["blink"][i] = anim.out_m[row, blink]
        rec["head_yaw"][i], rec["head_pitch"][i] = out_c[0], out_c[1]
        rec["gaze_yaw"][i] = out_c[0] + out_c[3]  # eye-in-head + head = where the eyes point
        rec["gaze_pitch"][i] = out_c[1] + out_c[4]
        rec["breath"][i] = anim.life.breath[row]
        if anim.life.blink_count[row] != count:
            count = int(anim.life.blink_count[row])
            onsets.append(t)
    rec["onsets"] = np.array(onsets)
    return rec


def blink_stats(minutes: float, sessions: int = 6) -> None:
    """Procedural life alone (no rig) for ``sessions`` x ``minutes``: the blink rhythm."""
    for label, in_word in (("idle", None), ("speaking (0.35 s words, 0.15 s pauses)", 0.5)):
        life = ProceduralLife(sessions, LifeParams())
        for row in range(sessions):
            life.start_row(row, row, 0.0)
        zeros = np.zeros(sessions, np.float32)
        channels = np.zeros((sessions, 9), np.float32)
        words = np.zeros(sessions, np.bool_)
        onsets: list[list[float]] = [[] for _ in range(sessions)]
        in_word_onsets = 0
        count = life.blink_count.copy()
        for i in range(int(minutes * 60 * FPS)):
            t = (i + 1) / FPS
            if in_word is not None:
                words[:] = (t % in_word) < 0.35
            life.update(t, 1 / FPS, sessions, zeros, zeros, words, zeros, channels)
            for r in np.flatnonzero(life.blink_count != count):
                onsets[r].append(t)
                in_word_onsets += int(words[r])
            count = life.blink_count.copy()
        iv = np.concatenate([np.diff(o) for o in onsets])
        n = sum(len(o) for o in onsets)
        print(
            f"{label}: {n} blinks in {sessions} x {minutes:g} min = "
            f"{n / sessions / minutes:.1f}/min;"
            f" interval mean {iv.mean():.2f} s, median {np.median(iv):.2f} s, CV "
            f"{iv.std() / iv.mean():.2f}, 5-95 % {np.quantile(iv, 0.05):.2f}-"
            f"{np.quantile(iv, 0.95):.2f} s, double blinks {np.mean(iv < 0.5) * 100:.1f} %"
            + (f", onsets inside words {in_word_onsets}" if in_word is not None else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("docs/img/idle-life.png"))
    parser.add_argument("--stats", type=float, metavar="MINUTES", help="print blink statistics")
    args = parser.parse_args()
    if args.stats:
        blink_stats(args.stats)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = simulate(args.seconds, args.seed)
    iv = np.diff(r["onsets"])
    print(
        f"{len(r['onsets'])} blinks in {args.seconds:.0f} s "
        f"({len(r['onsets']) / args.seconds * 60:.1f}/min); intervals mean {iv.mean():.2f} s, "
        f"min {iv.min():.2f} s, max {iv.max():.2f} s; double blinks (< 0.5 s): "
        f"{int((iv < 0.5).sum())}"
    )
    deg = 40.0  # channel units -> degrees at the default channel scale
    fig, ax = plt.subplots(4, 1, figsize=(12, 8), sharex=True)
    ax[0].plot(r["t"], r["blink"], lw=0.8, color="k")
    ax[0].vlines(r["onsets"], 1.05, 1.15, color="tab:red", lw=0.8)
    ax[0].set_ylabel("eyeBlinkLeft")
    ax[0].set_title(f"A minute of idle life (seed {args.seed}): blink onsets in red")
    ax[1].plot(r["t"], r["gaze_yaw"] * deg, lw=0.8, label="gaze yaw")
    ax[1].plot(r["t"], r["gaze_pitch"] * deg, lw=0.8, label="gaze pitch")
    ax[1].set_ylabel("gaze (deg)")
    ax[1].legend(loc="upper right", fontsize=8)
    ax[2].plot(r["t"], r["head_yaw"] * deg, lw=0.8, label="head yaw")
    ax[2].plot(r["t"], r["head_pitch"] * deg, lw=0.8, label="head pitch")
    ax[2].set_ylabel("head (deg)")
    ax[2].legend(loc="upper right", fontsize=8)
    ax[3].plot(r["t"], r["breath"], lw=0.8, color="tab:green")
    ax[3].set_ylabel("breath (0-1)")
    ax[3].set_xlabel("time (s)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
