"""The bundled Three.js client in a real browser against a real ``avatar-engine serve``.

Playwright drives Debian's Chromium (``/usr/bin/chromium``, never a downloaded browser),
headless, against a server on a free loopback port. The page under test is the one the
server ships at ``/`` (``src/avatar_engine/web``, built by ``npm run build`` in
``clients/threejs``). Screenshots go to ``artifacts/`` as test artifacts.

The pixel checks read the default head's pose through the page's test hooks
(``window.avatarDemo``): ``holdWhen`` freezes the avatar the moment a condition on the morph
values holds, so the screenshot shows that pose; ``regions`` projects the mouth and eye boxes
to screen pixels. They need the engine's speech, emotion and procedural blink behind
``POST /sessions/{id}/speak`` and ``/emotion``; a server without those endpoints skips them.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from browser_support import BROWSER_SKIPS, launch, new_page, open_page
from server_process import ServerProcess

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
VIEWPORT = {"width": 480, "height": 600}
PHONE = {"width": 360, "height": 640}

pytestmark = [*BROWSER_SKIPS, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with new_page(browser, VIEWPORT) as pg:
        yield pg


def shot(pg: Any, name: str) -> bytes:
    ARTIFACTS.mkdir(exist_ok=True)
    data: bytes = pg.screenshot(path=str(ARTIFACTS / f"client_{name}.png"))
    return data


def open_demo(pg: Any, server: ServerProcess, query: str = "", transport: str = "webrtc") -> None:
    # these tests read the generated CC4 head's morph names; tests/test_client_face.py covers the
    # default (ICT) head
    pg.goto(f"{server.url}/?budget=off&head=cc4{query}")
    pg.wait_for_function("window.avatarDemo && window.avatarDemo.ready", timeout=30000)
    pg.wait_for_function(
        "avatarDemo.client.state === 'active' && avatarDemo.client.binding !== null"
        f" && avatarDemo.client.transportKind === '{transport}'",
        timeout=30000,
    )
    assert pg.evaluate("avatarDemo.error") is None


def stats(pg: Any) -> dict[str, Any]:
    result: dict[str, Any] = pg.evaluate("({...avatarDemo.client.stats})")
    return result


def wait_frames(pg: Any, n: int, timeout: float = 20000) -> None:
    base = stats(pg)["framesReceived"]
    pg.wait_for_function(f"avatarDemo.client.stats.framesReceived >= {base + n}", timeout=timeout)


# ------------------------------------------------------------------ connect and stream


def test_page_loads_and_streams_over_webrtc(page: Any, server: ServerProcess) -> None:
    open_demo(page, server)
    # Keep the stream moving: a fresh keyframe request makes the server send at least one.
    for _ in range(3):
        page.evaluate("avatarDemo.client.requestKeyframe()")
    wait_frames(page, 3)
    s = stats(page)
    assert s["transport"] == "webrtc"
    assert s["protocolErrors"] == 0
    binding = page.evaluate(
        "({bones: avatarDemo.client.binding.boneNames, "
        "bound: avatarDemo.client.binding.boundMorphs})"
    )
    assert {"CC_Base_Head", "CC_Base_JawRoot", "CC_Base_L_Eye", "CC_Base_R_Eye"} <= set(
        binding["bones"]
    )
    assert binding["bound"] >= 80
    shot(page, "webrtc")
    assert not page.errors


def test_forced_websocket(page: Any, server: ServerProcess) -> None:
    open_demo(page, server, "&transport=websocket", transport="websocket")
    for _ in range(3):
        page.evaluate("avatarDemo.client.requestKeyframe()")
    wait_frames(page, 3)
    assert stats(page)["transport"] == "websocket"
    assert page.locator("#st-transport").inner_text() == "WebSocket"
    assert page.locator("#force-ws").is_checked()
    shot(page, "websocket")
    assert not page.errors


def test_falls_back_to_websocket_when_webrtc_fails(browser: Any, server: ServerProcess) -> None:
    """transport=auto: a browser whose WebRTC cannot connect still streams, over WebSocket."""
    no_webrtc = "window.RTCPeerConnection = class { constructor() { throw new Error('no RTC'); } };"
    pg = open_page(browser, VIEWPORT, no_webrtc)
    context = pg.context
    messages: list[str] = []
    pg.on("console", lambda m: messages.append(m.text))
    try:
        open_demo(pg, server, transport="websocket")
        pg.evaluate("avatarDemo.client.requestKeyframe()")
        wait_frames(pg, 1)
        assert any("WebRTC unavailable" in m for m in messages), messages
        assert pg.locator("#st-transport").inner_text() == "WebSocket"
    finally:
        context.close()


def test_user_model_and_rig_from_the_url(page: Any, server: ServerProcess) -> None:
    """?model=URL&rig=NAME: the page loads that GLB and creates the session with that rig."""
    open_demo(page, server, "&model=head.glb&rig=cc4-standard")
    info = page.evaluate(
        "({rig: avatarDemo.client.hello.rig, bound: avatarDemo.client.binding.boundMorphs})"
    )
    assert info["rig"] == "cc4-standard"
    assert info["bound"] > 40


def test_reconnects_after_the_server_restarts(page: Any) -> None:
    """A server that goes away and comes back: the page reconnects by itself (with backoff)."""
    first = ServerProcess().wait_ready()
    try:
        open_demo(page, first)
        sid = _session(page)
        first.stop()
        page.wait_for_function(
            "['disconnected', 'connecting'].includes(avatarDemo.client.state)", timeout=10000
        )
        log = first.log_path.with_suffix(".restart.log").open("w")
        second = subprocess.Popen(first.args, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60  # a loaded machine once took 30 s to start
            while time.monotonic() < deadline:
                try:
                    if httpx.get(first.url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            # the session lived in the old process's memory: recreate it under the same id
            assert httpx.post(f"{first.url}/sessions", json={"id": sid}).status_code == 201
            page.wait_for_function(
                "avatarDemo.client.state === 'active' && avatarDemo.client.stats.reconnects > 0",
                timeout=30000,
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(10)
            log.close()
    finally:
        first.stop()


def test_lod_selector_and_keyboard(page: Any, server: ServerProcess) -> None:
    open_demo(page, server)
    page.select_option("#lod", "2")
    page.wait_for_function("avatarDemo.client.stats.lod === 2", timeout=10000)
    page.keyboard.press("Alt+KeyQ")  # cycles 2 -> 3
    page.wait_for_function("avatarDemo.client.stats.lod === 3", timeout=10000)
    assert page.locator("#lod").input_value() == "3"
    page.keyboard.press("Alt+KeyV")
    assert page.locator("#view").is_hidden()
    page.keyboard.press("Alt+KeyV")
    assert page.locator("#view").is_visible()
    for sel in ("#say", "#speak", "#lod", "#force-ws", "#toggle"):
        assert page.locator(sel).get_attribute("aria-label")
    assert page.locator("#live").get_attribute("aria-live") == "polite"


def test_live_region_announces_thinking_and_speaking(page: Any, server: ServerProcess) -> None:
    open_demo(page, server)
    sid = _session(page)
    _require_animation(server, sid)
    _post(server, sid, "state", {"state": "thinking"})
    page.wait_for_function(
        "document.getElementById('live').textContent === 'thinking'", timeout=10000
    )
    _post(server, sid, "state", {"state": "idle"})
    _post(server, sid, "speak", {"text": "Hello there, how are you today?"})
    page.wait_for_function(
        "document.getElementById('live').textContent === 'speaking'", timeout=10000
    )


def test_phone_viewport(browser: Any, server: ServerProcess) -> None:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    pg = context.new_page()
    try:
        open_demo(pg, server)
        for sel in ("#say", "#speak", "#lod", "#view"):
            box = pg.locator(sel).bounding_box()
            assert box is not None
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, sel
        assert pg.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(pg, "phone")
    finally:
        context.close()


def test_decode_apply_cost(page: Any, server: ServerProcess) -> None:
    """Decode + apply per frame, measured in the browser on recorded traffic (printed)."""
    open_demo(page, server, "&transport=websocket", transport="websocket")
    # Record keyframes and deltas: ask for keyframes while recording so there is traffic even
    # when the face is still.
    page.evaluate(
        "window.__kf = setInterval(() => avatarDemo.client.requestKeyframe(), 15);"
        "window.__m = avatarDemo.measure(60, 50);"
    )
    result = page.evaluate("window.__m.finally(() => clearInterval(window.__kf))")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "client_decode_apply.json").write_text(json.dumps(result, indent=2))
    print(
        f"\nbrowser decode+apply per frame: {result['totalUs']:.1f} us "
        f"(decode {result['decodeUs']:.1f} us, apply {result['applyUs']:.1f} us, "
        f"{result['frames']} frames)"
    )
    assert result["frames"] > 0
    assert result["totalUs"] > 0


# ------------------------------------------------------------------ pixel checks


def _post(server: ServerProcess, session: str, what: str, body: dict[str, Any]) -> None:
    r = httpx.post(f"{server.url}/sessions/{session}/{what}", json=body, timeout=10)
    if r.status_code in (404, 405) and "not_found" not in r.text:
        pytest.skip(f"this server has no POST /sessions/{{id}}/{what} yet ({r.status_code})")
    assert r.status_code < 300, r.text


def _pixels(png: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _crop(img: np.ndarray[Any, Any], box: list[int]) -> np.ndarray[Any, Any]:
    x0, y0, x1, y1 = box
    return img[max(0, y0) : y1, max(0, x0) : x1]


def mouth_dark(img: np.ndarray[Any, Any], box: list[int]) -> int:
    """Pixels of the open mouth: dark and red-dominant (the cavity), not skin or background."""
    c = _crop(img, box)
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    return int(np.count_nonzero((c.max(axis=-1) < 120) & (r > g + 15) & (r > b)))


def eye_white(img: np.ndarray[Any, Any], box: list[int]) -> int:
    """Sclera pixels: bright and neutral white (the pale skin is bright too, but pinkish)."""
    c = _crop(img, box)
    return int(np.count_nonzero((c.min(axis=-1) > 190) & (np.ptp(c, axis=-1) < 20)))


def _session(pg: Any) -> str:
    sid: str = pg.evaluate("new URL(location.href).searchParams.get('session')")
    return sid


def _hold(pg: Any, predicate: str, timeout: float = 15000) -> dict[str, float]:
    """Freeze the avatar when `predicate` (JS, on `v` = values by name) holds; screenshot-ready."""
    pg.evaluate(
        f"window.__held = null; avatarDemo.holdWhen((v) => {predicate}).then((v) => {{ "
        "window.__held = v; }); undefined"
    )
    try:
        pg.wait_for_function("window.__held !== null", timeout=timeout)
    except playwright_api.TimeoutError:
        pg.evaluate("avatarDemo.cancelHold()")
        now = pg.evaluate(
            "Object.fromEntries(Object.entries(avatarDemo.named()).filter(([, x]) => x > 0.01))"
        )
        raise AssertionError(
            f"the stream never showed {predicate} within {timeout} ms; non-zero now: {now}"
        ) from None
    values: dict[str, float] = pg.evaluate("window.__held")
    pg.wait_for_timeout(120)  # a few rendered frames of the frozen pose
    return values


def _require_animation(server: ServerProcess, session: str) -> None:
    """Skip unless the engine animates faces (speech, emotion, blink land together)."""
    r = httpx.post(f"{server.url}/sessions/{session}/speak", json={"text": ""}, timeout=10)
    if r.status_code in (404, 405) and "not_found" not in r.text:
        pytest.skip(f"this server has no face animation endpoints yet (speak: {r.status_code})")


def _resume(pg: Any) -> None:
    pg.evaluate("avatarDemo.resume()")


class Publisher:
    """Publishes one ARKit pose at 60 fps to a session over WebSocket (a capture app's role)."""

    def __init__(self, server: ServerProcess, session: str) -> None:
        from websockets.sync.client import connect

        from avatar_engine.codec.messages import encode_publish_hello

        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(f"{server.ws_url}/sessions/{session}/publish"))
        self.ws.send(encode_publish_hello(1, [], [], 60))
        self.pose: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from avatar_engine.codec.messages import encode_capture

        seq = 0
        while not self.stop.wait(1 / 60):
            self.ws.send(
                encode_capture(1, seq & 0xFFFF, seq * 16, dict(self.pose) or {"jawOpen": 0.0})
            )
            seq += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self._stack.close()


