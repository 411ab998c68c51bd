"""What every ``avatar-engine`` command shares: the bad-input exit code and its one-line report.

The contract of the whole command line is that bad input (a missing file, a malformed take, a
refused connection) exits with :data:`EXIT_BAD_INPUT` and one line on stderr that names the
problem, never a traceback; each command module uses these instead of its own copy.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final, TypeAlias

EXIT_BAD_INPUT: Final = 2

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The main parser's subcommand table, which every command module registers itself on."""


class UsageError(Exception):
    """Bad input or arguments: reported on one line, exit code 2."""


def fail(message: str, command: str = "") -> int:
    """Print ``avatar-engine[ COMMAND]: error: MESSAGE`` on stderr and return exit code 2."""
    prefix = f"avatar-engine {command}" if command else "avatar-engine"
    print(f"{prefix}: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
