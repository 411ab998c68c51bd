"""schemathesis against a real ``serve``, with and without a JWT secret, and what it did.

For each mode: a fresh server, ``schemathesis run --checks all`` (tests/schemathesis.toml)
with ``--max-examples``, then the server's access log read for the number of requests and
their statuses (the figure schemathesis itself does not print), and schemathesis's verdict:
failures found (schema mismatches, 5xx, undeclared statuses...) and its exit code.

    python benchmarks/openapi_contract.py --max-examples 100
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import jwt

CONFIG = Path(__file__).resolve().parents[1] / "tests" / "schemathesis.toml"
SECRET = "openapi-contract-secret-long-enough-for-hs256"
_STATUS = re.compile(r'" (\d{3})$')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(auth: bool, max_examples: int, seed: int) -> dict[str, object]:
    port = _free_port()
    log = Path(tempfile.gettempdir()) / f"contract-{port}.log"
    env = {**os.environ, **({"AVATAR_ENGINE_JWT_SECRET": SECRET} if auth else {})}
    exe = shutil.which("avatar-engine", path=str(Path(sys.executable).parent))
    serve = [exe] if exe else [sys.executable, "-m", "avatar_engine.cli"]
    server = subprocess.Popen(
        [*serve, "serve", "--port", str(port), "--livelink-port", "0", "--vmc-port", "0"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        headers: list[str] = []
        if auth:
            claims = {"sub": "contract", "scope": "admin", "exp": int(time.time()) + 86400}
            headers = ["-H", f"Authorization: Bearer {jwt.encode(claims, SECRET, 'HS256')}"]
        st = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
        started = time.monotonic()
        result = subprocess.run(
            [st, "--config-file", str(CONFIG), "--no-color", "run", f"{url}/openapi.json",
             "--checks", "all", "--max-examples", str(max_examples), "--workers", "1",
             "--seed", str(seed), "--request-timeout", "30", *headers],
            capture_output=True, text=True, cwd=tempfile.gettempdir(), check=False,
        )  # fmt: skip
        seconds = time.monotonic() - started
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(15)
    statuses: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("logger") == "uvicorn.access":
                match = _STATUS.search(entry["msg"])
                if match:
                    statuses[match.group(1)] += 1
    summary = [ln for ln in result.stdout.splitlines() if "Test cases:" in ln or "generated" in ln]
    return {
        "auth": auth, "max_examples": max_examples, "seconds": round(seconds),
        "requests": sum(statuses.values()), "statuses": dict(sorted(statuses.items())),
        "5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "schemathesis_exit": result.returncode, "schemathesis": " ".join(summary).strip(),
        "failures": [ln.strip() for ln in result.stdout.splitlines() if "❌" in ln],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-examples", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--auth", choices=["off", "on", "both"], default="both")
    args = p.parse_args(argv)
    worst = 0
    modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.auth]
    for auth in modes:
        result = run(auth, args.max_examples, args.seed)
        print(json.dumps(result, ensure_ascii=False), flush=True)
        worst = max(worst, int(result["schemathesis_exit"]))  # type: ignore[call-overload]
    return worst


if __name__ == "__main__":
    sys.exit(main())
