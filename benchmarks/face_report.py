"""The demo page's heads in a real browser: file size, time to the first rendered face, frame time.

    python benchmarks/face_report.py [--frames 60] [--budget-seconds 12] [--json out.json]

Starts ``avatar-engine serve`` on a free loopback port and drives Debian's Chromium
(``/usr/bin/chromium``, headless, software GL: SwiftShader, as in the browser tests) through
Playwright. For each bundled head (``ict``: the default, ``cc4``: the generated CC4-named one)
it prints:

* the GLB's size;
* time to first rendered face on a fresh load (a new browser context, so nothing is cached):
  milliseconds from navigation to the first frame drawn with the head in the scene, and the
  model's own load time (fetch + parse), from ``avatarDemo.timing``;
* render frame time at LOD 0: ``--frames`` synchronous renders of the streamed face, each
  finished with ``gl.finish()`` (median and 90th percentile), and the page's own render fps;
* what the client's LOD budget does there: the page with the budget on (the default) for
  ``--budget-seconds``; the LOD it ends at and the steps it took.

Figures depend on the machine and its load; docs/client.md quotes a run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import launch  # noqa: E402
from server_process import ServerProcess  # noqa: E402

VIEWPORT = {"width": 480, "height": 600}
HEADS = {"ict": "ict-head.glb", "cc4": "head.glb"}
WEB = ROOT / "src" / "avatar_engine" / "web"

FRAME_TIMES = """(n) => {
  const { renderer, scene, camera, client } = avatarDemo;
  const gl = renderer.getContext();
  const px = new Uint8Array(4);
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    client.update(t0);
    renderer.render(scene, camera);
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px); // waits for the frame
    out.push(performance.now() - t0);
  }
  return out;
}"""


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def measure_head(browser: Any, url: str, head: str, frames: int, budget_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"head": head, "glb_bytes": (WEB / HEADS[head]).stat().st_size}
    context = browser.new_context(viewport=VIEWPORT)  # fresh: empty cache
    try:
        pg = context.new_page()
        pg.goto(f"{url}/?head={head}&lod=0&budget=off&transport=websocket")
        pg.wait_for_function("!Number.isNaN(avatarDemo.timing.firstFaceMs)", timeout=120000)
        out.update(pg.evaluate("({...avatarDemo.timing})"))
        pg.wait_for_function("avatarDemo.client.state === 'active'", timeout=30000)
        pg.wait_for_timeout(3000)
        out["render_fps"] = pg.evaluate("avatarDemo.client.stats.renderFps")
        times = pg.evaluate(FRAME_TIMES, frames)
        out["frame_ms_median"] = percentile(times, 0.5)
        out["frame_ms_p90"] = percentile(times, 0.9)
    finally:
        context.close()
    context = browser.new_context(viewport=VIEWPORT)
    try:
        pg = context.new_page()
        pg.goto(f"{url}/?head={head}&lod=0&transport=websocket")  # the budget on, as shipped
        pg.wait_for_function("avatarDemo.client.state === 'active'", timeout=120000)
        pg.evaluate(
            "window.__lods = []; avatarDemo.client.addEventListener('lod', (e) =>"
            " __lods.push({lod: e.detail.lod, user: e.detail.user,"
            " fps: avatarDemo.client.stats.renderFps}))"
        )
        pg.wait_for_timeout(int(budget_s * 1000))
        out["budget_steps"] = pg.evaluate("__lods")
        out["budget_final_lod"] = pg.evaluate("avatarDemo.client.lod")
        out["budget_note_shown"] = pg.locator("#lod-note").is_visible()
    finally:
        context.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--budget-seconds", type=float, default=12.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    server = ServerProcess().wait_ready()
    results = []
    try:
        with sync_playwright() as p:
            browser = launch(p)
            try:
                for head in HEADS:
                    t = time.monotonic()
                    results.append(
                        measure_head(browser, server.url, head, args.frames, args.budget_seconds)
                    )
                    results[-1]["wall_s"] = time.monotonic() - t
            finally:
                browser.close()
    finally:
        server.stop()
    budget = f"LOD budget (on, {args.budget_seconds:.0f} s)"
    print(f"{'head':5} {'GLB':>9} {'model':>8} {'1st face':>9} {'fps':>5} {'frame med':>10} "
          f"{'p90':>7}  {budget}")  # fmt: skip
    for r in results:
        steps = " -> ".join(f"{s['lod']}@{s['fps']:.0f}fps" for s in r["budget_steps"]) or "none"
        print(
            f"{r['head']:5} {r['glb_bytes'] / 1024:7.0f}Ki {r['modelMs']:6.0f}ms "
            f"{r['firstFaceMs']:7.0f}ms {r['render_fps']:5.1f} {r['frame_ms_median']:8.1f}ms "
            f"{r['frame_ms_p90']:5.1f}ms  steps: {steps}; ends at LOD {r['budget_final_lod']}"
            f"{' (note shown)' if r['budget_note_shown'] else ''}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
