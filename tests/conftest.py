"""Shared fixtures. Tests read only this repository: the data they need lives in tests/data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from server_process import ServerProcess

if TYPE_CHECKING:
    from inprocess import InProcessServer
    from test_cluster_nodes import RedisProcess

DATA = Path(__file__).parent / "data"

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def reference_take() -> Path:
    """The real Live Link Face take (MIT, see tests/data/llf-take-jmtechart.LICENSE)."""
    return DATA / "llf-take-jmtechart.csv"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """A real ``avatar-engine serve`` with default options, one per test module; a module that
    needs other options defines its own ``server`` fixture, which takes precedence."""
    srv = ServerProcess().wait_ready()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def inprocess() -> Iterator[InProcessServer]:
    """The server in process on a fake clock (tests/inprocess.py): no socket, no wall time;
    the test ticks it with ``advance``. A test needing other options builds its own."""
    from inprocess import InProcessServer  # the app and aiortc load only for tests using it

    srv = InProcessServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    """A real ``redis-server`` on a free loopback port, empty, for one test (cluster mode)."""
    from test_cluster_nodes import RedisProcess  # only the cluster tests pay for its imports

    server = RedisProcess()
    try:
        yield server
    finally:
        server.stop()
