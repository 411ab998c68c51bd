"""The OpenAPI document against the server it describes (issue 20, point 11): schemathesis
with every check, a bounded number of examples, against a real ``serve`` with and without a
JWT secret. Passing means no 5xx, no undeclared status or content type, no response body off
its schema, and no schema-valid body refused for a reason the schema could have stated.
docs/reliability.md has the long runs and their figures."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from server_process import ServerProcess

STARTUP_S = 120.0
"""A loaded machine (the suite runs beside other work) can take a while to start a server."""

CONFIG = Path(__file__).parent / "schemathesis.toml"
SECRET = "schemathesis-secret-long-enough-for-hs256"
MAX_EXAMPLES = "4"
"""Per operation and phase: about 30 s per run here (docs/reliability.md runs 100)."""


def _schemathesis() -> list[str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    return [exe, "--config-file", str(CONFIG), "--no-color"]


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
def test_schemathesis_finds_nothing(auth: bool, tmp_path: Path) -> None:
    command = _schemathesis()
    env = {"AVATAR_ENGINE_JWT_SECRET": SECRET} if auth else {}
    proc = ServerProcess("--livelink-port", "0", "--vmc-port", "0", env=env).wait_ready(STARTUP_S)
    headers: list[str] = []
    if auth:
        claims = {"sub": "st", "scope": "admin", "exp": int(time.time()) + 3600}
        headers = ["-H", f"Authorization: Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"]
    try:
        result = subprocess.run(
            [*command, "run", f"{proc.url}/openapi.json", "--checks", "all",
             "--max-examples", MAX_EXAMPLES, "--workers", "1", "--seed", "20",
             "--request-timeout", "30", *headers],
            capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False,
        )  # fmt: skip
    finally:
        proc.stop()
    report = result.stdout[-6000:]
    assert result.returncode == 0, report
    assert "No issues found" in result.stdout or " passed" in result.stdout, report
    assert "Traceback" not in proc.log_path.read_text()
