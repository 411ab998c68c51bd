"""Run a real ``avatar-engine serve`` process on free loopback ports for integration tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``avatar-engine serve`` in a subprocess; ``stop()`` sends SIGTERM and waits."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.livelink_port = free_port(socket.SOCK_DGRAM)
        self.vmc_port = free_port(socket.SOCK_DGRAM)
        exe = shutil.which("avatar-engine", path=str(Path(sys.executable).parent))
        command = [exe] if exe else [sys.executable, "-m", "avatar_engine.cli"]
        self.args = [
            *command, "serve", "--port", str(self.port),
            "--livelink-port", str(self.livelink_port), "--vmc-port", str(self.vmc_port),
            "--log-format", "json", *args,
        ]  # fmt: skip
        self.log_path = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"serve-{self.port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            self.args, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM; returns the seconds the process took to exit."""
        if self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._log.close()
        return time.monotonic() - started
