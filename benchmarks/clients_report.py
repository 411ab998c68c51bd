"""Print the game-engine client figures: the Unity (C#) decoder's speed under Mono, and how
exactly Live Link egress gives back a capture's ARKit weights from a non-ARKit rig.

    python benchmarks/clients_report.py

Decode: the capture take (tests/data/llf-take-jmtechart.csv) retargeted to cc4-extended,
encoded as LOD 0, 8-bit, chained (the stream of benchmarks/codec_report.py), decoded by
clients/unity/Runtime/Protocol compiled with Debian's mcs (-optimize+) and run by mono; best of
200 replays into a fresh decoder, per message. Unity's own runtime (Mono or IL2CPP) differs:
read it as an order of magnitude. Inverse: the same take retargeted to each rig and sent
through the egress's ArkitView; the error is against the take's ARKit weights clamped to 0..1.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from avatar_engine import Retargeter, load_rig
from avatar_engine.codec import StreamParams, StreamSchema, encode_hello
from avatar_engine.formats.llf_csv import read_take
from avatar_engine.transport.egress import ArkitView
from codec_report import ROOT, TAKE, contents, encode_stream, write_msgs

CS_BENCH = """
using System;
using System.Diagnostics;
using System.IO;
using AvatarEngine.Protocol;

static class Bench {
    static void Main(string[] args) {
        byte[] file = File.ReadAllBytes(args[0]);
        var msgs = new System.Collections.Generic.List<byte[]>();
        for (int pos = 0; pos + 5 <= file.Length;) {
            int len = file[pos + 1] | (file[pos + 2] << 8) | (file[pos + 3] << 16)
                | (file[pos + 4] << 24);
            var m = new byte[len];
            Buffer.BlockCopy(file, pos + 5, m, 0, len);
            msgs.Add(m);
            pos += 5 + len;
        }
        double best = double.MaxValue;
        int gc0 = GC.CollectionCount(0);
        for (int r = 0; r < 200; r++) {
            var dec = new AvatarEngine.Protocol.Decoder();
            var watch = Stopwatch.StartNew();
            foreach (byte[] m in msgs) dec.Feed(m, 0, m.Length);
            if (r >= 20) best = Math.Min(best, watch.Elapsed.TotalMilliseconds * 1000.0);
        }
        int gcs = GC.CollectionCount(0) - gc0;
        Console.WriteLine((best / msgs.Count).ToString("F3") + " " + msgs.Count + " " + gcs);
    }
}
"""


def csharp_decode(tmp: Path, msgs_file: Path) -> str:
    if shutil.which("mcs") is None or shutil.which("mono") is None:
        return "  C# (Mono): mcs/mono not found (apt-get install mono-mcs)"
    source = tmp / "Bench.cs"
    source.write_text(CS_BENCH)
    exe = tmp / "Bench.exe"
    protocol = sorted((ROOT / "clients" / "unity" / "Runtime" / "Protocol").glob("*.cs"))
    subprocess.run(
        ["mcs", "-langversion:7.2", "-optimize+", "-nologo", f"-out:{exe}", *map(str, protocol),
         str(source)],
        check=True,
    )  # fmt: skip
    out = subprocess.run(["mono", str(exe), str(msgs_file)], check=True, capture_output=True,
                         text=True).stdout.split()  # fmt: skip
    version = subprocess.run(["mono", "--version"], check=True, capture_output=True, text=True)
    mono = version.stdout.split()[4]
    return (
        f"  C# (mono {mono}): {float(out[0]):8.3f} us per message over {out[1]} messages; "
        f"{out[2]} gen-0 collections in 200 replays"
    )


def main() -> None:
    print("== Unity decoder, per message (LOD0, 8-bit, chained; capture take content)")
    content = contents(quick=True)[0]
    schema = StreamSchema.from_rig(load_rig("cc4-extended"))
    params = StreamParams()
    msgs = [m for m in encode_stream(schema, content, 0, params)[0] if m]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "take.msgs"
        write_msgs(path, encode_hello(1, schema, params), msgs)
        print(csharp_decode(Path(tmp), path))

    print("\n== Live Link egress: the take's ARKit weights back from each rig (max abs error)")
    take = read_take(TAKE)
    truth = np.clip(take.arkit, 0.0, 1.0)
    for name in ("arkit52", "cc4-extended", "cc4-standard", "oculus15"):
        rig = load_rig(name)
        morphs = Retargeter(rig).map(take.arkit)
        view = ArkitView.for_rig(rig)
        back = np.stack([view.gather(row, None)[0].copy() for row in morphs])
        err = np.abs(back - truth)
        print(f"  {name:>13} ({view.method:>15}): max {err.max():.2e}, mean {err.mean():.2e}")


if __name__ == "__main__":
    main()
