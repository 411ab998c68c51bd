// VoicePlayer with a fake AudioContext and AudioDecoder: the schedule (back to back, mapped
// through the jitter buffer's clock and the output latency), loss, drift, VOICE_CUT, the
// autoplay lock, volume, events, the bounded queue; and the client wiring it to the stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { VoicePlayer, preferredAudio } from '../src/voice.js';
import { AvatarStreamClient } from '../src/client.js';
import { Decoder, MsgType, Op } from '../src/protocol.js';

// ------------------------------------------------------------------ fakes

class FakeParam {
  constructor(v) { this.value = v; }
  setTargetAtTime(v) { this.value = v; }
}

class FakeSource {
  constructor(ctx) { this.ctx = ctx; this.when = NaN; this.offset = 0; this.stopAt = NaN; this.buffer = null; this.onended = null; }
  connect(node) { this.dest = node; }
  start(when, offset = 0) { this.when = when; this.offset = offset; this.ctx.started.push(this); }
  stop(at) { this.stopAt = at; }
}

/** An AudioContext whose clock the test moves; ctx time = perf time * (1 + ppm) + base. */
class FakeAudioContext extends EventTarget {
  constructor({ state = 'running', outputLatency = 0.02, baseLatency = 0.005, outputTimestamp = true, ppm = 0 } = {}) {
    super();
    Object.assign(this, { state, outputLatency, baseLatency, outputTimestamp, ppm });
    this.perf = 0;
    this.base = 5; // the context clock started 5 s before performance time 0... any offset works
    this.started = [];
    this.destination = { kind: 'destination' };
  }
  get currentTime() { return this.base + (this.perf / 1000) * (1 + this.ppm * 1e-6); }
  getOutputTimestamp() {
    if (!this.outputTimestamp) return undefined;
    // what is heard now was rendered outputLatency ago
    return { contextTime: this.currentTime - this.outputLatency, performanceTime: this.perf };
  }
  /** Context seconds heard at performance time `ms`. */
  heardAt(ms) { return this.base + (ms / 1000) * (1 + this.ppm * 1e-6) - this.outputLatency; }
  createGain() { return { gain: new FakeParam(1), connect() {}, disconnect() {} }; }
  createBuffer(channels, length, rate) {
    return { length, sampleRate: rate, duration: length / rate, data: null, copyToChannel(d) { this.data = d.slice(); } };
  }
  createBufferSource() { return new FakeSource(this); }
  async resume() { this.state = 'running'; this.dispatchEvent(new Event('statechange')); }
}

/** WebCodecs' AudioDecoder: outputs 960 samples per chunk asynchronously, in decode order. */
class FakeAudioDecoder {
  static made = [];
  constructor({ output, error }) { this.output = output; this.error = error; this.state = 'unconfigured'; this.chunks = []; FakeAudioDecoder.made.push(this); }
  configure(config) { this.config = config; this.state = 'configured'; }
  decode(chunk) {
    this.chunks.push(chunk);
    queueMicrotask(() => this.output({
      numberOfFrames: 960, sampleRate: 48000, timestamp: chunk.timestamp,
      copyTo(dst) { dst.fill(chunk.data[0] / 255); }, close() {},
    }));
  }
  close() { this.state = 'closed'; }
}
class FakeChunk { constructor(init) { Object.assign(this, init); } }
const settle = () => new Promise((r) => setTimeout(r, 0));

const pcm = (seq, t, ms = 20, rate = 16000, value = 1000) => {
  const n = (rate * ms) / 1000;
  const payload = new Uint8Array(2 * n);
  for (let i = 0; i < n; i++) { payload[2 * i] = value & 0xff; payload[2 * i + 1] = (value >> 8) & 0xff; }
  return { seq, t, codec: 'pcm16', rate, payload };
};
const MAP = 117.5; // local ms - stream ms (the jitter buffer's offset + delay)

