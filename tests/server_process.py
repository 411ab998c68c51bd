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

_HANDED_OUT: set[tuple[int, int]] = set()

#: Starts of one server tried before giving up on "address already in use".
START_ATTEMPTS = 3


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing holds now and this process never handed out before: the kernel
    may give a just-closed port again, and two servers started back to back (a cluster test)
    must not both be told it before either has bound it."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if (kind, port) not in _HANDED_OUT:
            _HANDED_OUT.add((kind, port))
            return port


class ServerProcess:
    """``avatar-engine serve`` in a subprocess; ``stop()`` sends SIGTERM and waits.

    A port found free is only free until the server binds it, a second later; another
    program can take it first (CI saw it once). A start that fails with "address already in
    use" is retried on fresh ports by ``wait_ready``, up to ``START_ATTEMPTS`` starts."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._extra = args
        self._env = env
        self._starts = 0
        self._spawn()

    def _spawn(self) -> None:
        self._starts += 1
        self.port = free_port()
        self.livelink_port = free_port(socket.SOCK_DGRAM)
        self.vmc_port = free_port(socket.SOCK_DGRAM)
        exe = shutil.which("avatar-engine", path=str(Path(sys.executable).parent))
        command = [exe] if exe else [sys.executable, "-m", "avatar_engine.cli"]
        self.args = [
            *command, "serve", "--port", str(self.port),
            "--livelink-port", str(self.livelink_port), "--vmc-port", str(self.vmc_port),
            "--log-format", "json", *self._extra,
        ]  # fmt: skip
        self.log_path = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"serve-{self.port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self._env or {})},
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                if "address already in use" in log.lower() and self._starts < START_ATTEMPTS:
                    self._log.close()
                    self._spawn()
                    continue
                raise RuntimeError(f"server exited early:\n{log}")
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
