"""``avatar-engine lipsync``: text (or TTS timings) -> morph curves for a rig, offline.

Rhubarb's offline use, for text::

    avatar-engine lipsync --text "Hello there." --rig cc4-extended --fps 60 -o hello.json
    avatar-engine lipsync --text "..." --azure events.json -o out.csv --plot out.png

Writes the same CSV/JSON as ``avatar-engine convert``; ``--plot`` draws the main curves with
the phonemes labelled (needs matplotlib: ``pip install avatar-engine[plot]``). Bad input exits
with code 2 and one line on stderr naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from avatar_engine.formats.curves_io import MorphCurves, write_curves
from avatar_engine.kernels.backends import BACKENDS, BackendUnavailableError
from avatar_engine.rigs.profile import RigProfileError, load_rig
from avatar_engine.speech import external
from avatar_engine.speech.g2p import EspeakError, MissingEspeakError, UnknownLanguageError
from avatar_engine.speech.lipsync import Utterance, from_segments, from_text
from avatar_engine.speech.rig import SpeechRig
from avatar_engine.speech.timing import DEFAULT_WPM
from avatar_engine.speech.visemes import TableError

EXIT_BAD_INPUT = 2
PLOT_CURVES = 8
MAX_PLOT_INCHES = 60.0
"""Long utterances are squeezed rather than drawn kilometres wide."""
MAX_INPUT_BYTES = 64 * 1024 * 1024


class LipsyncInputError(Exception):
    """Bad arguments or input files (exit code 2)."""


def add_lipsync_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``lipsync`` on the main parser's subcommands."""
    p = subparsers.add_parser(
        "lipsync",
        help="text or TTS timings -> co-articulated morph curves (CSV/JSON, optional plot)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--text", help="what is said (optional with --azure/--polly/--phonemes/--words)")
    p.add_argument("--lang", default="en", help="language: en built in; others via espeak-ng")
    p.add_argument("--rate", type=float, default=DEFAULT_WPM, help="speaking rate, words/min")
    p.add_argument("--ja", type=float, default=0.5, help="jaw intensity 0..1 (0.5 neutral)")
    p.add_argument("--li", type=float, default=0.5, help="lip intensity 0..1 (0.5 neutral)")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--phonemes", metavar="JSON", help='[{"p": "AA1", "start": s, "end": s}]')
    timing.add_argument("--azure", metavar="JSON", help="Azure viseme events (100-ns ticks)")
    timing.add_argument("--polly", metavar="JSONL", help="Amazon Polly speech marks")
    timing.add_argument("--words", metavar="JSON", help='[{"word", "start", "end"}] (seconds)')
    p.add_argument("--rig", default="cc4-extended", help="built-in rig name or rig file")
    p.add_argument("--fps", type=float, default=60.0, help="output frame rate")
    p.add_argument("-o", "--output", required=True, help="OUT.csv or OUT.json")
    p.add_argument("--plot", metavar="PNG", help="also draw the main curves with phonemes")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="force a kernel backend")
    from avatar_engine.audio.cli import add_audio_argument  # audio mode: AUDIO, --format

    add_audio_argument(p)
    p.set_defaults(handler=run_lipsync)


def _read(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise LipsyncInputError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise LipsyncInputError(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise LipsyncInputError(f"{path}: not UTF-8 text") from None


def _read_json(path: str) -> Any:
    try:
        return json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise LipsyncInputError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from None


def _check_args(args: argparse.Namespace) -> None:
    timed = args.phonemes or args.azure or args.polly or args.words
    if not timed and args.text is None:
        raise LipsyncInputError(
            "give --text, or a timing file (--phonemes/--azure/--polly/--words)"
        )
    for name in ("ja", "li"):
        v = getattr(args, name)
        if not np.isfinite(v) or not 0.0 <= v <= 1.0:
            raise LipsyncInputError(f"--{name} must lie in 0..1")
    if not np.isfinite(args.fps) or not 1.0 <= args.fps <= 1000.0:
        raise LipsyncInputError("--fps must lie in 1..1000")
    if Path(args.output).suffix.lower() not in (".csv", ".json"):
        raise LipsyncInputError(f"{args.output}: output must end in .csv or .json")


def build_utterance(args: argparse.Namespace) -> Utterance:
    common = {"ja": args.ja, "li": args.li, "fps": args.fps}
    if args.phonemes:
        return from_segments(external.phoneme_list(_read_json(args.phonemes)), **common)
    if args.azure:
        return from_segments(external.azure_events(_read_json(args.azure)), **common)
    if args.polly:
        return from_segments(external.polly_marks(_read(args.polly)), **common)
    if args.words:
        return from_segments(external.word_timestamps(_read_json(args.words), args.lang), **common)
    try:
        return from_text(args.text, lang=args.lang, rate_wpm=args.rate, **common)
    except ValueError as exc:  # rate out of range and the like
        raise LipsyncInputError(str(exc)) from None


def run_lipsync(args: argparse.Namespace) -> int:
    if getattr(args, "audio", None) is not None:  # lipsync AUDIO.wav|FOLDER: docs/audio.md
        from avatar_engine.audio.cli import run_audio

        return run_audio(args)
    try:
        _check_args(args)
        rig = load_rig(args.rig)
        speech_rig = SpeechRig(rig, backend=args.backend)
        utt = build_utterance(args)
        frames = speech_rig.render(utt.keys, args.fps)
        write_curves(MorphCurves(rig.name, args.fps, rig.morph_names, frames), args.output)
        if args.plot:
            plot_curves(utt, frames, rig.morph_names, args.fps, args.plot)
    except (
        LipsyncInputError,
        external.TimingFormatError,
        RigProfileError,
        TableError,
        MissingEspeakError,
        UnknownLanguageError,
        EspeakError,
        BackendUnavailableError,
    ) as exc:
        print(f"avatar-engine lipsync: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"avatar-engine lipsync: error: cannot write: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def plot_curves(
    utt: Utterance,
    frames: npt.NDArray[np.float32],
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
        raise LipsyncInputError(
            "--plot needs matplotlib: pip install 'avatar-engine[plot]'"
        ) from None
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


def main(argv: list[str] | None = None) -> int:
    """Run ``lipsync`` alone (``python -m avatar_engine.speech.cli``)."""
    parser = argparse.ArgumentParser(prog="avatar-engine")
    sub = parser.add_subparsers(dest="command", required=True)
    add_lipsync_parser(sub)
    args = parser.parse_args(["lipsync", *(argv if argv is not None else sys.argv[1:])])
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
