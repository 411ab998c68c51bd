"""A one-line text progress bar for the batch commands (``lipsync FOLDER``, ``say --batch``)."""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    """A one-line text progress bar on a terminal stream (no dependency, no curses)."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0

    def step(self, label: str) -> None:
        """Count one item done and redraw the line in place (a newline after the last)."""
        self.done += 1
        filled = self.width * self.done // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\n" if self.done >= self.total else ""
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label[:40]:<40}{end}")
        self.stream.flush()
