// The bundled demo page: a head, a text box that makes it speak, emotion buttons, a LOD
// selector, a transport indicator and an overlay with the stream's figures.
//
// URL parameters:
//   session=ID        join this session instead of creating one
//   head=ict|cc4      the bundled head: ict (default: ict-head.glb, rig ict-arkit, built from the
//                     ICT Face Model) or cc4 (head.glb, rig cc4-extended, CC4-named morphs)
//   model=URL rig=N   load your own GLB and create the session with rig N (default cc4-extended)
//   transport=websocket|webrtc|auto   (default auto: WebRTC, falling back to WebSocket)
//   lod=0..3  token=JWT  server=http://host:port (default: this page's origin)
//   preview=Name:0.8,Other:1   no server: pose the model with these morphs (for checking a model)
//   budget=off        keep the chosen LOD (no automatic LOD budget)
//   audio=opus|pcm|off the voice (default: opus where WebCodecs decodes it, else pcm)
//
// window.avatarDemo exposes the client and a few hooks the browser tests use: holdWhen()
// (freeze the pose once a condition on the morph values holds), regions() (screen boxes of the
// mouth and eyes) and measure() (decode + apply cost per frame on recorded traffic); onFrame,
// if set, is called after every rendered frame's update (the voice sync test samples there).

import * as THREE from 'three';
import { GLTFLoader } from 'three/examples/jsm/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/examples/jsm/controls/OrbitControls.js';
import { AvatarStreamClient, Decoder, RigBinding } from '../src/index.js';

/* global __AVATAR_RIGS__ */
const BUNDLED_RIGS = typeof __AVATAR_RIGS__ !== 'undefined' ? __AVATAR_RIGS__ : {};

const params = new URLSearchParams(location.search);
const server = params.get('server') || location.origin;
const HEADS = { ict: { model: 'ict-head.glb', rig: 'ict-arkit' }, cc4: { model: 'head.glb', rig: 'cc4-extended' } };
const head = HEADS[params.get('head') ?? ''] ?? HEADS.ict;
const rigName = params.get('rig') || (params.has('model') ? 'cc4-extended' : head.rig);
const modelUrl = params.get('model') || head.model;
const token = params.get('token') || '';
let transport = params.get('transport') || 'auto';
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ scene

const canvas = $('view');
const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(Math.min(devicePixelRatio, 2));
renderer.outputColorSpace = THREE.SRGBColorSpace;
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x2a2f3a);
const camera = new THREE.PerspectiveCamera(28, 1, 0.01, 10);
scene.add(new THREE.HemisphereLight(0xffffff, 0x445066, 1.6));
const key = new THREE.DirectionalLight(0xffffff, 2.2);
key.position.set(0.6, 0.8, 1.2);
scene.add(key);
const fill = new THREE.DirectionalLight(0xbfd4ff, 0.8);
fill.position.set(-1, 0.2, 0.6);
scene.add(fill);
const controls = new OrbitControls(camera, canvas);
controls.enableDamping = true;
controls.enablePan = false;

let avatar = null;
let frameTarget = new THREE.Vector3();
let frameRadius = 0.15;

function fitCamera() {
  const { clientWidth: w, clientHeight: h } = canvas;
  if (!w || !h) return;
  renderer.setSize(w, h, false);
  camera.aspect = w / h;
  const vfov = THREE.MathUtils.degToRad(camera.fov);
  const hfov = 2 * Math.atan(Math.tan(vfov / 2) * camera.aspect);
  const dist = frameRadius / Math.sin(Math.min(vfov, hfov) / 2);
  camera.position.set(frameTarget.x, frameTarget.y, frameTarget.z + dist);
  camera.near = dist / 50;
  camera.far = dist * 10;
  camera.updateProjectionMatrix();
  controls.target.copy(frameTarget);
  controls.update();
}
new ResizeObserver(fitCamera).observe(canvas);

