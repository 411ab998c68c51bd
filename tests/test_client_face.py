"""The default head (ICT Face Model, ``ict-head.glb`` + rig ``ict-arkit``) on the demo page, seen.

A real ``avatar-engine serve`` and Debian's Chromium (headless, software GL), at LOD 0 with the
LOD budget off. For each pose (rest, an open vowel, a bilabial, mid-blink, every emotion) the
avatar is frozen the moment the stream shows it (``avatarDemo.holdWhen``) and photographed from
the front and at three-quarters; the shots and a montage of them go to ``artifacts/face/``
(gitignored). Pixel checks on them:

* on a bilabial the lips close (next to nothing of the mouth's inside, teeth or cavity, shows
  between them), while an open vowel shows plenty;
* mid-blink the lids cover the eyes (no sclera or iris) and nothing behind the lid shows
  through (no background-coloured pixel in the eye boxes);
* in no pose does the background show through the mouth or its corners.

``docs/img/ict-head-montage.png`` is a copy of the montage this writes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from browser_support import BROWSER_SKIPS, new_page
from server_process import ServerProcess
from test_client_browser import (
    ARTIFACTS,
    VIEWPORT,
    Publisher,
    _crop,
    _hold,
    _pixels,
    _post,
    _require_animation,
    _resume,
    _session,
    browser,
)

__all__ = ["browser"]  # the browser fixture (same Chromium and flags) comes from there

# the same skips (no Chromium, no built client); more time: 15 poses, two views each, on a
# software-GL page that renders a few frames a second on a busy machine
pytestmark = [*BROWSER_SKIPS, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
OUT = ARTIFACTS / "face"
RIG = json.loads((ROOT / "src/avatar_engine/rigs/data/ict-arkit.json").read_text())
BASE_RIG = json.loads((ROOT / "src/avatar_engine/rigs/data/arkit52.json").read_text())
EMOTIONS = {**BASE_RIG["mappings"]["emotions"], **RIG["mappings"].get("emotions", {})}
BACKGROUND = np.array([0x2A, 0x2F, 0x3A])  # the page's scene background (demo/main.js)
THREE_QUARTER = 0.6  # radians of camera yaw about the face for the three-quarter view
STILL_EYES = "(v.eyeBlinkLeft ?? 1) < 0.1 && (v.eyeBlinkRight ?? 1) < 0.1"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with new_page(browser, VIEWPORT) as pg:
        yield pg


def open_face(pg: Any, server: ServerProcess, query: str = "") -> None:
    pg.goto(f"{server.url}/?budget=off&lod=0&transport=websocket{query}")
    pg.wait_for_function("window.avatarDemo && window.avatarDemo.ready", timeout=60000)
    pg.wait_for_function(
        "avatarDemo.client.state === 'active' && avatarDemo.client.binding !== null",
        timeout=30000,
    )
    assert pg.evaluate("avatarDemo.error") is None


def view(pg: Any, yaw: float) -> None:
    """Turn the camera about the framed target by `yaw` radians (0 = front), then render."""
    pg.evaluate(
        f"""(() => {{
          const {{ camera: c, controls: k }} = avatarDemo;
          const t = k.target;
          const d = Math.hypot(c.position.x - t.x, c.position.z - t.z);
          c.position.set(t.x + d * Math.sin({yaw}), t.y, t.z + d * Math.cos({yaw}));
          k.update();
        }})()"""
    )


def canvas_png(pg: Any, name: str) -> bytes:
    """The canvas's own pixels (no overlay) after two more rendered frames, saved as a PNG."""
    url: str = pg.evaluate(
        "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() =>"
        " r(avatarDemo.renderer.domElement.toDataURL('image/png')))))"
    )
    data = base64.b64decode(url.split(",", 1)[1])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.png").write_bytes(data)
    return data


SIDE_MOUTH: dict[str, int] = {}
"""Background seen through the mouth in each pose's three-quarter view (filled by both_views)."""


