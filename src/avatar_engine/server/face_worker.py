"""The live voices' lip-sync in a process of its own, so that it keeps real time.

The streaming lip-sync's phone recogniser (PocketSphinx) holds the GIL while it decodes, and a
cold stream's warm-up re-decodes the voice it has heard so far in one call (100-250 ms). In a
thread of the server's process every such call stalls the event loop: every session's tick
waits, and on a busy machine the live faces fall behind real time (their frames reach the
curves after their time, so the face trails the voice it was made for). In a worker process
the recogniser runs beside the event loop, on another core when there is one.

One worker process serves all the live voices of a server. Each voice's
:class:`~avatar_engine.engine.live_voice.LiveFace` lives there under a key, made by the first
call; a voice's calls come one at a time, in order (its :class:`~avatar_engine.server.
voice_bridge.LiveInput` awaits each), so its stream's state is never shared. A call costs a
round trip through a pipe (well under a millisecond) and the pickling of a chunk and its
frames (a few kB). What a face learned of its sender's voice outlives it (by the key's
*voice*, the session): the sender's next connection starts warm instead of stopping twice in
its first 1.5 s of voice to learn it again (:class:`~avatar_engine.engine.live_voice.
LiveFace`). If the process dies, the calls in flight fail like any face error (the
voice plays on, faceless) and the next call starts a new process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from typing import Final, Literal

from avatar_engine.audio.phones import Voice
from avatar_engine.engine.live_voice import FaceFrames, LiveFace, Piece
from avatar_engine.types import I16

Op = Literal["prepare", "run", "finish", "drop"]
FaceKey = tuple[int, str]
"""(face, voice): one live face, and whose voice it hears (the session)."""

MAX_VOICES: Final = 1024
"""Learned voices kept in the worker (the least recently used go first)."""

START_METHOD: Final = "forkserver"
"""How the worker starts: not by forking the server (its threads and event loop would be
copied mid-flight), and faster than a fresh interpreter per restart."""

PARENT_CHECK_S: Final = 1.0
"""How often the worker checks that its server still runs."""

_FACES: dict[FaceKey, LiveFace] = {}
"""In the worker process: the live faces by key."""
_VOICES: OrderedDict[str, Voice] = OrderedDict()
"""In the worker process: what the last face of each voice learned."""


def _watch_parent(server_pid: int) -> None:
    """Runs in the worker as it starts: exit once the server that owns it is gone. A worker
    waits on its queue, and a server killed without a shutdown would otherwise leave it (and
    its start server) behind for good."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="face-worker-parent", daemon=True).start()


def _call(key: FaceKey, rate: int, delay_ms: int, op: Op, piece: Piece | None,
          samples: I16 | None) -> FaceFrames | None:  # fmt: skip
    """Runs in the worker: one step of the face under ``key`` (made on first use, warm with
    its voice if an earlier face learned it)."""
    voice_key = key[1]
    if op == "drop":
        old = _FACES.pop(key, None)
        learned = None if old is None else old.voice()
        if learned is not None:
            _VOICES[voice_key] = learned
            _VOICES.move_to_end(voice_key)
            while len(_VOICES) > MAX_VOICES:
                _VOICES.popitem(last=False)
        return None
    face = _FACES.get(key)
    if face is None:
        face = _FACES[key] = LiveFace(rate, delay_ms, _VOICES.get(voice_key))
    if op == "prepare":
        face.prepare()
        return None
    if op == "finish":
        return face.finish()
    if piece is None or samples is None:
        raise ValueError("a 'run' step needs its piece and samples")
    return face.run(piece, samples)


class FaceWorker:
    """The server's lip-sync process (started on first use) and the keys of its faces."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._keys = itertools.count()

    def new_key(self, voice: str) -> FaceKey:
        """A key for a new face hearing ``voice`` (a session; the face itself is made in the
        worker by its first call)."""
        return next(self._keys), voice

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context(START_METHOD)
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=context, initializer=_watch_parent,
                initargs=(os.getpid(),),
            )  # fmt: skip
        return self._pool

    async def call(
        self,
        key: FaceKey,
        rate: int,
        delay_ms: int,
        op: Op,
        piece: Piece | None = None,
        samples: I16 | None = None,
    ) -> FaceFrames | None:
        """One step of face ``key`` in the worker. A dead worker raises :class:`RuntimeError`
        (and is replaced for the next call)."""
        pool = self._executor()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, _call, key, rate, delay_ms, op, piece,
                                              samples)  # fmt: skip
        except BrokenExecutor as exc:
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise RuntimeError(f"the lip-sync worker stopped: {exc!r}") from None

    def drop(self, key: FaceKey) -> None:
        """Forget face ``key`` in the worker (its voice ended), keeping what it learned of
        the voice; nothing waits for it."""
        if self._pool is not None:  # (dead or shut down: nothing to forget)
            with contextlib.suppress(BrokenExecutor, RuntimeError):
                self._pool.submit(_call, key, 0, 0, "drop", None, None)

    def shutdown(self) -> None:
        """Stop the worker process (the server is stopping)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