def test_captured_poses_render_on_the_head(page: Any) -> None:
    """Capture in -> engine -> stream -> browser -> pixels: jaw, blink and smile show on screen."""
    server = ServerProcess().wait_ready()  # its own server: a publisher changes the session
    open_demo(page, server)
    pub = Publisher(server, _session(page))
    try:
        # by-name captures update only the names they carry: every pose names all five
        still = dict.fromkeys(
            ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight"), 0.0
        )
        pub.pose = still
        _hold(page, "(v.Jaw_Open ?? 1) < 0.02 && (v.Eye_Blink_L ?? 1) < 0.05")
        boxes = page.evaluate("avatarDemo.regions()")
        rest = _pixels(shot(page, "capture_rest"))
        _resume(page)
        pub.pose = {**still, "jawOpen": 1.0}
        _hold(page, "(v.Jaw_Open ?? 0) > 0.9")
        jaw = _pixels(shot(page, "capture_jaw_open"))
        _resume(page)
        pub.pose = {**still, "eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}
        _hold(page, "(v.Eye_Blink_L ?? 0) > 0.9 && (v.Eye_Blink_R ?? 0) > 0.9 && v.Jaw_Open < 0.02")
        blink = _pixels(shot(page, "capture_blink"))
        _resume(page)
        pub.pose = {**still, "mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}
        _hold(page, "(v.Mouth_Smile_L ?? 0) > 0.9 && (v.Eye_Blink_L ?? 1) < 0.05")
        smile = _pixels(shot(page, "capture_smile"))
        _resume(page)
    finally:
        pub.close()
        server.stop()
    area = (boxes["mouth"][2] - boxes["mouth"][0]) * (boxes["mouth"][3] - boxes["mouth"][1])
    dark_rest, dark_jaw = mouth_dark(rest, boxes["mouth"]), mouth_dark(jaw, boxes["mouth"])
    assert dark_jaw > max(5 * dark_rest, 0.08 * area), (dark_rest, dark_jaw, area)
    white_rest = eye_white(rest, boxes["eyeL"]) + eye_white(rest, boxes["eyeR"])
    white_blink = eye_white(blink, boxes["eyeL"]) + eye_white(blink, boxes["eyeR"])
    assert white_rest > 40, white_rest
    assert white_blink < 0.25 * white_rest, (white_rest, white_blink)
    m = boxes["mouth"]
    diff = np.abs(_crop(smile, m) - _crop(rest, m)).sum(axis=-1)
    assert int(np.count_nonzero(diff > 40)) > 100


def test_mouth_opens_on_open_vowel_and_closes_on_bilabial(page: Any, server: ServerProcess) -> None:
    open_demo(page, server)
    sid = _session(page)
    box = page.evaluate("avatarDemo.regions().mouth")
    rest = mouth_dark(_pixels(shot(page, "mouth_rest")), box)
    _post(server, sid, "speak", {"text": "Ah, papa, ah ah. Bob and Pam pop up."})
    _hold(page, "(v.V_Open ?? 0) + (v.Jaw_Open ?? 0) > 0.6")
    box = page.evaluate("avatarDemo.regions().mouth")
    open_px = mouth_dark(_pixels(shot(page, "mouth_open_vowel")), box)
    _resume(page)
    _hold(page, "(v.V_Explosive ?? 0) > 0.6 && (v.V_Open ?? 0) < 0.2 && (v.Jaw_Open ?? 0) < 0.2")
    box = page.evaluate("avatarDemo.regions().mouth")
    closed_px = mouth_dark(_pixels(shot(page, "mouth_bilabial")), box)
    _resume(page)
    area = (box[2] - box[0]) * (box[3] - box[1])
    assert open_px > max(4 * closed_px, 0.04 * area), (rest, open_px, closed_px, area)
    assert closed_px < 0.03 * area, (closed_px, area)


def test_eyes_close_on_blink(page: Any, server: ServerProcess) -> None:
    open_demo(page, server)
    _require_animation(server, _session(page))
    _hold(page, "(v.Eye_Blink_L ?? 1) < 0.05 && (v.Eye_Blink_R ?? 1) < 0.05", timeout=20000)
    boxes = page.evaluate("avatarDemo.regions()")
    img = _pixels(shot(page, "eyes_open"))
    open_px = eye_white(img, boxes["eyeL"]) + eye_white(img, boxes["eyeR"])
    _resume(page)
    _hold(page, "(v.Eye_Blink_L ?? 0) > 0.85 && (v.Eye_Blink_R ?? 0) > 0.85", timeout=20000)
    boxes = page.evaluate("avatarDemo.regions()")
    img = _pixels(shot(page, "eyes_blink"))
    closed_px = eye_white(img, boxes["eyeL"]) + eye_white(img, boxes["eyeR"])
    _resume(page)
    assert open_px > 40, open_px
    assert closed_px < 0.25 * open_px, (open_px, closed_px)


def test_emotion_changes_the_face(page: Any, server: ServerProcess) -> None:
    open_demo(page, server)
    sid = _session(page)
    _post(server, sid, "emotion", {"emotion": "neutral", "transition_ms": 0})
    _hold(page, "(v.Mouth_Smile_L ?? 0) < 0.05 && (v.Eye_Blink_L ?? 0) < 0.1")
    boxes = page.evaluate("avatarDemo.regions()")
    neutral = _pixels(shot(page, "emotion_neutral"))
    _resume(page)
    _post(server, sid, "emotion", {"emotion": "happy", "intensity": 1.0, "transition_ms": 100})
    _hold(page, "(v.Mouth_Smile_L ?? 0) > 0.4 && (v.Eye_Blink_L ?? 0) < 0.1")
    happy = _pixels(shot(page, "emotion_happy"))
    _resume(page)
    m = boxes["mouth"]
    face = [m[0] - 40, boxes["eyeL"][1] - 20, m[2] + 40, m[3] + 10]
    diff = np.abs(_crop(happy, face) - _crop(neutral, face)).sum(axis=-1)
    changed = int(np.count_nonzero(diff > 40))
    assert changed > 150, changed
