"""Audio mode of ``avatar-engine lipsync``: what ``avatar-engine lipsync AUDIO`` runs.

The ``lipsync`` subcommand lives in :mod:`avatar_engine.cli.lipsync` (text mode); audio mode
adds one optional positional argument, a WAV file or a folder of them::

    avatar-engine lipsync speech.wav [--text "..."] --rig cc4-extended --fps 60 -o out.json
    avatar-engine lipsync takes/ -o curves/ [--format csv]   # folder mode, progress bar

Both run the offline pipeline of :mod:`avatar_engine.audio.lipsync` and hand its viseme
segments to the Speech package's co-articulation and rig mapping, exactly like text.
In folder mode a transcript ``NAME.txt`` beside ``NAME.wav`` is used for alignment (like
Rhubarb's dialog file); one PocketSphinx decoder is built and reused for every file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_engine.audio.lipsync import (
    RECOGNISERS,
    AudioLipSync,
    AudioTimeline,
    timeline_from_wav,
)
from avatar_engine.audio.phones import AlignmentError, RecognizerUnavailableError
from avatar_engine.audio.wav import AudioFormatError
from avatar_engine.cli.plot import plot_curves
from avatar_engine.cli.progress import ProgressBar
from avatar_engine.cli.usage import EXIT_BAD_INPUT, fail
from avatar_engine.formats.curves_io import MorphCurves, write_curves
from avatar_engine.kernels.backends import BackendUnavailableError
from avatar_engine.rigs.profile import RigProfile, RigProfileError, load_rig
from avatar_engine.speech.lipsync import from_segments
from avatar_engine.speech.rig import SpeechRig

AUDIO_ERRORS: tuple[type[Exception], ...] = (
    AudioFormatError,
    AlignmentError,
    RecognizerUnavailableError,
)
"""Exceptions that mean bad input (exit code 2), for the CLI's error handler."""
TRANSCRIPT_SUFFIX = ".txt"
MAX_TRANSCRIPT_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class AudioJob:
    """One WAV of a folder batch: where its curves go and the transcript found beside it."""

    source: Path
    output: Path
    text: str | None


def audio_timeline(
    path: str | Path, text: str | None = None, lipsync: AudioLipSync | None = None
) -> AudioTimeline:
    """One WAV (+ optional transcript) -> timeline; errors are :data:`AUDIO_ERRORS`."""
    return timeline_from_wav(path, text, lipsync=lipsync)


def folder_jobs(folder: Path, out_dir: Path, fmt: str) -> list[AudioJob]:
    """Every ``*.wav`` in ``folder`` (sorted) with its output path and optional transcript."""
    jobs: list[AudioJob] = []
    for wav in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav"):
        txt = wav.with_suffix(TRANSCRIPT_SUFFIX)
        text = None
        if txt.is_file():
            data = txt.read_bytes()[:MAX_TRANSCRIPT_BYTES]
            text = data.decode("utf-8", errors="replace").strip() or None
        jobs.append(AudioJob(wav, out_dir / f"{wav.stem}.{fmt}", text))
    return jobs


def run_folder(
    folder: Path,
    out_dir: Path,
    fmt: str,
    render: Callable[[AudioTimeline, Path], None],
    *,
    progress: bool = True,
    lipsync: AudioLipSync | None = None,
) -> tuple[int, list[str]]:
    """Process a folder: ``render(timeline, output_path)`` per file.

    Returns (files written, error lines). A bad file is reported and skipped; the batch goes
    on (one unreadable take must not sink a night's batch).
    """
    if fmt not in ("csv", "json"):
        raise ValueError("format must be csv or json")
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = folder_jobs(folder, out_dir, fmt)
    bar = ProgressBar(len(jobs)) if progress and jobs else None
    lips = lipsync or AudioLipSync()
    errors: list[str] = []
    written = 0
    for job in jobs:
        try:
            render(timeline_from_wav(job.source, job.text, lipsync=lips), job.output)
            written += 1
        except AUDIO_ERRORS as exc:
            errors.append(f"{job.source}: {exc}")
        if bar is not None:
            bar.step(job.source.name)
    return written, errors