def both_views(pg: Any, name: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The frozen pose from the front and at three-quarters (canvas pixels), then back."""
    front = _pixels(canvas_png(pg, f"{name}_front"))
    view(pg, THREE_QUARTER)
    side = _pixels(canvas_png(pg, f"{name}_3q"))
    SIDE_MOUTH[name] = background_holes(side, boxes(pg)["mouth"], pad=4)
    view(pg, 0.0)
    return front, side


def boxes(pg: Any) -> dict[str, list[int]]:
    """Mouth and eye boxes in canvas pixels (regions() gives page pixels)."""
    r: dict[str, list[int]] = pg.evaluate("avatarDemo.regions()")
    c = pg.locator("#view").bounding_box()
    return {k: [b[0] - int(c["x"]), b[1] - int(c["y"]), b[2] - int(c["x"]), b[3] - int(c["y"])]
            for k, b in r.items()}  # fmt: skip


def inside_mouth(img: np.ndarray[Any, Any], box: list[int]) -> int:
    """Pixels of the mouth's inside between the lips: the dark cavity and tongue, or the
    (neutral, bright) teeth. Lips and skin are neither: lit, mid-bright and red-dominant."""
    return int(np.count_nonzero(inside_mask(_crop(img, box))))


def inside_mask(c: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    dark = c.max(axis=-1) < 80
    teeth = (c.min(axis=-1) > 150) & (np.ptp(c, axis=-1) < 45)
    return dark | teeth


def lip_gap(img: np.ndarray[Any, Any], box: list[int]) -> float:
    """How far apart the lips are, in pixels: per column of the middle half of the mouth box
    the longest vertical run of inside-the-mouth pixels, then the median. Closed lips leave at
    most a one-pixel contact line."""
    c = _crop(img, box)
    w = c.shape[1]
    mask = inside_mask(c[:, w // 4 : 3 * w // 4])
    runs = []
    for col in mask.T:
        best = cur = 0
        for v in col:
            cur = cur + 1 if v else 0
            best = max(best, cur)
        runs.append(best)
    return float(np.median(runs))


def background_px(img: np.ndarray[Any, Any], box: list[int], pad: int = 0) -> int:
    """Pixels within the box (grown by pad) that have the scene background's colour (a dark
    blue-grey; the lashes' dark grey is not blue)."""
    x0, y0, x1, y1 = box
    c = _crop(img, [x0 - pad, y0 - pad, x1 + pad, y1 + pad])
    near = np.abs(c - BACKGROUND).max(axis=-1) <= 8
    return int(np.count_nonzero(near & (c[..., 2] - c[..., 0] >= 8)))


def background_holes(img: np.ndarray[Any, Any], box: list[int], pad: int = 0) -> int:
    """Background-coloured pixels with the face on both sides of them in their row of the box:
    background seen through the face. At three-quarters the near cheek's silhouette runs close
    to the mouth, so background beside the face is not counted, only background inside it."""
    x0, y0, x1, y1 = box
    c = _crop(img, [x0 - pad, y0 - pad, x1 + pad, y1 + pad])
    bg = (np.abs(c - BACKGROUND).max(axis=-1) <= 8) & (c[..., 2] - c[..., 0] >= 8)
    holes = 0
    for row in bg:
        face = np.nonzero(~row)[0]
        if len(face):
            holes += int(np.count_nonzero(row[face[0] : face[-1] + 1]))
    return holes


def sclera_px(img: np.ndarray[Any, Any], box: list[int]) -> int:
    """Eye-white pixels: bright and nearly grey (lit skin is as bright, but pink)."""
    c = _crop(img, box)
    return int(np.count_nonzero((c.min(axis=-1) > 150) & (np.ptp(c, axis=-1) < 35)))


def iris_px(img: np.ndarray[Any, Any], box: list[int]) -> int:
    """Iris pixels: dark and brown (red well above blue); lashes are dark but grey."""
    c = _crop(img, box)
    return int(np.count_nonzero((c[..., 0] - c[..., 2] > 18) & (c.max(axis=-1) < 130)))


def area(box: list[int]) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def emotion_hold(emotion: str) -> str:
    """A JS predicate: the preset's strongest morph is at 70 % of its weight, not mid-blink."""
    preset = EMOTIONS[emotion]
    morph, weight = max(preset.items(), key=lambda kv: kv[1])
    lids = 0.1 + max(preset.get("eyeBlinkLeft", 0.0), preset.get("eyeBlinkRight", 0.0))
    return (
        f"(v.{morph} ?? 0) > {0.7 * weight:.3f}"
        f" && (v.eyeBlinkLeft ?? 1) < {lids} && (v.eyeBlinkRight ?? 1) < {lids}"
    )


Pixels = np.ndarray[Any, Any]


def montage(shots: dict[str, tuple[Pixels, Pixels]], path: Path) -> None:
    """Poses left to right, front view above the three-quarter view, each cropped to the head."""
    from PIL import Image, ImageDraw

    tiles = []
    for name, (front, side) in shots.items():
        pair = []
        for img in (front, side):
            h, w = img.shape[:2]
            crop = img[int(h * 0.02) : int(h * 0.78), int(w * 0.14) : int(w * 0.86)]
            size = (216, int(216 * crop.shape[0] / crop.shape[1]))
            tile = Image.fromarray(crop.astype(np.uint8)).resize(size)
            pair.append(tile)
        tiles.append((name, pair))
    tw, th = tiles[0][1][0].size
    cols = 8
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * tw, rows * (2 * th + 18)), (21, 23, 28))
    draw = ImageDraw.Draw(sheet)
    for k, (name, (front, side)) in enumerate(tiles):
        x, y = (k % cols) * tw, (k // cols) * (2 * th + 18)
        draw.text((x + 6, y + 3), name, fill=(230, 230, 230))
        sheet.paste(front, (x, y + 18))
        sheet.paste(side, (x, y + 18 + th))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def test_default_page_shows_the_ict_head_with_its_rig(page: Any, server: ServerProcess) -> None:
    open_face(page, server)
    info = page.evaluate(
        "({rig: avatarDemo.client.hello.rig, bound: avatarDemo.client.binding.boundMorphs,"
        " unbound: avatarDemo.client.binding.unboundMorphs,"
        " bones: avatarDemo.client.binding.boneNames})"
    )
    assert info["rig"] == "ict-arkit"
    assert info["bound"] == 52 and info["unbound"] == [], info
    assert {"Head", "LeftEye", "RightEye"} <= set(info["bones"])
    labels = page.locator("#toggle")
    assert labels.inner_text() == "Hide avatar"
    labels.click()
    assert page.locator("#toggle").inner_text() == "Show avatar"
    assert page.locator("#view").is_hidden()
    labels.click()
    assert not page.errors


def test_lod_budget_step_down_is_shown_and_can_be_refused(page: Any, server: ServerProcess) -> None:
    """A budget step down (forced here: a budget that wants 1000 fps) puts a note on screen;
    "Keep full detail" turns the budget off and returns to the level the user chose."""
    page.goto(f"{server.url}/?lod=0&transport=websocket")
    page.wait_for_function("window.avatarDemo && window.avatarDemo.ready", timeout=60000)
    page.wait_for_function("avatarDemo.client.state === 'active'", timeout=30000)
    page.evaluate(
        "Object.assign(avatarDemo.client.budget, {minFps: 1000, downAfterMs: 0, cooldownMs: 0})"
    )
    page.wait_for_selector("#lod-note:not([hidden])", timeout=15000)
    assert "Detail reduced to LOD" in page.locator("#lod-note-text").inner_text()
    page.click("#keep-detail")
    page.wait_for_function("avatarDemo.client.stats.lod === 0", timeout=10000)
    assert page.locator("#lod-note").is_hidden()
    assert page.evaluate("avatarDemo.client.budget") is None


def test_face_poses_pixels_and_montage(page: Any, server: ServerProcess) -> None:
    open_face(page, server)
    sid = _session(page)
    _require_animation(server, sid)
    shots: dict[str, tuple[Pixels, Pixels]] = {}
    box = boxes(page)

    _post(server, sid, "emotion", {"emotion": "neutral", "transition_ms": 0})
    _hold(page, f"(v.jawOpen ?? 1) < 0.02 && {STILL_EYES}")
    shots["rest"] = both_views(page, "rest")
    _resume(page)

    # spoken slowly (80 words a minute, the slowest the speech layer takes): a software-GL
    # page samples the stream only a few times a second, and a bilabial at the usual rate
    # lasts about a tenth of one
    _post(server, sid, "speak", {"text": "Ah, papa, ah ah.", "rate": 80})
    _hold(page, "(v.jawOpen ?? 0) > 0.35")
    shots["open vowel"] = both_views(page, "open_vowel")
    _resume(page)
    _post(server, sid, "speak", {"text": "Mom, Bob, pop, Pam, bump up a map.", "rate": 80})
    _hold(page, "(v.mouthPressLeft ?? 0) > 0.35 && (v.jawOpen ?? 1) < 0.08")
    shots["bilabial"] = both_views(page, "bilabial")
    _resume(page)

    for emotion in EMOTIONS:
        if emotion == "neutral":
            continue
        _post(server, sid, "emotion", {"emotion": emotion, "intensity": 1.0, "transition_ms": 150})
        _hold(page, emotion_hold(emotion))
        shots[emotion] = both_views(page, emotion)
        _resume(page)
    # mid-blink: a capture app holds the lids shut (a procedural blink is too quick for a
    # software-GL page that samples it at ~15 fps to catch at its deepest)
    pub = Publisher(server, sid)
    try:
        pub.pose = {"jawOpen": 0.0, "eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}
        _hold(page, "(v.eyeBlinkLeft ?? 0) > 0.95 && (v.eyeBlinkRight ?? 0) > 0.95")
        shots["blink"] = both_views(page, "blink")
        _resume(page)
    finally:
        pub.close()
    montage(shots, OUT / "montage.png")
    (OUT / "boxes.json").write_text(json.dumps(box))

    poses = ("rest", "open vowel", "bilabial", "blink")
    rest, vowel, bilabial, blink = (shots[k][0] for k in poses)
    m = box["mouth"]
    opened, closed = inside_mouth(vowel, m), inside_mouth(bilabial, m)
    # closed lips still leave their contact line, one or two pixels tall across the box
    assert opened > max(0.12 * area(m), 3 * closed), (opened, closed, area(m))
    assert closed < 0.08 * area(m), (closed, area(m))
    assert lip_gap(vowel, m) >= 4, lip_gap(vowel, m)
    assert lip_gap(bilabial, m) <= 1, lip_gap(bilabial, m)
    eyes = ("eyeL", "eyeR")
    white_open = sum(sclera_px(rest, box[e]) for e in eyes)
    iris_open = sum(iris_px(rest, box[e]) for e in eyes)
    white_shut = sum(sclera_px(blink, box[e]) for e in eyes)
    iris_shut = sum(iris_px(blink, box[e]) for e in eyes)
    assert white_open > 30 and iris_open > 60, (white_open, iris_open)
    assert white_shut < 0.05 * white_open, (white_open, white_shut)
    # what stays brown and dark on a shut eye is the shadow in the lid's crease
    assert iris_shut < 0.25 * iris_open, (iris_open, iris_shut)
    for e in eyes:
        assert background_px(blink, box[e]) == 0, e
    for name, (front, _) in shots.items():
        assert background_px(front, m, pad=6) == 0, name
    assert not any(SIDE_MOUTH.values()), SIDE_MOUTH
    assert not page.errors


def test_the_cc4_head_stays_available(page: Any, server: ServerProcess) -> None:
    """?head=cc4: the generated CC4-named head with the cc4-extended rig (shot for the docs)."""
    open_face(page, server, "&head=cc4")
    info = page.evaluate(
        "({rig: avatarDemo.client.hello.rig, bound: avatarDemo.client.binding.boundMorphs})"
    )
    assert info["rig"] == "cc4-extended"
    assert info["bound"] >= 80
    sid = _session(page)
    _require_animation(server, sid)
    shots = {}
    _hold(page, "(v.Jaw_Open ?? 1) < 0.02 && (v.Eye_Blink_L ?? 1) < 0.1")
    shots["rest (CC4 head)"] = both_views(page, "cc4_rest")
    _resume(page)
    _post(server, sid, "emotion", {"emotion": "happy", "intensity": 1.0, "transition_ms": 150})
    _hold(page, "(v.Mouth_Smile_L ?? 0) > 0.4 && (v.Eye_Blink_L ?? 1) < 0.1")
    shots["happy (CC4 head)"] = both_views(page, "cc4_happy")
    _resume(page)
    montage(shots, OUT / "montage_cc4.png")


def test_api_docs_render_offline(browser: Any, server: ServerProcess) -> None:
    """/docs is Swagger UI from the package's own files: it renders with every request that
    leaves the server refused (no CDN)."""
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    outside: list[str] = []

    def only_loopback(route: Any) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    pg = context.new_page()
    try:
        pg.goto(f"{server.url}/docs")
        pg.wait_for_selector(".opblock", timeout=30000)
        assert pg.locator(".opblock").count() > 10
        assert "avatar-engine" in pg.locator(".title").first.inner_text()
        assert outside == []
    finally:
        context.close()
