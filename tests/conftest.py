"""Shared fixtures. Tests read only this repository: the data they need lives in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

DATA = Path(__file__).parent / "data"

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def reference_take() -> Path:
    """The real Live Link Face take (MIT, see tests/data/llf-take-jmtechart.LICENSE)."""
    return DATA / "llf-take-jmtechart.csv"
