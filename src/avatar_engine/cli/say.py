"""``avatar-engine say``: text -> speech audio (WAV) and the morph curves that go with it.

For engines that play the audio themselves (Unity, Unreal, a DCC tool)::

    avatar-engine say "Hello there." -o hello.wav --curves hello.json
    avatar-engine say "Bonjour." --lang fr --rate 140 --pitch 60 --rig oculus15 -o b.wav
    avatar-engine say "Hi." --voice piper --model en_US-joe-medium.onnx -o hi.wav
    avatar-engine say --batch lines/ -o out/ [--format csv]  # NAME.txt -> NAME.wav + NAME.json

Frame ``i`` of the curves is the face at time ``i / fps`` of the WAV: start both together.
Curves are the CSV or JSON ``convert`` and ``lipsync`` write (chosen by the extension of
``--curves``; default: the WAV's name with ``.json``). Bad input exits with code 2 and one
line on stderr; in a batch a bad file is reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from avatar_engine.audio.wav import wav_bytes
from avatar_engine.cli.progress import ProgressBar
from avatar_engine.cli.usage import EXIT_BAD_INPUT, Subparsers, fail
from avatar_engine.formats.curves_io import MorphCurves, write_curves
from avatar_engine.kernels.backends import BackendUnavailableError
from avatar_engine.rigs.profile import RigProfile, RigProfileError, load_rig
from avatar_engine.speech.rig import SpeechRig
from avatar_engine.voice import (
    DEFAULT_PITCH,
    DEFAULT_RATE_WPM,
    DEFAULT_VOICE,
    MAX_TEXT_CHARS,
    VOICE_NAMES,
    Voice,
    VoicedSpeech,
    VoiceOptions,
    VoiceUnavailableError,
    load_voice,
)

TEXT_SUFFIX: Final = ".txt"
CURVE_FORMATS: Final = ("json", "csv")
SAY_ERRORS: Final[tuple[type[Exception], ...]] = (
    ValueError,  # options, text, alignment, rig mapping (UnknownLanguageError is one too)
    VoiceUnavailableError,
    RigProfileError,
    BackendUnavailableError,
)
"""What bad input or a missing voice raises: exit code 2, or a skipped file in a batch."""
_SKIPPED: Final[tuple[type[Exception], ...]] = (*SAY_ERRORS, OSError)
"""A batch file that fails with one of these is reported and skipped."""


class SayInputError(ValueError):
    """Bad arguments or input files (exit code 2)."""


def add_say_parser(subparsers: Subparsers) -> None:
    """Register ``say`` on the main parser's subcommands."""
    p = subparsers.add_parser(
        "say",
        help="text -> speech audio (WAV) and its morph curves (JSON/CSV), offline",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("text", nargs="?", help="what to say ('-' reads standard input)")
    p.add_argument("--batch", metavar="FOLDER", help="say every NAME.txt in FOLDER (-o: a folder)")
    p.add_argument("-o", "--output", required=True, help="OUT.wav (a folder with --batch)")
    p.add_argument("--curves", metavar="OUT", help="OUT.json or OUT.csv (default: OUT.json)")
    p.add_argument("--format", choices=CURVE_FORMATS, default="json", help="--batch curves")
    p.add_argument("--voice", choices=VOICE_NAMES, default=DEFAULT_VOICE, help="the voice")
    p.add_argument("--model", help="--voice piper: the voice's .onnx model")
    p.add_argument("--config", help="--voice piper: its .onnx.json (default: beside the model)")
    p.add_argument("--lang", default="en", help="language tag (espeak-ng: about 100)")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE_WPM, help="words per minute")
    p.add_argument("--pitch", type=int, default=DEFAULT_PITCH, help="0..100 (50: the voice's)")
    p.add_argument("--rig", default="cc4-extended", help="built-in rig name or rig file")
    p.add_argument("--fps", type=float, default=60.0, help="curve frame rate")
    p.set_defaults(handler=run_say)


@dataclass(frozen=True, slots=True)
class Sayer:
    """A voice, its options and a rig: say one text into a WAV and a curve file."""

    voice: Voice
    options: VoiceOptions
    rig: RigProfile
    speech_rig: SpeechRig

    def say(self, text: str, wav: Path, curves: Path) -> VoicedSpeech:
        """Synthesize ``text`` and write its WAV and the curves that play in step with it.

        The curves run past the audio's end only while the face settles back to rest.
        """
        speech = self.voice.synthesize(text, self.options)
        fps = self.options.fps
        keys = speech.utterance.keys
        end = max(speech.duration, float(keys.times[-1]) if len(keys) else 0.0)
        frames = self.speech_rig.render(keys, fps, duration=end)
        # int16 / 32767 survives wav_bytes' float -> int16 rounding exactly.
        wav.write_bytes(wav_bytes(speech.samples.astype(np.float64) / 32767.0, speech.rate))
        write_curves(MorphCurves(self.rig.name, fps, self.rig.morph_names, frames), curves)
        return speech


