"""Print the codec figures: bytes per frame, reconstruction error, and encode/decode time.

    python benchmarks/codec_report.py [--quick]

Content: the real Live Link Face take (tests/data/llf-take-jmtechart.csv, 60 fps) retargeted to
cc4-extended, and a scripted speech-like sequence (codec.synthetic, 20 s at 60 fps) retargeted
the same way. Every LOD level runs at its own rate; "bytes/frame" counts every frame the level
is due (an unchanged chained frame sends nothing and counts 0 B). Errors are measured on the
decoded values of the level's own elements against the encoder's input.

Comparisons carry the same frame in other formats: a Live Link Face v6 UDP packet (52 ARKit
weights + 9 rotations, 36-character device id, subject "iPhone"), a VMC/OSC bundle of the 52
ARKit values (one /VMC/Ext/Blend/Val per shape plus /VMC/Ext/Blend/Apply, OSC 1.0 padding), and
a named-key JSON object of the 52 ARKit weights. Timing: best of several runs on this machine
(a shared VM: read the figures as orders of magnitude).
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_engine import Retargeter, load_rig
from avatar_engine.codec import (
    BatchEncoder,
    Decoder,
    DeltaMode,
    StreamParams,
    StreamSchema,
    encode_hello,
)
from avatar_engine.codec.encoder import _fast
from avatar_engine.codec.synthetic import scripted_speech
from avatar_engine.formats.livelink import build_packet
from avatar_engine.formats.llf_csv import read_take
from avatar_engine.rigs.arkit import ARKIT_NAMES

ROOT = Path(__file__).resolve().parents[1]
TAKE = ROOT / "tests" / "data" / "llf-take-jmtechart.csv"
RIG = "cc4-extended"
F32 = npt.NDArray[np.float32]


class Content:
    def __init__(self, name: str, arkit: F32, rotations: F32, times_ms: npt.NDArray[np.int64]):
        self.name = name
        self.arkit = arkit
        self.rotations = rotations
        self.times = times_ms
        self.morphs = Retargeter(load_rig(RIG)).map(arkit)

    def __len__(self) -> int:
        return int(self.arkit.shape[0])


def contents(quick: bool) -> list[Content]:
    take = read_take(TAKE)
    times = np.round(take.times * 1000).astype(np.int64)
    frames = 300 if quick else 1200
    arkit, rot = scripted_speech(frames, 60.0, seed=1)
    speech_t = np.round(np.arange(frames) * 1000 / 60).astype(np.int64)
    return [
        Content(f"capture take ({len(take)} frames @60)", take.arkit, take.rotations, times),
        Content(f"scripted speech ({frames} frames @60)", arkit, rot, speech_t),
    ]


def encode_stream(
    schema: StreamSchema, content: Content, lod: int, params: StreamParams
) -> tuple[list[bytes], list[bool]]:
    """Per tick: the message (b"" if none) and whether the level had a frame slot (was due)."""
    enc = BatchEncoder(schema, 1)
    enc.add_stream(0, 1, lod, params)
    out, due = [], []
    for i in range(len(content)):
        before = (float(enc.next_due[0]), int(enc.started[0]))
        tick = enc.encode(int(content.times[i]), content.morphs[i : i + 1],
                          content.rotations[i : i + 1])  # fmt: skip
        out.append(bytes(tick.message(0)))
        due.append((float(enc.next_due[0]), int(enc.started[0])) != before)
    return out, due


def errors(
    schema: StreamSchema, content: Content, lod: int, params: StreamParams, msgs: list[bytes]
) -> tuple[float, float]:
    dec = Decoder()
    dec.feed(encode_hello(1, schema, params))
    table = schema.lods[lod]
    mi, ci = np.asarray(table.morphs), np.asarray(table.channels, dtype=np.int64)
    worst_m = worst_c = 0.0
    for i, msg in enumerate(msgs):
        if not msg:
            continue
        dec.feed(msg)
        st = dec.stream(1)
        worst_m = max(worst_m, float(np.abs(st.morphs[mi] - content.morphs[i, mi]).max()))
        if ci.size:
            worst_c = max(worst_c, float(np.abs(st.channels[ci] - content.rotations[i, ci]).max()))
    return worst_m, worst_c


# ------------------------------------------------------------------ other formats


def osc_string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return raw + b"\0" * (-len(raw) % 4)


def osc_message(address: str, tags: str, *args: str | float) -> bytes:
    out = osc_string(address) + osc_string("," + tags)
    for tag, arg in zip(tags, args, strict=True):
        out += osc_string(str(arg)) if tag == "s" else struct.pack(">f", float(arg))
    return out


def vmc_bundle(values: F32) -> bytes:
    """OSC 1.0 bundle: '#bundle', timetag, then (int32 size, message) per element."""
    pascal = [n[0].upper() + n[1:] for n in ARKIT_NAMES]
    elements = [
        osc_message("/VMC/Ext/Blend/Val", "sf", n, float(v))
        for n, v in zip(pascal, values, strict=True)
    ]
    elements.append(osc_message("/VMC/Ext/Blend/Apply", ""))
    body = b"".join(struct.pack(">i", len(e)) + e for e in elements)
    return osc_string("#bundle") + struct.pack(">Q", 1) + body


def json_frame(values: F32) -> bytes:
    return json.dumps({n: float(v) for n, v in zip(ARKIT_NAMES, values, strict=True)}).encode()


def livelink(values: F32, rot: F32) -> bytes:
    uuid = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"
    return build_packet(uuid, "iPhone", np.concatenate([values, rot]))


# ------------------------------------------------------------------ timing


def best(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def encode_batch_us(
    schema: StreamSchema, content: Content, sessions: int, use_fast: bool, ticks: int
) -> float:
    """Amortised encode time per stream-frame: ``sessions`` LOD0 streams, one call per tick.

    Session ``s`` plays the content from frame ``7 s`` on, so streams differ; the clock keeps
    moving across repeats (a repeated timestamp would not be due and would cost nothing).
    """
    enc = BatchEncoder(schema, sessions, use_fast=use_fast)
    for s in range(sessions):
        enc.add_stream(s, s, 0, StreamParams())
    n = len(content)
    rows = [(np.arange(sessions) * 7 + i) % n for i in range(ticks)]
    m = [np.ascontiguousarray(content.morphs[r]) for r in rows]
    c = [np.ascontiguousarray(content.rotations[r]) for r in rows]
    clock = [0]
    enc.encode(0, m[0], c[0])  # the opening keyframes are not the steady state

    def go() -> None:
        for i in range(ticks):
            clock[0] += 1
            enc.encode(clock[0] * 1000 // 60, m[i], c[i])

    return best(go, 3) / (ticks * sessions) * 1e6


def decode_us(msgs: list[bytes], hello: bytes, use_fast: bool) -> float:
    def go() -> None:
        dec = Decoder(use_fast=use_fast)
        dec.feed(hello)
        for msg in msgs:
            dec.feed(msg)

    return best(go) / len(msgs) * 1e6


def write_msgs(path: Path, hello: bytes, msgs: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack("<BI", 0, len(m)) + m for m in [hello, *msgs]))


JS_BENCH = """
import { readFileSync } from 'node:fs';
import { Decoder } from '%s';
const file = new Uint8Array(readFileSync(process.argv[2]));
const msgs = [];
for (let pos = 0; pos + 5 <= file.length;) {
  const len = file[pos + 1] | (file[pos + 2] << 8) | (file[pos + 3] << 16) | (file[pos + 4] << 24);
  msgs.push(file.subarray(pos + 5, pos + 5 + len));
  pos += 5 + len;
}
let best = Infinity;
for (let r = 0; r < 200; r++) {
  const dec = new Decoder();
  const t0 = process.hrtime.bigint();
  for (const m of msgs) dec.feed(m);
  const dt = Number(process.hrtime.bigint() - t0);
  if (r >= 20) best = Math.min(best, dt);
}
console.log((best / msgs.length / 1000).toFixed(3));
"""


def native_decode_us(tmp: Path, msgs_file: Path) -> tuple[float | None, float | None]:
    cpp = js = None
    if shutil.which("g++"):
        exe = tmp / "bench_decode"
        subprocess.run(
            ["g++", "-std=c++17", "-O2", "-I", str(ROOT / "native" / "include"),
             str(ROOT / "native" / "examples" / "bench_decode.cpp"), "-o", str(exe)],
            check=True,
        )  # fmt: skip
        out = subprocess.run(
            [str(exe), str(msgs_file), "300"], check=True, capture_output=True, text=True
        )
        cpp = float(out.stdout.split()[1]) / 1000
    node = shutil.which("node")
    if node:
        script = tmp / "bench.mjs"
        script.write_text(
            JS_BENCH % (ROOT / "clients" / "threejs" / "src" / "protocol.js").as_uri()
        )
        out = subprocess.run(
            [node, str(script), str(msgs_file)], check=True, capture_output=True, text=True
        )
        js = float(out.stdout.strip())
    return cpp, js


# ------------------------------------------------------------------ report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter speech, smaller batches")
    args = parser.parse_args()
    rig = load_rig(RIG)
    schema = StreamSchema.from_rig(rig)
    print(f"rig {RIG}: {rig.morph_count} morphs + {len(rig.channel_names)} rotation channels; "
          f"LOD sizes {[lv.size for lv in schema.lods]}, "
          f"rates {[lv.fps for lv in schema.lods]} fps; "
          f"Cython kernel: {'yes' if _fast is not None else 'NO (pure Python)'}")  # fmt: skip
    for content in contents(args.quick):
        print(f"\n== {content.name}, retargeted to {RIG}")
        print(f"{'LOD':>3} {'bits':>4} {'mode':<9} {'frames':>6} {'mean B':>7} {'p99 B':>6} "
              f"{'kB/s':>6} {'max err morph':>14} {'max err rot':>12}")  # fmt: skip
        for lod in range(4):
            for bits in (8, 16):
                for mode in (DeltaMode.CHAINED, DeltaMode.KEYFRAME):
                    params = StreamParams(bits=bits, mode=mode)
                    msgs, due = encode_stream(schema, content, lod, params)
                    sizes = np.array([len(m) for m, d in zip(msgs, due, strict=True) if d])
                    seconds = (content.times[-1] - content.times[0]) / 1000 + 1 / 60
                    em, ec = errors(schema, content, lod, params, msgs)
                    print(f"{lod:>3} {bits:>4} {mode.name.lower():<9} {sizes.size:>6} "
                          f"{sizes.mean():>7.1f} {np.percentile(sizes, 99):>6.0f} "
                          f"{sizes.sum() / seconds / 1000:>6.2f} "
                          f"{em:>9.6f} ={em * 255:>4.2f}/255 {ec:>12.6f}")  # fmt: skip
        ll = np.array(
            [len(livelink(a, r)) for a, r in zip(content.arkit, content.rotations, strict=True)]
        )
        vmc = np.array([len(vmc_bundle(a)) for a in content.arkit])
        js = np.array([len(json_frame(a)) for a in content.arkit])
        params = StreamParams()
        msgs, due = encode_stream(schema, content, 0, params)
        ours = np.array([len(m) for m, d in zip(msgs, due, strict=True) if d]).mean()
        print(f"same frames in other formats (mean B/frame): Live Link v6 {ll.mean():.0f}, "
              f"VMC/OSC bundle of 52 {vmc.mean():.0f}, named-key JSON {js.mean():.0f}; "
              f"LOD0 8-bit chained is {ll.mean() / ours:.1f}x smaller than Live Link, "
              f"{vmc.mean() / ours:.0f}x smaller than VMC, "
              f"{js.mean() / ours:.0f}x smaller than JSON")  # fmt: skip

    content = contents(True)[0]
    print("\n== encode time per frame (LOD0, 8-bit, chained; capture take content)")
    batch = 256 if args.quick else 1024
    ticks = 20 if args.quick else 60
    if _fast is not None:
        for sessions in (1, 64, batch):
            us = encode_batch_us(schema, content, sessions, True, ticks if sessions > 1 else 300)
            print(f"  Cython batch of {sessions:>5}: {us:8.3f} us/frame")
    us = encode_batch_us(schema, content, 64, False, 10)
    print(f"  Python reference (64 streams, loop): {us:8.2f} us/frame")

    print("\n== decode time per message (LOD0, 8-bit, chained; capture take content)")
    params = StreamParams()
    msgs = [m for m in encode_stream(schema, content, 0, params)[0] if m]
    hello = encode_hello(1, schema, params)
    print(f"  Python reference: {decode_us(msgs, hello, False):8.2f} us")
    if _fast is not None:
        print(f"  Python + Cython : {decode_us(msgs, hello, True):8.2f} us")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "take.msgs"
        write_msgs(path, hello, msgs)
        cpp, js = native_decode_us(Path(tmp), path)
    print(f"  C++ (g++ -O2)   : {cpp:8.3f} us" if cpp is not None else "  C++: g++ not found")
    print(
        f"  JS (node {_node_version()}): {js:8.3f} us" if js is not None else "  JS: node not found"
    )


def _node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "?"
    return subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