async function loadModel(url) {
  const gltf = await new GLTFLoader().loadAsync(url);
  const root = gltf.scene;
  scene.add(root);
  root.updateMatrixWorld(true);
  // Frame the head: the bone named like a head if there is one, else the whole model.
  const box = new THREE.Box3().setFromObject(root);
  const size = box.getSize(new THREE.Vector3());
  const head = root.getObjectByName('CC_Base_Head') || root.getObjectByName('Head') || root.getObjectByName('head');
  const frame = root.userData?.frame; // scene extras of a head that says how to frame it
  if (frame) {
    frameTarget.fromArray(frame.target);
    frameRadius = frame.radius;
  } else if (head && size.y > 0.6) {
    head.getWorldPosition(frameTarget);
    frameTarget.y += 0.08;
    frameRadius = 0.16;
  } else {
    box.getCenter(frameTarget);
    frameRadius = Math.max(size.x, size.y) * 0.55;
  }
  if (url === 'head.glb') frameTarget.y = -0.03;
  fitCamera();
  return root;
}

// ------------------------------------------------------------------ REST

async function api(path, body) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(new URL(path, server), { method: 'POST', headers, body: JSON.stringify(body) });
  const data = res.status === 204 ? {} : await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${path}: ${res.status} ${data.detail ?? ''}`);
  return data;
}

// ------------------------------------------------------------------ client and UI

const client = new AvatarStreamClient({
  transport, lod: Number(params.get('lod') || 0), token, rigFallback: BUNDLED_RIGS,
  ...(params.get('budget') === 'off' ? { budget: false } : {}),
  ...(['opus', 'pcm', 'off'].includes(params.get('audio')) ? { audio: params.get('audio') } : {}),
});
const live = $('live');
const announce = (text) => { if (live.textContent !== text) live.textContent = text; };
let session = params.get('session') || '';

client.addEventListener('state', (e) => { $('st-state').textContent = e.detail.state; });
client.addEventListener('transport', (e) => { $('st-transport').textContent = e.detail.transport === 'webrtc' ? 'WebRTC' : 'WebSocket'; });
client.addEventListener('fallback', (e) => console.info('avatar: WebRTC unavailable, using WebSocket:', e.detail.reason));
client.addEventListener('lod', (e) => { $('lod').value = String(e.detail.lod); showLodNote(e.detail); });
client.addEventListener('session', (e) => { if (e.detail.state === 'thinking') announce('thinking'); else if (!client.speaking) announce(''); });
client.addEventListener('speaking', (e) => announce(e.detail.speaking ? 'speaking' : ''));
client.addEventListener('error', (e) => {
  console.warn('avatar:', e.detail.reason);
  if (e.detail.fatal) announce(`connection error: ${e.detail.reason}`);
});

$('controls').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = $('say').value.trim();
  if (!text || !session) return;
  client.unlockAudio().catch(() => {}); // pressing Enter or Speak is a gesture: sound may start
  try {
    // no delay_ms: the server sends the first packets a little ahead (its default lead), and
    // the client plays them as soon as its audio output allows
    await api(`sessions/${encodeURIComponent(session)}/speak`, { text });
    $('say').select();
  } catch (err) { announce(String(err.message)); }
});
for (const b of document.querySelectorAll('button.emotion')) {
  b.addEventListener('click', () => {
    if (session) api(`sessions/${encodeURIComponent(session)}/emotion`, { emotion: b.dataset.emotion, intensity: 1, transition_ms: 300 }).catch((err) => announce(String(err.message)));
  });
}
$('lod').addEventListener('change', (e) => client.setLod(Number(e.target.value)));
$('force-ws').checked = transport === 'websocket';
$('force-ws').addEventListener('change', (e) => {
  transport = e.target.checked ? 'websocket' : 'auto';
  const u = new URL(location.href);
  if (e.target.checked) u.searchParams.set('transport', 'websocket'); else u.searchParams.delete('transport');
  history.replaceState(null, '', u);
  if (session) client.connect(server, session, { transport }).catch(() => {});
});

// Sound: browsers keep it off until a gesture (the autoplay rule), so the page says so and
// offers a button; speaking from the text box unlocks it too.
function showSound() {
  const state = client.soundState;
  $('sound-unlock').hidden = state !== 'locked';
  const mute = $('mute');
  mute.textContent = client.muted ? 'Unmute voice' : 'Mute voice';
  mute.setAttribute('aria-pressed', String(client.muted));
  mute.setAttribute('aria-label', `${client.muted ? 'Unmute' : 'Mute'} the avatar's voice (Alt+M)`);
  mute.disabled = state === 'unavailable';
  $('volume').disabled = state === 'unavailable';
  $('sound-state').textContent = { locked: 'sound is off until you click', unlocked: client.muted ? 'muted' : 'sound on', unavailable: client.options.audio === 'off' ? 'voice off' : 'no sound in this browser' }[state];
}
client.addEventListener('sound', showSound);
client.addEventListener('voicestart', () => { $('st-voice').textContent = 'speaking'; });
client.addEventListener('voicestop', (e) => { $('st-voice').textContent = e.detail.reason === 'cut' ? 'cut' : 'idle'; });
$('sound-unlock').addEventListener('click', () => client.unlockAudio().then((ok) => announce(ok ? 'sound on' : 'sound is still off')));
$('mute').addEventListener('click', () => { client.muted = !client.muted; showSound(); });
$('volume').addEventListener('input', (e) => { client.volume = Number(e.target.value) / 100; });

