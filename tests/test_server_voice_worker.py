"""The live voices' lip-sync process (server/face_worker.py): the same frames as in-process,
faces kept apart by key, and a dead worker replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from avatar_engine.engine.live_voice import FaceFrames, LiveClock, LiveFace, Piece
from avatar_engine.server import face_worker
from avatar_engine.server.face_worker import FaceWorker

FOX = Path(__file__).parent / "data" / "audio" / "fox-espeak.wav"


def fox() -> tuple[np.ndarray, int]:
    with wave.open(str(FOX)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16), w.getframerate()


def pieces(rate: int, n: int) -> list[tuple[Piece, slice]]:
    clock, step = LiveClock(rate, 200), rate // 10
    return [
        (clock.place(min(step, n - i), now_ms=1000 + i * 1000 // rate), slice(i, i + step))
        for i in range(0, n, step)
    ]


def join(parts: Sequence[FaceFrames | None]) -> FaceFrames:
    got = [p for p in parts if p is not None and len(p)]
    return FaceFrames(
        np.concatenate([p.t_ms for p in got]), np.concatenate([p.channels for p in got])
    )


def test_the_worker_decides_the_same_frames_as_in_process_and_keeps_faces_apart() -> None:
    samples, rate = fox()
    placed = pieces(rate, samples.shape[0])
    local = LiveFace(rate, 200)
    expected = join([local.run(p, samples[s]) for p, s in placed] + [local.finish()])

    async def run() -> tuple[FaceFrames, FaceFrames]:
        worker = FaceWorker()
        a, b = worker.new_key("a"), worker.new_key("b")
        try:
            await worker.call(a, rate, 200, "prepare")
            got: dict[tuple[int, str], list[FaceFrames | None]] = {a: [], b: []}
            for p, s in placed:  # two voices interleaved: each keeps its own stream
                for key in (a, b):
                    got[key].append(await worker.call(key, rate, 200, "run", p, samples[s]))
            for key in (a, b):
                got[key].append(await worker.call(key, rate, 200, "finish"))
            worker.drop(a)
            return join(got[a]), join(got[b])
        finally:
            worker.shutdown()

    first, second = asyncio.run(run())
    for frames in (first, second):
        assert np.array_equal(frames.t_ms, expected.t_ms)
        assert np.allclose(frames.channels, expected.channels, atol=1e-6)


def test_a_dead_worker_fails_its_calls_and_is_replaced() -> None:
    samples, rate = fox()
    (piece, s), *_ = pieces(rate, samples.shape[0])

    async def run() -> FaceFrames | None:
        worker = FaceWorker()
        key = worker.new_key("a")
        try:
            await worker.call(key, rate, 200, "prepare")
            pool = worker._executor()
            for pid in list(pool._processes):  # the worker process dies (killed, crashed)
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(RuntimeError, match="lip-sync worker stopped"):
                for _ in range(50):  # the pool notices within a call or two
                    await worker.call(key, rate, 200, "run", piece, samples[s])
                    await asyncio.sleep(0.05)
            return await worker.call(worker.new_key("a"), rate, 200, "run", piece, samples[s])
        finally:
            worker.shutdown()

    frames = asyncio.run(run())
    assert frames is not None  # a new process serves the next call


def test_what_a_face_learned_of_a_voice_starts_its_next_face_warm() -> None:
    """In the worker (run in-process here): a dropped face leaves its voice to the next face
    of the same session, so that one does not stop to learn it again; other sessions start
    cold."""
    samples, rate = fox()
    first = (900_001, "warm-test")
    for piece, s in pieces(rate, samples.shape[0]):
        face_worker._call(first, rate, 200, "run", piece, samples[s])
    face_worker._call(first, rate, 200, "finish", None, None)
    face_worker._call(first, rate, 200, "drop", None, None)
    again, other = (900_002, "warm-test"), (900_003, "someone-else")
    for key in (again, other):
        face_worker._call(key, rate, 200, "prepare", None, None)
    try:
        assert face_worker._FACES[again].params.voice is not None
        assert face_worker._FACES[other].params.voice is None
    finally:
        for key in (again, other):
            face_worker._call(key, rate, 200, "drop", None, None)
        face_worker._VOICES.clear()