function player(ctxOptions = {}, options = {}) {
  const ctx = new FakeAudioContext(ctxOptions);
  const voice = new VoicePlayer(ctx, { AudioDecoderImpl: FakeAudioDecoder, EncodedAudioChunkImpl: FakeChunk, now: () => ctx.perf, ...options });
  const events = [];
  for (const type of ['voicestart', 'voicestop', 'voicecut', 'sound']) voice.addEventListener(type, (e) => events.push([type, e.detail]));
  return { ctx, voice, events };
}
const near = (a, b, eps, msg) => assert.ok(Math.abs(a - b) <= eps, `${msg}: ${a} vs ${b}`);

// ------------------------------------------------------------------ schedule

test('contiguous packets play back to back, each heard when the face shows its time', () => {
  const { ctx, voice } = player();
  voice.configure('pcm16', 16000);
  for (let k = 0; k < 5; k++) voice.push(pcm(k, 1000 + 20 * k));
  ctx.perf = 1000 + MAP - 100; // the first packet is due in 100 ms (the horizon is 200)
  voice.tick(ctx.perf, MAP);
  assert.equal(ctx.started.length, 5);
  // heard at local time t + MAP: scheduled on the context clock with the output latency taken off
  near(ctx.started[0].when, ctx.heardAt(1000 + MAP), 1e-9, 'first packet');
  for (let k = 1; k < 5; k++) near(ctx.started[k].when - ctx.started[k - 1].when, 0.02, 1e-12, 'back to back');
  assert.equal(ctx.started[0].buffer.length, 320);
  near(ctx.started[0].buffer.data[0], 1000 / 32768, 1e-9, 'pcm16 to float');
});

test('without getOutputTimestamp, currentTime minus outputLatency and baseLatency is used', () => {
  const { ctx, voice } = player({ outputTimestamp: false });
  voice.configure('pcm16', 16000);
  voice.push(pcm(0, 0));
  ctx.perf = 50;
  voice.tick(ctx.perf, MAP);
  near(ctx.started[0].when, ctx.base + (MAP - ctx.outputLatency * 1000 - ctx.baseLatency * 1000) / 1000, 1e-9, 'mapped');
});

test('only packets within the horizon are scheduled; the rest wait', () => {
  const { ctx, voice } = player({}, { horizonMs: 100 });
  voice.configure('pcm16', 16000);
  for (let k = 0; k < 50; k++) voice.push(pcm(k, 20 * k));
  ctx.perf = MAP - 10;
  voice.tick(ctx.perf, MAP);
  assert.equal(ctx.started.length, 5); // t = 0..80 (t + MAP <= now + 100 ms)
  assert.equal(voice.queue.length, 45);
});

test('a lost packet leaves 20 ms of silence and keeps the schedule; a new utterance re-anchors', () => {
  const { ctx, voice } = player();
  voice.configure('pcm16', 16000);
  for (const k of [0, 1, 3, 4]) voice.push(pcm(k, 20 * k));
  voice.push(pcm(5, 2000)); // a new utterance, much later
  ctx.perf = 1;
  voice.tick(1, MAP);
  ctx.perf = 1950;
  voice.tick(1950, MAP + 3); // the mapping moved 3 ms meanwhile (slewed)
  const w = ctx.started.map((s) => s.when);
  near(w[2] - w[1], 0.04, 1e-12, 'the lost packet keeps its slot');
  assert.equal(voice.stats.lost, 1);
  assert.equal(voice.stats.concealedMs, 20);
  near(w[4], ctx.heardAt(2000 + voice.map), 1e-9, 're-anchored on the mapped time');
});

