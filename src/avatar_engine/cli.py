"""``avatar-engine``: the command line (info, convert; more subcommands register themselves).

Every command returns an exit code: 0 on success, 2 when the input or arguments are bad (with
one line on stderr that names the problem), never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from avatar_engine import __version__
from avatar_engine.client.cli import add_subscribe_parser
from avatar_engine.client.simulate import add_simulate_parser
from avatar_engine.formats.curves_io import MorphCurves, resample_uniform, write_curves
from avatar_engine.formats.llf_csv import TakeFormatError, read_take
from avatar_engine.ingest.cli import add_record_parser, add_replay_parser
from avatar_engine.kernels.backends import (
    BACKENDS,
    BackendUnavailableError,
    available_backends,
    default_backend,
)
from avatar_engine.kernels.retarget import NonFiniteInputError, Retargeter
from avatar_engine.rigs.arkit import ROTATION_NAMES
from avatar_engine.rigs.profile import RigProfileError, builtin_rig_names, load_rig
from avatar_engine.server.serve import add_serve_parser
from avatar_engine.speech.cli import add_lipsync_parser
from avatar_engine.voice.cli import add_say_parser

EXIT_BAD_INPUT = 2

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input or arguments: reported on one line, exit code 2."""


def _cmd_info(args: argparse.Namespace) -> int:
    info = {
        "version": __version__,
        "backends": available_backends(),
        "default_backend": default_backend(),
        "rigs": builtin_rig_names(),
    }
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{key}: {shown}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    source = Path(args.take)
    out = Path(args.output)
    if out.suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"{out}: output must end in .csv or .json")
    if source.suffix.lower() != ".csv":
        raise UsageError(f"{source}: expected a Live Link Face .csv take")
    take = read_take(source, fps=args.take_fps)
    rig = load_rig(args.rig)
    stage = Retargeter(rig, backend=args.backend)
    fps = args.fps or take.fps
    arkit = resample_uniform(take.times, take.arkit, fps)
    rotations = resample_uniform(take.times, take.rotations, fps)
    frames = np.empty((arkit.shape[0], rig.morph_count), dtype=np.float32)
    stage.run(arkit, frames)  # the whole take as one batch: rows are frames here
    channels = {
        name: np.ascontiguousarray(rotations[:, ROTATION_NAMES.index(name)])
        for name in rig.channel_names
        if name in ROTATION_NAMES
    }
    write_curves(MorphCurves(rig.name, fps, rig.morph_names, frames, channels), out)
    print(f"{out}: {frames.shape[0]} frames at {fps:g} fps, {rig.morph_count} morphs ({rig.name})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-engine", description="Real-time facial animation engine."
    )
    parser.add_argument("--version", action="version", version=f"avatar-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="show version, kernel backends and built-in rigs")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=_cmd_info)

    convert = sub.add_parser(
        "convert", help="retarget a Live Link Face CSV take onto a rig's morph curves"
    )
    convert.add_argument("take", help="Live Link Face CSV take")
    convert.add_argument("--rig", default="cc4-extended", help="built-in rig name or rig file")
    convert.add_argument("-o", "--output", required=True, help="OUT.csv or OUT.json")
    convert.add_argument(
        "--fps", type=float, default=None, help="output frame rate (default: the take's)"
    )
    convert.add_argument(
        "--take-fps", type=float, default=60.0, help="frame rate of the take's timecode (60)"
    )
    convert.add_argument("--backend", choices=BACKENDS, default=None, help="force a backend")
    convert.set_defaults(handler=_cmd_convert)

    for register in (
        add_serve_parser,
        add_lipsync_parser,
        add_say_parser,
        add_replay_parser,
        add_record_parser,
        add_subscribe_parser,
        add_simulate_parser,
    ):  # subcommands that live with their feature package
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (
        UsageError,
        TakeFormatError,
        RigProfileError,
        NonFiniteInputError,
        BackendUnavailableError,
    ) as exc:
        print(f"avatar-engine: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
