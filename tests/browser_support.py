"""Debian's Chromium for every browser test and benchmark: one executable, one set of flags, one
set of skips and one page factory, so each test drives the same browser the same way.

The flags keep a headless Chromium off this machine's closed network (background networking,
component updates, sync and QUIC off: without them it retries refused connections at every
start). Never a downloaded browser: ``AVATAR_ENGINE_CHROMIUM`` may name another binary.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

WEB = Path(str(resources.files("avatar_engine") / "web"))  # what the server serves at /
CHROMIUM = os.environ.get("AVATAR_ENGINE_CHROMIUM") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium") or ""
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]

BROWSER_SKIPS = [
    pytest.mark.skipif(
        not CHROMIUM or not Path(CHROMIUM).exists(),
        reason="Debian chromium is not installed (apt-get install chromium)",
    ),
    pytest.mark.skipif(
        not (WEB / "index.html").exists() or not (WEB / "app.js").exists(),
        reason="web client not built (cd clients/threejs && npm ci && npm run build)",
    ),
]
"""The skips every browser test module starts its ``pytestmark`` with."""


def launch(playwright: Any, *extra_args: str) -> Any:
    """A headless Chromium with the shared flags (plus ``extra_args``)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])


def open_page(browser: Any, viewport: dict[str, int], init_script: str | None = None) -> Any:
    """A page in a fresh context (empty cache), whose uncaught errors collect in ``page.errors``;
    ``init_script`` runs before the page's own scripts. The caller closes ``page.context``."""
    context = browser.new_context(viewport=viewport)
    if init_script is not None:
        context.add_init_script(init_script)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    return page


@contextmanager
def new_page(
    browser: Any, viewport: dict[str, int], init_script: str | None = None
) -> Iterator[Any]:
    """:func:`open_page`, closed on exit."""
    page = open_page(browser, viewport, init_script)
    try:
        yield page
    finally:
        page.context.close()
