// AvatarStreamClient with fake transports: fallback, WebRTC retry, reconnect, fatal closes,
// LOD control, and values flowing through the jitter buffer into a bound object.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { BufferGeometry, Float32BufferAttribute, Group, Mesh } from 'three';
import { AvatarStreamClient } from '../src/client.js';
import { Op, Decoder, encodePong } from '../src/protocol.js';

const here = dirname(fileURLToPath(import.meta.url));
const vector = JSON.parse(readFileSync(join(here, '..', '..', '..', 'tests', 'vectors', 'chained_8bit.json'), 'utf8'));
const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
const STEPS = vector.steps.filter((s) => s.expect && ['hello', 'frame'].includes(s.expect.kind)).map((s) => hex(s.hex));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class FakeTransport {
  constructor(kind, fail) {
    this.kind = kind;
    this.fail = fail;
    this.sent = [];
    this.closed = false;
    this.onmessage = () => {};
    this.onclose = () => {};
  }
  connect() { return this.fail ? Promise.reject(new Error(`${this.kind} refused`)) : Promise.resolve(); }
  send(b) { this.sent.push(b); }
  close() { this.closed = true; }
  deliverAll(t0 = 0) { STEPS.forEach((b, i) => this.onmessage(b, t0 + i * 17)); }
  drop(code = 1006) { this.onclose({ code, reason: 'test' }); }
}

/** A client whose transports come from `plan` (kind -> list of fail flags, consumed in order). */
function fakeClient(plan, options = {}) {
  const made = [];
  const client = new AvatarStreamClient({
    reconnect: { initialMs: 5, maxMs: 20, jitter: 0 },
    rtcRetry: { initialMs: 15, maxMs: 30, jitter: 0 },
    pingMs: 60000,
    budget: false,
    fetch: async () => ({ ok: false }),
    createTransport: (kind) => {
      const fail = (plan[kind] ?? []).length ? plan[kind].shift() : true;
      const t = new FakeTransport(kind, fail);
      made.push(t);
      return t;
    },
    ...options,
  });
  const states = [];
  client.addEventListener('state', (e) => states.push(e.detail.state));
  return { client, made, states };
}

test('WebRTC failure falls back to WebSocket, then WebRTC is retried and takes over', async () => {
  const { client, made, states } = fakeClient({ webrtc: [true, false], websocket: [false] });
  const fallbacks = [];
  client.addEventListener('fallback', (e) => fallbacks.push(e.detail));
  await client.connect('http://127.0.0.1:1', 's1');
  assert.equal(client.transportKind, 'websocket');
  assert.equal(fallbacks.length, 1);
  made[1].deliverAll();
  assert.deepEqual(states, ['connecting', 'ready', 'active']);
  await sleep(40);
  assert.equal(client.transportKind, 'webrtc');
  assert.ok(made[1].closed, 'the WebSocket is closed after the switch');
  client.disconnect();
  assert.equal(client.state, 'disconnected');
});

test('a dropped connection reconnects with backoff; a healthy stream resets the backoff', async () => {
  const { client, made, states } = fakeClient({ websocket: [false, true, false] }, { transport: 'websocket' });
  const reconnects = [];
  client.addEventListener('reconnect', (e) => reconnects.push(e.detail));
  await client.connect('http://127.0.0.1:1', 's1');
  made[0].deliverAll();
  made[0].drop(1006);
  assert.equal(client.state, 'disconnected');
  await sleep(60);
  assert.equal(made.length, 3, 'one failed attempt, then a successful one');
  assert.deepEqual(reconnects.map((r) => r.delay), [5, 10]);
  assert.equal(client.stats.reconnects, 2);
  assert.equal(client.transportKind, 'websocket');
  made[2].deliverAll(10000);
  assert.equal(client.state, 'active');
  assert.equal(client.reconnectBackoff.attempts, 0);
  assert.ok(states.includes('disconnected') && states.at(-1) === 'active');
  client.disconnect();
});

test('close codes that retrying cannot fix end in error without reconnecting', async () => {
  const { client, made } = fakeClient({ websocket: [false, false] }, { transport: 'websocket' });
  const errors = [];
  client.addEventListener('error', (e) => errors.push(e.detail));
  await client.connect('http://127.0.0.1:1', 'nope');
  made[0].drop(4404);
  await sleep(30);
  assert.equal(client.state, 'error');
  assert.equal(made.length, 1);
  assert.ok(errors[0].fatal);
});

