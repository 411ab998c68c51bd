"""``avatar-engine info``: what this install can run (version, kernel backends, built-in rigs)."""

from __future__ import annotations

import argparse
import json

from avatar_engine import __version__
from avatar_engine.cli.usage import Subparsers
from avatar_engine.kernels.backends import available_backends, default_backend
from avatar_engine.rigs.profile import builtin_rig_names


def add_info_parser(sub: Subparsers) -> None:
    """Register ``info`` on the main parser's subcommands."""
    info = sub.add_parser("info", help="show version, kernel backends and built-in rigs")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    """Print the facts a bug report needs, as ``key: value`` lines or one JSON object."""
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