test('no drift over 60 s of speech with jitter, 5% loss, reordering and a fast sound card', () => {
  // The context clock runs 300 ppm fast against performance.now (18 ms over 60 s); the jitter
  // buffer's mapping wanders +-4 ms; 5% of the packets are lost, some arrive late and reordered.
  // (horizon 100 ms: packets reordered by up to 280 ms still find their place)
  const { ctx, voice } = player({ ppm: 300 }, { toleranceMs: 15, horizonMs: 100 });
  voice.configure('pcm16', 16000);
  let seed = 7;
  const rand = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
  const pending = [];
  let worst = 0;
  let last = null;
  const checked = new WeakSet();
  for (let k = 0; k < 3000; k++) {
    const t = 20 * k + 40 * Math.floor(k / 150); // utterances of 3 s with 40 ms pauses
    if (rand() >= 0.05) pending.push({ at: t - 300 + rand() * 280 * (rand() < 0.1 ? 1 : 0.2), p: pcm(k & 0xffff, t) });
  }
  pending.sort((a, b) => a.at - b.at);
  const mapAt = (ms) => MAP + 4 * Math.sin(ms / 7000);
  let i = 0;
  for (let now = 0; now < 62000; now += 16.667) {
    while (i < pending.length && pending[i].at + MAP <= now) voice.push(pending[i++].p);
    ctx.perf = now;
    voice.tick(now, mapAt(now));
    for (const s of voice.sources) {
      if (checked.has(s.node)) continue;
      checked.add(s.node);
      worst = Math.max(worst, Math.abs(s.node.when - ctx.heardAt(s.t + mapAt(now))) * 1000);
      last = s;
    }
  }
  // lost 5%, and a few reordered packets arrive after their successors were scheduled
  assert.ok(ctx.started.length > 2500, `scheduled ${ctx.started.length}`);
  assert.ok(worst <= 16, `worst schedule error ${worst.toFixed(2)} ms`);
  near(last.node.when * 1000, ctx.heardAt(last.t + mapAt(62000)) * 1000, 16, 'no drift after 60 s');
  assert.ok(voice.stats.concealedMs > 0);
});

test('a late packet plays its remainder, a packet whose time has passed is dropped', () => {
  const { ctx, voice } = player();
  voice.configure('pcm16', 16000);
  voice.push(pcm(0, 0));
  voice.push(pcm(1, 20));
  ctx.perf = MAP + 10; // rendering now what is heard at MAP + 30: packet 0 past, packet 1 half
  voice.tick(ctx.perf, MAP);
  assert.equal(ctx.started.length, 1);
  assert.ok(ctx.started[0].offset > 0 && ctx.started[0].offset < 0.02);
  assert.equal(voice.stats.late, 1);
  near(ctx.started[0].offset, 0.01, 1e-9, 'the remainder');
});

// ------------------------------------------------------------------ opus

test('Opus goes through WebCodecs AudioDecoder with microsecond timestamps', async () => {
  const { ctx, voice } = player();
  assert.equal(voice.configure('opus', 48000), true);
  const dec = FakeAudioDecoder.made.at(-1);
  assert.deepEqual(dec.config, { codec: 'opus', sampleRate: 48000, numberOfChannels: 1 });
  for (let k = 0; k < 3; k++) voice.push({ seq: k, t: 500 + 20 * k, codec: 'opus', rate: 48000, payload: Uint8Array.of(50 + k, 1, 2) });
  assert.deepEqual(dec.chunks.map((c) => c.timestamp), [500000, 520000, 540000]);
  assert.equal(dec.chunks[0].type, 'key');
  ctx.perf = 500;
  voice.tick(ctx.perf, MAP);
  assert.equal(ctx.started.length, 0, 'nothing before it is decoded');
  await settle();
  voice.tick(ctx.perf, MAP);
  assert.equal(ctx.started.length, 3);
  assert.equal(ctx.started[0].buffer.length, 960);
  assert.equal(ctx.started[0].buffer.sampleRate, 48000);
  near(ctx.started[1].buffer.data[0], 51 / 255, 1e-6, 'outputs matched to their packets');
  near(ctx.started[2].when - ctx.started[0].when, 0.04, 1e-12, 'back to back');
});