// The LOD budget steps down on a slow machine (fewer morphs, lower fps): say so, and offer to
// keep full detail (the budget off, back to the level the user chose).
let chosenLod = client.lod;
function showLodNote({ lod, user }) {
  if (user) chosenLod = lod;
  const reduced = !user && lod > chosenLod;
  $('lod-note').hidden = !reduced;
  if (reduced) {
    const fps = client.stats.renderFps.toFixed(0);
    $('lod-note-text').textContent = `Detail reduced to LOD ${lod} (this device renders ${fps} fps): fewer face morphs are animated, so expressions look simpler.`;
  }
}
$('keep-detail').addEventListener('click', () => {
  client.budget = null;
  client.setLod(chosenLod);
  $('lod-note').hidden = true;
});

function toggleAvatar() {
  const shown = canvas.hidden;
  canvas.hidden = !shown;
  $('placeholder').hidden = shown;
  $('toggle').setAttribute('aria-pressed', String(shown));
  $('toggle').textContent = shown ? 'Hide avatar' : 'Show avatar';
  $('toggle').setAttribute('aria-label', `${shown ? 'Hide' : 'Show'} the avatar (Alt+V)`);
}
$('toggle').addEventListener('click', toggleAvatar);
document.addEventListener('keydown', (e) => {
  if (!e.altKey) return;
  if (e.code === 'KeyV') { e.preventDefault(); toggleAvatar(); }
  else if (e.code === 'KeyQ') { e.preventDefault(); client.setLod((client.lod + 1) % 4); }
  else if (e.code === 'KeyM') { e.preventDefault(); client.muted = !client.muted; showSound(); }
});

// ------------------------------------------------------------------ overlay

setInterval(() => {
  const s = client.stats;
  $('st-fps').textContent = s.renderFps.toFixed(0);
  $('st-kbps').textContent = s.kbps.toFixed(1);
  $('st-latency').textContent = Number.isNaN(s.latencyMs) ? '–' : `${s.latencyMs.toFixed(1)} ms`;
  $('st-skipped').textContent = String(s.framesSkipped);
  $('st-lod').textContent = String(client.lod);
}, 250);

// ------------------------------------------------------------------ start

