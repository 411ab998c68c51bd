"""``avatar-engine convert``: a Live Link Face CSV take retargeted onto a rig's morph curves."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from avatar_engine.cli.usage import Subparsers, UsageError
from avatar_engine.formats.curves_io import MorphCurves, resample_uniform, write_curves
from avatar_engine.formats.llf_csv import read_take
from avatar_engine.kernels.backends import BACKENDS
from avatar_engine.kernels.retarget import Retargeter
from avatar_engine.rigs.arkit import ROTATION_NAMES
from avatar_engine.rigs.profile import load_rig


def add_convert_parser(sub: Subparsers) -> None:
    """Register ``convert`` on the main parser's subcommands."""
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
    convert.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    """Resample the take to a uniform grid and retarget it as one batch (rows are frames).

    Bad input raises (:class:`UsageError`, a take or rig format error); the main entry point
    turns those into exit code 2.
    """
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
