"""``avatar-engine``: the command line, one module per command (or family of commands).

Every command returns an exit code: 0 on success, 2 when the input or arguments are bad (with
one line on stderr that names the problem), never a traceback for bad input.

The core packages never import this package: a command is a thin front-end that parses its
arguments, calls the library, and reports. Adding a command means one module with an
``add_<name>_parser(subparsers)`` function and one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final

from avatar_engine import __version__
from avatar_engine.cli.convert import add_convert_parser
from avatar_engine.cli.info import add_info_parser
from avatar_engine.cli.lipsync import add_lipsync_parser
from avatar_engine.cli.record import add_record_parser
from avatar_engine.cli.replay import add_replay_parser
from avatar_engine.cli.say import add_say_parser
from avatar_engine.cli.serve import add_serve_parser
from avatar_engine.cli.simulate import add_simulate_parser
from avatar_engine.cli.subscribe import add_subscribe_parser
from avatar_engine.cli.usage import EXIT_BAD_INPUT, Subparsers, UsageError
from avatar_engine.formats.llf_csv import TakeFormatError
from avatar_engine.kernels.backends import BackendUnavailableError
from avatar_engine.kernels.retarget import NonFiniteInputError
from avatar_engine.rigs.profile import RigProfileError

Handler = Callable[[argparse.Namespace], int]

COMMANDS: Final[tuple[Callable[[Subparsers], None], ...]] = (
    add_info_parser,
    add_convert_parser,
    add_serve_parser,
    add_lipsync_parser,
    add_say_parser,
    add_replay_parser,
    add_record_parser,
    add_subscribe_parser,
    add_simulate_parser,
)
"""Every subcommand's registration, in the order ``--help`` lists them."""

BAD_INPUT: Final[tuple[type[Exception], ...]] = (
    UsageError,
    TakeFormatError,
    RigProfileError,
    NonFiniteInputError,
    BackendUnavailableError,
)
"""Errors a handler may let escape that still mean bad input (exit 2, one line)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``avatar-engine`` parser with every subcommand registered (each sets ``handler``)."""
    parser = argparse.ArgumentParser(
        prog="avatar-engine", description="Real-time facial animation engine."
    )
    parser.add_argument("--version", action="version", version=f"avatar-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (``argv`` defaults to ``sys.argv[1:]``) and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except BAD_INPUT as exc:
        print(f"avatar-engine: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


__all__ = ["build_parser", "main"]