function preview(root, spec) {
  const values = Object.fromEntries(spec.split(',').filter(Boolean).map((kv) => {
    const [k, v] = kv.split(':');
    return [k, Number(v ?? 1)];
  }));
  root.traverse((o) => {
    if (!o.morphTargetDictionary) return;
    for (const [name, v] of Object.entries(values)) {
      const i = o.morphTargetDictionary[name];
      if (i !== undefined) o.morphTargetInfluences[i] = v;
    }
  });
  const rig = BUNDLED_RIGS[rigName];
  for (const drv of rig?.bone_drivers ?? []) {
    const bone = root.getObjectByName(drv.bone);
    let deg = 0;
    for (const [m, d] of Object.entries(drv.degrees_per_unit)) deg += (values[m] ?? 0) * d;
    if (bone) bone.rotateOnAxis(new THREE.Vector3(...['x', 'y', 'z'].map((a) => (a === drv.axis ? 1 : 0))), THREE.MathUtils.degToRad(deg));
  }
}

async function start() {
  const t0 = performance.now();
  avatar = await loadModel(modelUrl);
  window.avatarDemo.timing.modelMs = performance.now() - t0;
  window.avatarDemo.avatar = avatar;
  if (params.has('preview')) {
    preview(avatar, params.get('preview'));
    $('st-state').textContent = 'preview';
    window.avatarDemo.ready = true;
    return;
  }
  if (!session) {
    const created = await api('sessions', { rig: rigName });
    session = created.id;
    const u = new URL(location.href);
    u.searchParams.set('session', session);
    history.replaceState(null, '', u);
  }
  $('st-session').textContent = session;
  client.bind(avatar);
  window.avatarDemo.ready = true;
  await client.connect(server, session, { transport });
}

// ------------------------------------------------------------------ hooks for tests

let hold = null; // {test(values) -> bool, resolve}
let held = null; // {resolve, values}: frozen on a frame, resolved once that pose is drawn
let frozen = false;

/** Values by morph name (the last sampled frame). */
function named() {
  const out = {};
  const v = client.values;
  if (!v || !client.hello) return out;
  client.hello.morphNames.forEach((n, i) => { out[n] = v[i]; });
  return out;
}

/**
 * Freeze the avatar on the first received frame for which `predicate(valuesByName)` is true;
 * resolves with those values once that pose has been rendered. resume() unfreezes.
 *
 * Every received frame is tested, not the rendered samples: a blink is above 0.85 for 25-50 ms,
 * and this page renders at 12-23 fps with software GL on a 2-core machine (measured: of 14 such
 * frames received in 20 s under load, one was rendered).
 */
function holdWhen(predicate) {
  return new Promise((resolve) => { hold = { test: predicate, resolve }; });
}

client.addEventListener('frame', (e) => {
  const out = client.values;
  if (!hold || frozen || !out || !client.binding) return;
  const st = client.decoder.stream(e.detail.sid);
  const nm = st.morphs.length;
  const frame = new Float32Array(out.length);
  frame.set(st.morphs.subarray(0, Math.min(nm, frame.length)));
  if (nm < frame.length) frame.set(st.channels.subarray(0, frame.length - nm), nm);
  const byName = {};
  client.hello.morphNames.forEach((n, i) => { byName[n] = frame[i]; });
  if (!hold.test(byName)) return;
  out.set(frame);
  client.binding.apply(out);
  frozen = true;
  held = { resolve: hold.resolve, values: byName };
  hold = null;
});

/**
 * Screen boxes (CSS pixels, [x0, y0, x1, y1]) of the mouth and each eye of a bundled head:
 * from the model's scene extras (`regions`: a node and points in its space) or, for the
 * generated CC4 head, from make_head.py's proportions.
 */
function regions() {
  const spec = avatar?.userData?.regions;
  const head = avatar?.getObjectByName(spec ? spec.node : 'CC_Base_Head');
  if (!head) return null;
  const rect = canvas.getBoundingClientRect();
  const box = (points) => {
    const xs = []; const ys = [];
    for (const [x, y, z] of points) {
      const p = head.localToWorld(new THREE.Vector3(x, y, z)).project(camera);
      xs.push(rect.left + ((p.x + 1) / 2) * rect.width);
      ys.push(rect.top + ((1 - p.y) / 2) * rect.height);
    }
    return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)].map(Math.round);
  };
  if (spec) return { mouth: box(spec.mouth), eyeL: box(spec.eyeL), eyeR: box(spec.eyeR) };
  // head-bone space: the bone sits 0.10 below and 0.01 behind the head centre (make_head.py)
  const at = (x, y, z) => [x, y + 0.10, z + 0.01];
  const eye = (sx) => box([at(sx * 0.033 - 0.016, 0.006, 0.09), at(sx * 0.033 + 0.016, 0.038, 0.09)]);
  return {
    mouth: box([at(-0.032, -0.047 - 0.035, 0.09), at(0.032, -0.047 + 0.010, 0.09)]),
    eyeL: eye(1),
    eyeR: eye(-1),
  };
}

