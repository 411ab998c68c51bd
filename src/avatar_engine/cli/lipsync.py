"""``avatar-engine lipsync``: text (or TTS timings) -> morph curves for a rig, offline.

Rhubarb's offline use, for text::

    avatar-engine lipsync --text "Hello there." --rig cc4-extended --fps 60 -o hello.json
    avatar-engine lipsync --text "..." --azure events.json -o out.csv --plot out.png

Writes the same CSV/JSON as ``avatar-engine convert``; ``--plot`` draws the main curves with
the phonemes labelled (needs matplotlib: ``pip install avatar-engine[plot]``). Bad input exits
with code 2 and one line on stderr naming the problem. With a positional AUDIO (a WAV file or
a folder) the same command runs audio mode: :mod:`avatar_engine.cli.lipsync_audio`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from avatar_engine.cli.lipsync_audio import add_audio_argument, run_audio
from avatar_engine.cli.plot import plot_curves
from avatar_engine.cli.usage import Subparsers, UsageError, fail
from avatar_engine.formats.curves_io import MorphCurves, write_curves
from avatar_engine.kernels.backends import BACKENDS, BackendUnavailableError
from avatar_engine.rigs.profile import RigProfileError, load_rig
from avatar_engine.speech import external
from avatar_engine.speech.g2p import EspeakError, MissingEspeakError, UnknownLanguageError
from avatar_engine.speech.lipsync import Utterance, from_segments, from_text
from avatar_engine.speech.rig import SpeechRig
from avatar_engine.speech.timing import DEFAULT_WPM
from avatar_engine.speech.visemes import TableError

MAX_INPUT_BYTES = 64 * 1024 * 1024
LIPSYNC_ERRORS: tuple[type[Exception], ...] = (
    UsageError,
    external.TimingFormatError,
    RigProfileError,
    TableError,
    MissingEspeakError,
    UnknownLanguageError,
    EspeakError,
    BackendUnavailableError,
)
"""What bad text-mode input raises: reported as one line, exit code 2."""


def add_lipsync_parser(subparsers: Subparsers) -> None:
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
    add_audio_argument(p)  # audio mode: AUDIO, --format, --recogniser
    p.set_defaults(handler=run_lipsync)


def _read(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None


def _read_json(path: str) -> Any:
    try:
        return json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from None


def _check_args(args: argparse.Namespace) -> None:
    timed = args.phonemes or args.azure or args.polly or args.words
    if not timed and args.text is None:
        raise UsageError("give --text, or a timing file (--phonemes/--azure/--polly/--words)")
    for name in ("ja", "li"):
        v = getattr(args, name)
        if not np.isfinite(v) or not 0.0 <= v <= 1.0:
            raise UsageError(f"--{name} must lie in 0..1")
    if not np.isfinite(args.fps) or not 1.0 <= args.fps <= 1000.0:
        raise UsageError("--fps must lie in 1..1000")
    if Path(args.output).suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"{args.output}: output must end in .csv or .json")


def build_utterance(args: argparse.Namespace) -> Utterance:
    """The utterance the arguments describe: from a timing file when one is given (its
    phones and times win), else from ``--text`` with the built-in timing model."""
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
        raise UsageError(str(exc)) from None


def run_lipsync(args: argparse.Namespace) -> int:
    """The ``lipsync`` handler: audio mode when AUDIO is given, else text or timings.

    Exit code 0, or 2 with one line on stderr for bad input or an unwritable output.
    """
    if getattr(args, "audio", None) is not None:  # lipsync AUDIO.wav|FOLDER: docs/audio.md
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
    except LIPSYNC_ERRORS as exc:
        return fail(str(exc), "lipsync")
    except OSError as exc:
        return fail(f"cannot write: {exc}", "lipsync")
    return 0