test('without WebCodecs Opus cannot be configured (the client asks for PCM)', () => {
  const ctx = new FakeAudioContext();
  const voice = new VoicePlayer(ctx, { AudioDecoderImpl: undefined, EncodedAudioChunkImpl: undefined });
  assert.equal(voice.configure('opus', 48000), false);
  assert.equal(voice.configure('pcm16', 16000), true);
  assert.equal(preferredAudio({ AudioContext: class {} }), 'pcm');
  assert.equal(preferredAudio({ AudioContext: class {}, AudioDecoder: class {}, EncodedAudioChunk: class {} }), 'opus');
  assert.equal(preferredAudio({}), 'off');
});

// ------------------------------------------------------------------ cut, lock, volume, events

test('VOICE_CUT drops the queue, stops what plays at the cut time, and refuses older packets', () => {
  const { ctx, voice, events } = player();
  voice.configure('pcm16', 16000);
  for (let k = 0; k < 40; k++) voice.push(pcm(k, 20 * k));
  ctx.perf = MAP;
  voice.tick(ctx.perf, MAP); // schedules t = 0..200
  ctx.perf = MAP + 5;
  voice.tick(ctx.perf, MAP);
  assert.ok(events.some(([e]) => e === 'voicestart'));
  const scheduled = voice.sources.map((x) => ({ t: x.t, stopAt: () => x.node.stopAt }));
  voice.cut(50, 40);
  assert.equal(voice.queue.length, 0);
  const cutAt = ctx.heardAt(50 + voice.map);
  for (const s of scheduled) {
    if (s.t >= 50) assert.ok(s.stopAt() <= ctx.currentTime + 1e-9, `packet ${s.t} stopped at once`);
    else if (s.t + 20 > 50) near(s.stopAt(), cutAt, 1e-9, 'the playing packet stops at the cut');
    else assert.ok(Number.isNaN(s.stopAt()), 'packets before the cut play out');
  }
  voice.push(pcm(39, 780)); // an old packet still in flight
  voice.push(pcm(40, 1500)); // the next utterance
  assert.deepEqual(voice.queue.map((p) => p.seq), [40]);
  assert.deepEqual(events.filter(([e]) => e.startsWith('voice')).map(([e, d]) => e + (d.reason ? `:${d.reason}` : '')), ['voicestart', 'voicecut', 'voicestop:cut']);
});

test('a locked context schedules nothing and drops what passes; unlock() joins mid-packet', async () => {
  const { ctx, voice, events } = player({ state: 'suspended' }, { maxQueue: 20 });
  assert.equal(voice.soundState, 'locked');
  voice.configure('pcm16', 16000);
  for (let k = 0; k < 60; k++) voice.push(pcm(k, 20 * k));
  assert.equal(voice.queue.length, 20, 'bounded');
  assert.equal(voice.stats.overflow, 40);
  ctx.perf = MAP + 810;
  voice.tick(ctx.perf, MAP);
  assert.equal(ctx.started.length, 0);
  assert.equal(voice.queue[0].t, 800, 'packets whose time passed are dropped');
  assert.equal(await voice.unlock(), true);
  assert.deepEqual(events.filter(([e]) => e === 'sound').map(([, d]) => d.state), ['unlocked']);
  voice.tick(ctx.perf, MAP);
  assert.ok(ctx.started[0].offset > 0.005, 'joins the current packet part-way');
});