def _make_sayer(args: argparse.Namespace) -> Sayer:
    options = VoiceOptions(lang=args.lang, rate_wpm=args.rate, pitch=args.pitch, fps=args.fps)
    if args.voice == "piper":
        if not args.model:
            raise SayInputError("--voice piper needs --model PATH.onnx")
        voice = load_voice("piper", model=args.model, config=args.config)
    else:
        if args.model or args.config:
            raise SayInputError(f"--model and --config are for --voice piper, not {args.voice}")
        voice = load_voice(args.voice)
    rig = load_rig(args.rig)
    return Sayer(voice, options, rig, SpeechRig(rig))


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()[: 4 * MAX_TEXT_CHARS + 4]
        return data.decode("utf-8")
    except OSError as exc:
        raise SayInputError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SayInputError(f"{path}: not UTF-8 text") from None


def _curves_path(args: argparse.Namespace, wav: Path) -> Path:
    curves = Path(args.curves) if args.curves else wav.with_suffix(".json")
    if curves.suffix.lower() not in (".json", ".csv"):
        raise SayInputError(f"{curves}: curves must end in .json or .csv")
    return curves


def _say_one(args: argparse.Namespace) -> int:
    wav = Path(args.output)
    if wav.suffix.lower() != ".wav":
        raise SayInputError(f"{wav}: output must end in .wav")
    curves = _curves_path(args, wav)
    text = sys.stdin.read(4 * MAX_TEXT_CHARS + 4) if args.text == "-" else args.text
    sayer = _make_sayer(args)
    speech = sayer.say(text, wav, curves)
    print(
        f"{wav}: {speech.duration:.2f} s at {speech.rate} Hz ({sayer.voice.name}); "
        f"{curves}: {sayer.rig.name} at {sayer.options.fps:g} fps ({speech.timing})"
    )
    return 0


def say_folder(
    sayer: Sayer, folder: Path, out_dir: Path, fmt: str, *, progress: bool = True
) -> tuple[int, list[str]]:
    """Say every ``*.txt`` in ``folder`` (sorted) into ``out_dir/NAME.wav`` and
    ``NAME.<fmt>``. Returns (texts said, error lines): a bad file is skipped, the batch goes on.
    """
    sources = sorted(p for p in folder.iterdir() if p.suffix.lower() == TEXT_SUFFIX)
    if not sources:
        raise SayInputError(f"{folder}: no {TEXT_SUFFIX} files")
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = ProgressBar(len(sources)) if progress else None
    errors: list[str] = []
    said = 0
    for src in sources:
        try:
            text = _read_text(src)
            sayer.say(text, out_dir / f"{src.stem}.wav", out_dir / f"{src.stem}.{fmt}")
            said += 1
        except _SKIPPED as exc:
            errors.append(f"{src}: {exc}")
        if bar is not None:
            bar.step(src.name)
    return said, errors


def _say_batch(args: argparse.Namespace) -> int:
    folder = Path(args.batch)
    if not folder.is_dir():
        raise SayInputError(f"{folder}: not a folder")
    if args.text is not None or args.curves:
        raise SayInputError("--batch takes no TEXT and no --curves (see --format)")
    sayer = _make_sayer(args)
    out_dir = Path(args.output)
    said, errors = say_folder(sayer, folder, out_dir, args.format)
    for line in errors:
        print(f"avatar-engine say: skipped {line}", file=sys.stderr)
    print(f"{out_dir}: {said} texts said ({len(errors)} skipped)")
    return 0 if said else EXIT_BAD_INPUT


def run_say(args: argparse.Namespace) -> int:
    """The ``say`` handler: 0, or 2 with one line on stderr for bad input."""
    try:
        if args.batch is not None:
            return _say_batch(args)
        if args.text is None:
            raise SayInputError("give the TEXT to say, or --batch FOLDER")
        return _say_one(args)
    except SAY_ERRORS as exc:
        return fail(str(exc), "say")
    except OSError as exc:
        return fail(f"cannot write: {exc}", "say")


__all__ = ["SAY_ERRORS", "Sayer", "add_say_parser", "run_say", "say_folder"]