/**
 * Record the next `count` stream messages, then decode and apply them `repeat` times with a
 * fresh decoder and binding; returns microseconds per frame (decode, apply, both).
 */
function measure(count = 120, repeat = 20) {
  return new Promise((resolve) => {
    const recorded = [];
    const t = client.transport;
    const original = t.onmessage;
    t.onmessage = (bytes, arrival) => {
      recorded.push(bytes.slice());
      original(bytes, arrival);
      if (recorded.length >= count) {
        t.onmessage = original;
        resolve(replay(recorded, repeat));
      }
    };
  });
}

function replay(messages, repeat) {
  // Time whole loops (performance.now() is coarse in a page that is not cross-origin
  // isolated): decode only, then decode + copy + apply; apply is the difference.
  const hello = client.hello;
  const binding = new RigBinding(avatar, { morphNames: hello.morphNames, channelNames: hello.channelNames, rig: client.binding?.rig ?? null });
  const values = new Float32Array(hello.morphNames.length + hello.channelNames.length);
  const run = (apply) => {
    let frames = 0;
    const t0 = performance.now();
    for (let r = 0; r < repeat; r++) {
      const dec = new Decoder();
      dec.feed(client.helloBytes);
      for (const m of messages) {
        const res = dec.feed(m);
        if (res.kind !== 'frame') continue;
        frames += 1;
        if (!apply) continue;
        const st = dec.stream(res.sid);
        values.set(st.morphs);
        values.set(st.channels, st.morphs.length);
        binding.apply(values);
      }
    }
    return { frames, ms: performance.now() - t0 };
  };
  run(true); // warm up the JIT
  let decode = { ms: Infinity };
  let both = { ms: Infinity };
  for (let k = 0; k < 5; k++) { // best of five: the least disturbed run of each
    const d = run(false);
    const b = run(true);
    if (d.ms < decode.ms) decode = d;
    if (b.ms < both.ms) both = b;
  }
  binding.reset();
  const frames = both.frames;
  const decodeUs = (decode.ms * 1000) / frames;
  const totalUs = (both.ms * 1000) / frames;
  return { frames, messages: messages.length, repeat, decodeUs, applyUs: Math.max(0, totalUs - decodeUs), totalUs, bones: binding.bones.length, meshes: binding.targets.length };
}

window.avatarDemo = {
  client, scene, camera, controls, renderer, ready: false, error: null,
  named, holdWhen, regions, measure,
  resume() { frozen = false; },
  cancelHold() { hold = null; },
  /** @type {((t: number) => void) | null} */
  onFrame: null,
  /** ms since navigation: the model loaded (modelMs, its own time) and the first frame drawn with it */
  timing: { modelMs: NaN, firstFaceMs: NaN },
};
renderer.setAnimationLoop((t) => {
  if (!frozen) client.update(t);
  window.avatarDemo.onFrame?.(t);
  controls.update();
  if (!canvas.hidden) renderer.render(scene, camera);
  if (held) {
    held.resolve(held.values);
    held = null;
  }
  if (avatar && !canvas.hidden && Number.isNaN(window.avatarDemo.timing.firstFaceMs)) window.avatarDemo.timing.firstFaceMs = performance.now();
});
start().catch((err) => {
  window.avatarDemo.error = String(err?.message ?? err);
  $('st-state').textContent = 'error';
  announce(`could not start: ${window.avatarDemo.error}`);
  console.error(err);
});