test('volume and mute set the output gain; voicestart and voicestop follow what is heard', () => {
  const { ctx, voice, events } = player({}, { hangoverMs: 100 });
  voice.volume = 0.5;
  assert.equal(voice.output.gain.value, 0.5);
  voice.muted = true;
  assert.equal(voice.output.gain.value, 0);
  voice.muted = false;
  assert.equal(voice.output.gain.value, 0.5);
  voice.volume = 7;
  assert.equal(voice.volume, 1);
  voice.configure('pcm16', 16000);
  for (let k = 0; k < 5; k++) voice.push(pcm(k, 20 * k));
  ctx.perf = 0;
  voice.tick(0, MAP);
  assert.ok(!voice.playing, 'not yet heard');
  ctx.perf = MAP + 1;
  voice.tick(ctx.perf, MAP);
  assert.ok(voice.playing);
  ctx.perf = MAP + 150;
  voice.tick(ctx.perf, MAP);
  assert.ok(voice.playing, 'within the hangover');
  ctx.perf = MAP + 300;
  voice.tick(ctx.perf, MAP);
  assert.ok(!voice.playing);
  assert.deepEqual(events.filter(([e]) => e.startsWith('voice')).map(([e]) => e), ['voicestart', 'voicestop']);
});

// ------------------------------------------------------------------ the client

const here = dirname(fileURLToPath(import.meta.url));
const audioVector = JSON.parse(readFileSync(join(here, '..', '..', '..', 'tests', 'vectors', 'audio.json'), 'utf8'));
const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));

class FakeTransport {
  constructor(kind, params) { this.kind = kind; this.params = params; this.sent = []; this.onmessage = () => {}; this.onclose = () => {}; }
  connect() { return Promise.resolve(); }
  send(b) { this.sent.push(b); }
  close() {}
}

function voiceClient(options) {
  const made = [];
  const contexts = [];
  const client = new AvatarStreamClient({
    transport: 'websocket', pingMs: 60000, budget: false, fetch: async () => ({ ok: false }),
    createTransport: (kind, params) => { const t = new FakeTransport(kind, params); made.push(t); return t; },
    createAudioContext: () => { const c = new FakeAudioContext(); contexts.push(c); return c; },
    voice: { AudioDecoderImpl: FakeAudioDecoder, EncodedAudioChunkImpl: FakeChunk },
    ...options,
  });
  return { client, made, contexts };
}

test('the client asks for its voice, plays AUDIO on the frames clock and obeys VOICE_CUT', async (t) => {
  let clock = 0;
  const { client, made, contexts } = voiceClient({ audio: 'opus', now: () => clock });
  t.after(() => client.disconnect());
  const seen = [];
  for (const type of ['voicecut', 'voiceavailable', 'voicedegraded', 'sound']) client.addEventListener(type, (e) => seen.push([type, e.detail]));
  await client.connect('http://127.0.0.1:1', 's');
  assert.equal(made[0].params.audio, 'opus');
  assert.equal(client.soundState, 'unlocked');
  const steps = audioVector.steps.slice(1, 11); // stream 7: hello (opus), frames, audio, a cut, audio
  steps.forEach((s, i) => { clock = 1000 + i; contexts[0].perf = clock; made[0].onmessage(hex(s.hex), clock); });
  await settle();
  assert.ok(seen.some(([e, d]) => e === 'voiceavailable' && d.available));
  assert.equal(client.voice.codec, 'opus');
  assert.equal(client.voice.stats.packets, 6, 'seq 0, 1, 2, 4, then the cut, then 5, 6');
  // all arrived in one burst: the cut came before 0..4 were decoded, so only 5 and 6 play
  const started = contexts[0].started;
  assert.equal(started.length, 2);
  assert.ok(started.every((x) => Number.isNaN(x.stopAt)), 'the next utterance plays');
  near(started[1].when - started[0].when, 0.02, 1e-9, 'back to back');
  near(started[0].when, contexts[0].heardAt(400 + client.voice.map), 1e-9, 'on the frames clock');
  assert.equal(client.voice.stats.cuts, 1);
  assert.ok(seen.some(([e, d]) => e === 'voicecut' && d.t === 90 && d.nextSeq === 5));
  clock = 1300;
  contexts[0].perf = clock;
  client.update(clock);
  const need = client.voice.latencyMs + client.voiceLink.playout.lateMs;
  assert.ok(client.voice.latencyMs >= 20 + 25, 'output latency and a margin');
  assert.ok(client.jitter.delayMs >= need - 5, 'the face waits for its voice (less the time its audio came early)');
  client.muted = true;
  assert.equal(client.voice.output.gain.value, 0);
  client.disconnect();
  assert.ok(seen.some(([e, d]) => e === 'voicedegraded' && d.reason === 'disconnected'));
});

