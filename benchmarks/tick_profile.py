"""Where a tick's time goes: each stage of the engine and the encoder, per session-frame.

    python benchmarks/tick_profile.py [--sessions 1024] [--ticks 120] [--backend native]
                                      [--clock wall|cpu] [--speaking 0.25]

Builds S cc4-extended sessions with live capture (every row fresh each tick, the worst case),
a quarter of them speaking (``--speaking``: the share; 0 is a capture-only server, where the
speech stage has nothing to sample), every session subscribed once at LOD 0 (chained, 8-bit),
and times the stages the runtime's tick runs, in the order it runs them. ``--clock cpu`` times
this thread's CPU time instead of wall time: on a busy machine wall time also counts the waits
for a core, which can swamp a before/after comparison (the kernels run in this thread).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from avatar_engine.codec.encoder import BatchEncoder
from avatar_engine.codec.messages import StreamParams
from avatar_engine.codec.schema import StreamSchema
from avatar_engine.engine.engine import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1024)
    parser.add_argument("--ticks", type=int, default=120)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--speaking", type=float, default=0.25,
                        help="share of the sessions given text to speak")  # fmt: skip
    args = parser.parse_args()
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter

    engine = Engine(backend=args.backend)
    ids = [f"s{i}" for i in range(args.sessions)]
    for sid in ids:
        engine.create_session(sid, t=0.0)
    group = engine.group("cc4-extended")
    rng = np.random.default_rng(1)
    for i, sid in enumerate(ids[: round(args.sessions * args.speaking)]):
        engine.push_text(
            sid, "Hello there, this is a rather long sentence to keep talking. " * 3, 0.01 * i
        )
    schema = StreamSchema.from_rig(group.rig)
    encoder = BatchEncoder(schema, args.sessions)
    for row in range(args.sessions):
        encoder.add_stream(row, row + 1, 0, StreamParams())
    timings: dict[str, float] = defaultdict(float)
    anim = group.animator
    arkit = rng.random((args.sessions, 52), dtype=np.float32)
    for k in range(args.ticks + 10):
        t = 1.0 + k / 60
        if k == 10:
            timings.clear()
        capture = group.rows.block("capture")
        capture[:] = np.clip(arkit + 0.05 * np.sin(t * 3), 0, 1)
        group.rows.block("capture_fresh")[:] = True
        n = len(group.rows)
        t0 = clock()
        group.retarget.run(capture, anim.capture_morphs[:n])
        anim.capture_channels[:n] = group.rows.block("rotations")
        anim.capture_new[:n] = True
        t1 = clock()
        group.speech.step(t, n, anim.speech_morphs, anim.speaking, anim.in_word)
        t2 = clock()
        anim.step(t)
        t3 = clock()
        tick = encoder.encode(int(t * 1000), anim.out_m[:n], anim.out_c[:n])
        t4 = clock()
        total = 0
        for slot in np.flatnonzero(tick.kinds).tolist():
            total += len(bytes(tick.message(slot)))
        t5 = clock()
        timings["retarget capture"] += t1 - t0
        timings["speech sample + map"] += t2 - t1
        timings["animate (emotion, life, filter, compose)"] += t3 - t2
        timings["encode (all streams)"] += t4 - t3
        timings["copy out per stream"] += t5 - t4
    per = args.ticks * args.sessions
    print(
        f"{args.sessions} sessions, {args.ticks} ticks, backend {group.retarget.backend}, "
        f"{args.clock} clock"
    )
    print(f"{'stage':<45}{'ms/tick':>10}{'us/session-frame':>20}")
    for stage, seconds in timings.items():
        print(f"{stage:<45}{seconds / args.ticks * 1e3:>10.3f}{seconds / per * 1e6:>20.3f}")
    total_s = sum(timings.values())
    print(f"{'total':<45}{total_s / args.ticks * 1e3:>10.3f}{total_s / per * 1e6:>20.3f}")


if __name__ == "__main__":
    main()
