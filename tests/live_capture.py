"""A live face for integration tests of clients and egress: a Live Link Face "phone" on a
thread, waiting for the session it creates, and the Python decoder's frames as a reference."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time

import httpx
import numpy as np
import websockets

from avatar_engine.codec.decoder import Decoder
from avatar_engine.codec.messages import Frame
from avatar_engine.formats.livelink import build_packet
from avatar_engine.rigs.arkit import ARKIT_NAMES, ROTATION_NAMES
from server_process import ServerProcess


class LiveLinkPhone:
    """Sends Live Link Face packets at 60 Hz from a thread, like a phone: the face moves."""

    def __init__(self, port: int, subject: str, *, jaw: float | None = None) -> None:
        self.port = port
        self.subject = subject
        self.jaw = jaw
        self.yaw = 0.25
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LiveLinkPhone:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        values = np.zeros(61, np.float32)
        n = 0
        while not self._stop.wait(1 / 60):
            jaw = self.jaw if self.jaw is not None else 0.5 + 0.4 * math.sin(n / 7)
            values[ARKIT_NAMES.index("jawOpen")] = jaw
            values[52 + ROTATION_NAMES.index("HeadYaw")] = self.yaw
            sock.sendto(build_packet("unity-test", self.subject, values), ("127.0.0.1", self.port))
            n += 1
        sock.close()


def wait_for_session(server: ServerProcess, session: str) -> None:
    for _ in range(100):
        if httpx.get(f"{server.url}/sessions/{session}", timeout=2).status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"session {session} was not created")


async def python_frames(url: str, seconds: float) -> dict[int, np.ndarray]:
    """The Python decoder's morphs after every LOD 0 frame, by stream time."""
    decoder = Decoder()
    seen: dict[int, np.ndarray] = {}
    async with websockets.connect(url) as ws:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            msg = decoder.feed(data)  # type: ignore[arg-type]
            if isinstance(msg, Frame) and msg.lod == 0:
                seen[msg.t_ms] = decoder.stream(msg.sid).morphs.copy()
    return seen