test('an Opus hello without WebCodecs gets a SET_AUDIO pcm16; audio off makes no context', async (t) => {
  const { client, made } = voiceClient({ audio: 'opus', voice: { AudioDecoderImpl: undefined, EncodedAudioChunkImpl: undefined } });
  t.after(() => client.disconnect());
  await client.connect('http://127.0.0.1:1', 's');
  made[0].onmessage(hex(audioVector.steps[1].hex), 0);
  const sent = made[0].sent.map((b) => new Decoder().feed(b)).filter((r) => r.kind === 'control');
  assert.deepEqual(sent.map((r) => [r.op, r.sid, r.audio]), [[Op.SET_AUDIO, 7, 2]]);
  assert.equal(client.options.audio, 'pcm');
  const off = voiceClient({ audio: 'off' });
  await off.client.connect('http://127.0.0.1:1', 's');
  assert.equal(off.contexts.length, 0);
  assert.equal(off.made[0].params.audio, 'off');
  assert.equal(off.client.soundState, 'unavailable');
  assert.equal(MsgType.AUDIO, 10);
  client.disconnect();
  off.client.disconnect();
});

test('the jitter buffer keeps a minimum delay for the voice across frame-rate changes', async () => {
  const { JitterBuffer } = await import('../src/jitter.js');
  const jb = new JitterBuffer(1, { frameIntervalMs: 1000 / 60 });
  jb.setMinDelay(70);
  assert.equal(jb.delayMs, 70);
  jb.setFrameInterval(100); // LOD 3, 10 fps: one interval is longer than the voice needs
  assert.equal(jb.delayMs, 100);
  jb.setFrameInterval(1000 / 60);
  assert.equal(jb.delayMs, 70);
  jb.push(0, [0], [], 1000);
  jb.push(100, [1], [], 1100);
  assert.equal(jb.renderTime(1120), 50, 'shown 70 ms after the fastest arrival');
});

test('an Opus decoder that fails mid-stream makes the client ask for PCM, once', async (t) => {
  class FailingDecoder extends FakeAudioDecoder {
    decode() { queueMicrotask(() => this.error(new Error('broken'))); }
  }
  let clock = 0;
  const { client, made, contexts } = voiceClient({ audio: 'opus', now: () => clock, voice: { AudioDecoderImpl: FailingDecoder, EncodedAudioChunkImpl: FakeChunk } });
  t.after(() => client.disconnect());
  const errors = [];
  client.addEventListener('error', (e) => errors.push(e.detail.reason));
  await client.connect('http://127.0.0.1:1', 's');
  const steps = audioVector.steps.slice(1, 6); // hello (opus), keyframe, audio 0..2
  steps.forEach((s, i) => { clock = 1000 + i; contexts[0].perf = clock; made[0].onmessage(hex(s.hex), clock); });
  await settle();
  made[0].onmessage(hex(audioVector.steps[7].hex), 1010); // more audio after the failure
  made[0].onmessage(hex(audioVector.steps[7].hex), 1011);
  const sent = made[0].sent.map((b) => new Decoder().feed(b)).filter((r) => r.kind === 'control');
  assert.deepEqual(sent.map((r) => [r.op, r.audio]), [[Op.SET_AUDIO, 2]]);
  assert.equal(client.voice.stats.decodeErrors, 1);
  assert.ok(errors.some((e) => e.includes('Opus decoder failed')));
});
