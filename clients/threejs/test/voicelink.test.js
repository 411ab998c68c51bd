// VoiceLink on its own, with a stand-in client (the public members it reads) and a stand-in
// player: when the avatar counts as carrying the voice, which AUDIO reaches the player, and the
// one-time switch to PCM when Opus cannot be decoded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AudioCodec, Op } from '../src/protocol.js';
import { VoiceLink } from '../src/voicelink.js';

/** The client as VoiceLink sees it; `events` records what it emits, `sent` what it sends. */
function fakeHost(fields = {}) {
  const host = new EventTarget();
  host.events = [];
  host.sent = [];
  for (const type of ['voiceavailable', 'voicedegraded', 'error', 'sound']) host.addEventListener(type, (e) => host.events.push([type, e.detail]));
  Object.assign(host, {
    options: { audio: 'opus' }, now: () => 0, hello: { sid: 7, audio: 'opus', audioRate: 48000 }, state: 'active',
    transport: { send: (b) => host.sent.push(Array.from(b)) }, ...fields,
  });
  return host;
}

/** The part of a VoicePlayer VoiceLink drives. */
function fakePlayer(fields = {}) {
  const p = { soundState: 'unlocked', codec: 'opus', decoder: {}, latencyMs: 40, busy: false, pushed: [], ticks: [], cuts: [] };
  return Object.assign(p, {
    push: (a) => p.pushed.push(a), tick: (now, map) => p.ticks.push([now, map]), cut: (t, seq) => p.cuts.push([t, seq]),
    reset() {}, close() {}, ...fields,
  });
}

test('available only with a player, a voiced hello, unlocked sound and frames flowing', () => {
  const host = fakeHost({ state: 'ready' });
  const link = new VoiceLink(host);
  link.check();
  assert.equal(link.available, false);
  assert.deepEqual(host.events, [], 'it starts unavailable: nothing to say');
  link.player = fakePlayer({ soundState: 'locked' });
  host.state = 'active';
  link.check();
  assert.equal(link.available, false);
  link.player.soundState = 'unlocked';
  link.check();
  assert.equal(link.available, true);
  host.state = 'degraded';
  link.check();
  host.state = 'active';
  link.check();
  host.hello = { sid: 7, audio: null };
  link.check();
  assert.deepEqual(host.events.map(([type, d]) => [type, d.reason]), [
    ['voiceavailable', ''], ['voiceavailable', 'degraded'], ['voicedegraded', 'degraded'],
    ['voiceavailable', ''], ['voiceavailable', 'no-voice'], ['voicedegraded', 'no-voice'],
  ]);
  assert.deepEqual(host.events[0][1], { available: true, reason: '' });
});

test('AUDIO of the stream is played and timed; other streams are ignored', () => {
  const host = fakeHost();
  const link = new VoiceLink(host);
  link.player = fakePlayer();
  link.audio({ sid: 8, codec: 'opus', t: 0 }, 100, null);
  assert.deepEqual(link.player.pushed, []);
  const jitter = { offset: 50, delayMs: 17, minDelayMs: 0, frameIntervalMs: 17, lateMs: 0, setMinDelay(ms) { this.minDelayMs = ms; this.delayMs = ms; } };
  const packet = { sid: 7, codec: 'opus', t: 40 };
  link.audio(packet, 100, jitter);
  assert.deepEqual(link.player.pushed, [packet]);
  assert.equal(link.playout.lateMs, 10, 'arrived 10 ms after the frames clock');
  assert.equal(jitter.minDelayMs, 50, 'output latency + lateness');
  assert.deepEqual(link.player.ticks, [[100, 100]], 'scheduled at once on the face clock');
  link.cut(60, 3);
  assert.deepEqual(link.player.cuts, [[60, 3]]);
});

test('Opus without a decoder asks for PCM once, and says so', () => {
  const host = fakeHost();
  const link = new VoiceLink(host);
  link.player = fakePlayer({ decoder: null });
  link.audio({ sid: 7, codec: 'opus', t: 0 }, 0, null);
  link.audio({ sid: 7, codec: 'opus', t: 20 }, 0, null);
  assert.equal(host.options.audio, 'pcm');
  assert.deepEqual(host.sent, [[0x94, 4, Op.SET_AUDIO, 7, AudioCodec.PCM16]]);
  assert.equal(host.events.filter(([type]) => type === 'error').length, 1);
  assert.deepEqual(link.player.pushed, []);
});

test('a hello whose Opus the player refuses switches the stream to PCM', () => {
  const host = fakeHost();
  const link = new VoiceLink(host);
  link.player = fakePlayer({ configure: () => false });
  link.hello(host.hello);
  assert.equal(host.options.audio, 'pcm');
  assert.deepEqual(host.sent, [[0x94, 4, Op.SET_AUDIO, 7, AudioCodec.PCM16]]);
});

test('setAudio checks its argument, drops the player for off, and tells the server', () => {
  const host = fakeHost();
  const link = new VoiceLink(host);
  let closed = false;
  link.player = fakePlayer({ close: () => { closed = true; } });
  assert.throws(() => link.setAudio('mp3'), RangeError);
  link.setAudio('off');
  assert.ok(closed);
  assert.equal(link.player, null);
  assert.deepEqual(host.sent, [[0x94, 4, Op.SET_AUDIO, 7, AudioCodec.OFF]]);
});

test('no sound device: the audio option turns off with a non-fatal error', () => {
  const host = fakeHost({ options: { audio: 'pcm', createAudioContext: () => { throw new Error('no device'); } } });
  const link = new VoiceLink(host);
  link.make();
  assert.equal(link.player, null);
  assert.equal(host.options.audio, 'off');
  assert.deepEqual(host.events, [['error', { reason: 'no sound: no device', fatal: false }]]);
});