test('frames flow into the bound object; LOD changes are sent as SET_LOD', async () => {
  const { client, made } = fakeClient({ websocket: [false] }, { transport: 'websocket' });
  const g = new BufferGeometry();
  g.setAttribute('position', new Float32BufferAttribute(new Float32Array(9), 3));
  g.morphAttributes.position = ['jawOpen', 'eyeBlinkLeft'].map((n) => {
    const a = new Float32BufferAttribute(new Float32Array(9), 3);
    a.name = n;
    return a;
  });
  const mesh = new Mesh(g);
  const root = new Group();
  root.add(mesh);
  await client.connect('http://127.0.0.1:1', 's1');
  const bound = new Promise((r) => client.addEventListener('bound', r, { once: true }));
  client.bind(root, { rig: null });
  made[0].deliverAll(0);
  await bound;
  // sample exactly at the newest frame's render time: the values are that frame's
  const jb = client.jitter;
  const applied = client.update(jb.newestT + jb.offset + jb.delayMs);
  assert.equal(applied, true);
  const dec = new Decoder();
  let final;
  for (const b of STEPS) { const r = dec.feed(b); if (r.kind === 'frame') final = dec.stream(r.sid); }
  const jaw = client.hello.morphNames.indexOf('jawOpen');
  assert.ok(final.morphs[jaw] > 0, 'the vector opens the jaw');
  assert.ok(Math.abs(client.values[jaw] - final.morphs[jaw]) < 1e-6);
  assert.equal(mesh.morphTargetInfluences[0], client.values[jaw]);
  assert.ok(client.stats.framesReceived > 10);
  assert.equal(client.stats.framesSkipped, 0);
  client.setLod(2);
  const sent = made[0].sent.at(-1);
  assert.deepEqual(Array.from(sent), [0x94, 4, Op.SET_LOD, client.hello.sid, 2]);
  client.disconnect();
});

test('a broken delta chain asks the server for a keyframe', async () => {
  const { client, made } = fakeClient({ websocket: [false] }, { transport: 'websocket' });
  await client.connect('http://127.0.0.1:1', 's1');
  const t = made[0];
  t.onmessage(STEPS[0], 0); // hello
  t.onmessage(STEPS[1], 1); // keyframe seq 0
  t.onmessage(STEPS[2], 2); // delta seq 1
  t.onmessage(STEPS[4], 3); // delta seq 3 against seq 2 (chained): decoder asks for a keyframe
  assert.equal(client.stats.keyframesRequested, 1);
  assert.deepEqual(Array.from(t.sent.at(-1)).slice(0, 3), [0x94, 4, Op.REQUEST_KEYFRAME]);
  client.disconnect();
});

test('after the stream was up, "no such session" (a restarted server) is retried, not fatal', async () => {
  const { client, made } = fakeClient({ websocket: [false, false, false] }, { transport: 'websocket' });
  await client.connect('http://127.0.0.1:1', 's1');
  made[0].deliverAll();
  made[0].drop(1006);
  await sleep(20);
  made[1].drop(4404); // the session is not back yet
  assert.notEqual(client.state, 'error');
  await sleep(40);
  assert.equal(made.length, 3);
  made[2].deliverAll(5000);
  assert.equal(client.state, 'active');
  made[2].drop(4410); // deleted on purpose: stop
  assert.equal(client.state, 'error');
  client.disconnect();
});

test('stats are reported once a second and a slow page makes the budget ask for a coarser LOD', async (t) => {
  let clock = 0;
  const { client, made } = fakeClient({ websocket: [false] }, {
    transport: 'websocket', budget: { minFps: 45, downAfterMs: 2000 }, stallMs: 60000, now: () => clock,
  });
  t.after(() => client.disconnect());
  const stats = [];
  const lods = [];
  client.addEventListener('stats', (e) => stats.push(e.detail));
  client.addEventListener('lod', (e) => lods.push(e.detail));
  await client.connect('http://127.0.0.1:1', 's1');
  made[0].deliverAll(0);
  assert.equal(client.state, 'active');
  for (clock = 0; clock <= 3000; clock += 100) client.update(clock); // 10 fps
  assert.deepEqual(stats.map((s) => Math.round(s.renderFps)), [10, 10, 10]);
  assert.notEqual(stats[0], client.stats, 'each event carries a copy');
  assert.deepEqual(lods, [{ lod: 1, user: false }], 'over budget for 2 s: one level coarser');
  assert.deepEqual(Array.from(made[0].sent.at(-1)), [0x94, 4, Op.SET_LOD, client.hello.sid, 1]);
  assert.equal(client.budget.finestLod, 0, 'the budget may come back to the level the user chose');
});

test('pings measure the round trip and the server clock; server pings are answered', async (t) => {
  let clock = 1000;
  const { client, made } = fakeClient({ websocket: [false] }, { transport: 'websocket', pingMs: 5, now: () => clock });
  t.after(() => client.disconnect());
  await client.connect('http://127.0.0.1:1', 's1');
  await sleep(15);
  const dec = new Decoder();
  const sentPings = made[0].sent.filter((b) => dec.feed(b).kind === 'ping');
  const pings = sentPings.map((b) => dec.feed(b));
  assert.ok(pings.length >= 1);
  assert.equal(pings[0].t, 1000, 'stamped with the local clock');
  clock = 1040;
  made[0].onmessage(encodePong(pings[0].nonce, 90020), clock);
  assert.equal(client.stats.rttMs, 40);
  assert.equal(client.clockOffset, 90020 - 1020);
  made[0].onmessage(encodePong(pings[0].nonce, 1), clock); // answered already: ignored
  assert.equal(client.clockOffset, 89000);
  made[0].deliverAll(1050); // frames stamped on the server clock: latency = arrival + offset - t
  assert.ok(Number.isFinite(client.stats.latencyMs));
  const before = made[0].sent.length;
  made[0].onmessage(sentPings[0], clock); // the same bytes as a PING from the server
  const reply = dec.feed(made[0].sent[before]);
  assert.equal(made[0].sent.length, before + 1);
  assert.deepEqual([reply.kind, reply.nonce, reply.t], ['pong', pings[0].nonce, 1040]);
});