def add_audio_argument(parser: argparse.ArgumentParser) -> None:
    """Audio mode's arguments for the ``lipsync`` parser: the positional AUDIO (a WAV file or
    a folder), ``--format`` (folder mode) and ``--recogniser`` (see docs/audio.md)."""
    parser.add_argument(
        "audio",
        nargs="?",
        default=None,
        metavar="AUDIO",
        help="speech audio: a 16-bit PCM WAV file, or a folder of them (then -o is a folder)",
    )
    parser.add_argument(
        "--format", choices=("csv", "json"), default=None, help="folder mode: output format (json)"
    )
    parser.add_argument(
        "--recogniser",
        choices=RECOGNISERS,
        default="phones",
        help="audio without --text: phone loop (fast) or words then alignment (Rhubarb's way)",
    )


@dataclass(frozen=True, slots=True)
class CurveRenderer:
    """Timelines -> curve files for one rig at one intensity and frame rate (one or a folder).

    ``plot`` is drawn for a single file only: a folder batch writes no pictures.
    """

    rig: RigProfile
    speech_rig: SpeechRig
    ja: float
    li: float
    fps: float
    plot: str | None = None

    def __call__(self, tl: AudioTimeline, out: Path) -> None:
        """Co-articulate the timeline's segments and write the curves (frames cover the audio)."""
        utt = from_segments(tl.segments, ja=self.ja, li=self.li, fps=self.fps)
        end = float(utt.keys.times[-1]) if len(utt.keys) else 0.0
        frames = self.speech_rig.render(utt.keys, self.fps, duration=max(tl.duration, end))
        write_curves(MorphCurves(self.rig.name, self.fps, self.rig.morph_names, frames), out)
        if self.plot:
            plot_curves(utt, frames, self.rig.morph_names, self.fps, self.plot)


def _check_ranges(ja: float, li: float, fps: float) -> str | None:
    for name, v in (("ja", ja), ("li", li)):
        if not np.isfinite(v) or not 0.0 <= v <= 1.0:
            return f"--{name} must lie in 0..1"
    if not np.isfinite(fps) or not 1.0 <= fps <= 1000.0:
        return "--fps must lie in 1..1000"
    return None


def _lipsync_folder(
    source: Path, output: Path, args: argparse.Namespace, render: CurveRenderer, lips: AudioLipSync
) -> int:
    fmt = str(getattr(args, "format", None) or "json")
    written, errors = run_folder(source, output, fmt, render, lipsync=lips)
    for line in errors:
        print(f"avatar-engine lipsync: skipped {line}", file=sys.stderr)
    print(f"{output}: {written} files ({len(errors)} skipped)")
    return 0 if written or not errors else EXIT_BAD_INPUT


def run_audio(args: argparse.Namespace) -> int:
    """``lipsync AUDIO ...``: the audio branch of the ``lipsync`` handler.

    Uses the Speech CLI's own options (``--text --rig --fps --ja --li -o --plot --backend``);
    ``-o`` is a file for one WAV and a folder for a folder (``--format`` picks csv/json there,
    default json). Exit code 0, or 2 with one line on stderr for bad input.
    """
    source = Path(args.audio)
    output = Path(args.output)
    ja, li, fps = float(args.ja), float(args.li), float(args.fps)
    bad = _check_ranges(ja, li, fps)
    if bad is not None:
        return fail(bad, "lipsync")
    if not source.exists():
        return fail(f"{source}: no such file or folder", "lipsync")
    try:
        rig = load_rig(args.rig)
        speech_rig = SpeechRig(rig, backend=getattr(args, "backend", None))
        lips = AudioLipSync(recogniser=str(getattr(args, "recogniser", None) or "phones"))
    except (RigProfileError, BackendUnavailableError, ValueError) as exc:
        return fail(str(exc), "lipsync")
    plot = None if source.is_dir() else getattr(args, "plot", None)
    render = CurveRenderer(rig, speech_rig, ja, li, fps, plot)
    try:
        if source.is_dir():
            return _lipsync_folder(source, output, args, render, lips)
        if output.suffix.lower() not in (".csv", ".json"):
            return fail(f"{output}: output must end in .csv or .json", "lipsync")
        tl = audio_timeline(source, getattr(args, "text", None), lips)
        render(tl, output)
        print(f"{output}: {tl.duration:.2f} s of audio, {tl.mode} ({tl.method}), {rig.name}")
    except AUDIO_ERRORS as exc:
        return fail(str(exc), "lipsync")
    except OSError as exc:
        return fail(f"cannot write: {exc}", "lipsync")
    return 0
