// VoicePlayout with a real JitterBuffer and a stand-in voice: the face waits for its voice's
// output latency plus the lateness cushion, changes its delay only between utterances, and the
// voice is scheduled on the face's clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JitterBuffer } from '../src/jitter.js';
import { LATE_CAP_MS, VoicePlayout } from '../src/playout.js';

/** The part of a VoicePlayer the playout drives; `ticks` records tick(nowMs, mapMs). */
function fakeVoice(fields = {}) {
  const ticks = [];
  return { codec: 'opus', soundState: 'unlocked', latencyMs: 45, busy: false, ticks, tick: (now, map) => ticks.push([now, map]), ...fields };
}

/** A 60 fps buffer whose clock offset is `offset` (local minus stream ms). */
function jitterAt(offset) {
  const j = new JitterBuffer(1, { frameIntervalMs: 1000 / 60 });
  j.push(0, [0], [], offset);
  return j;
}

test('the face waits for the output latency of a voice that can sound', () => {
  const p = new VoicePlayout();
  const j = jitterAt(1000);
  const v = fakeVoice();
  p.tick(2000, v, j);
  assert.equal(j.minDelayMs, 45);
  assert.equal(j.delayMs, 45);
  assert.deepEqual(v.ticks, [[2000, 1000 + 45]], 'the voice is mapped on the face clock');
});

test('without a codec, while locked, or before the context runs, the face keeps its frame delay', () => {
  for (const fields of [{ codec: null }, { soundState: 'locked' }, { latencyMs: NaN }]) {
    const p = new VoicePlayout();
    const j = jitterAt(0);
    p.tick(10, fakeVoice(fields), j);
    assert.equal(j.minDelayMs, 0, JSON.stringify(fields));
    assert.ok(Math.abs(j.delayMs - 1000 / 60) < 1e-9);
  }
});

test('late audio widens the cushion (capped), which then relaxes toward the current arrivals', () => {
  const p = new VoicePlayout();
  const j = jitterAt(500);
  p.noteAudio(500 + 100 + 80, 100, j); // arrives 80 ms after the frames' fastest path
  assert.equal(p.lateMs, 80);
  p.noteAudio(500 + 100, 100, j); // on time: the max decays, it does not drop
  assert.ok(p.lateMs < 80 && p.lateMs > 79);
  p.noteLate(5000);
  assert.equal(p.lateMs, LATE_CAP_MS);
  for (let i = 0; i < 100; i++) p.noteLate(0);
  assert.ok(Math.abs(p.lateMs - LATE_CAP_MS / 2) < 2, 'about half after 100 packets (2 s of speech)');
  const v = fakeVoice();
  p.tick(0, v, j);
  assert.equal(j.minDelayMs, Math.round(45 + p.lateMs));
});

test('audio arriving early shortens the face delay, down to the face floor', () => {
  const p = new VoicePlayout();
  const j = jitterAt(500);
  const v = fakeVoice({ latencyMs: 60 });
  for (let i = 0; i < 2000; i++) p.noteLate(-250); // an utterance's packets, sent 250 ms ahead
  p.noteAudio(500 + 1000 - 30, 1000, j); // the next one's first packet: 30 ms ahead of its time
  assert.equal(p.lateMs, -30);
  p.tick(0, v, j);
  assert.equal(j.minDelayMs, 30, 'the output latency less the 30 ms the packet came early');
  assert.deepEqual(v.ticks.at(-1), [0, 500 + 30], 'heard as soon as it can be played');
  const far = new VoicePlayout();
  for (let i = 0; i < 2000; i++) far.noteLate(-5000); // far ahead: the face keeps its own floor
  assert.ok(Math.abs(far.lateMs + LATE_CAP_MS) < 0.01, 'capped at -LATE_CAP_MS');
  far.tick(1, v, j);
  assert.equal(j.minDelayMs, Math.round(1000 / 60 + j.lateMs));
});

test('late frames raise the face floor of a voiced stream', () => {
  const p = new VoicePlayout();
  const j = new JitterBuffer(1, { frameIntervalMs: 1000 / 60 });
  for (let k = 0; k < 600; k++) j.push(k * 20, [0], [], k * 20 + (k % 10 === 0 ? 0 : 40)); // 90% of frames 40 ms late
  assert.ok(j.lateMs > 30 && j.lateMs <= 42, `frames' lateness ${j.lateMs}`);
  p.noteLate(-300);
  p.tick(0, fakeVoice(), j);
  assert.equal(j.minDelayMs, Math.round(1000 / 60 + j.lateMs));
});

test('audio before the first frame (no clock offset yet) is not noted', () => {
  const p = new VoicePlayout();
  const j = new JitterBuffer(1, { frameIntervalMs: 1000 / 60 });
  p.noteAudio(1000, 0, j);
  assert.equal(p.lateMs, 0);
});

test('no lateness is noted before the jitter buffer exists', () => {
  const p = new VoicePlayout();
  p.noteAudio(1000, 0, null);
  assert.equal(p.lateMs, 0);
  p.tick(0, fakeVoice(), null); // nothing to drive: no throw
});

test('the delay changes only between utterances and only by more than a few ms', () => {
  const p = new VoicePlayout();
  const j = jitterAt(0);
  const v = fakeVoice();
  p.tick(0, v, j);
  assert.equal(j.minDelayMs, 45);
  v.latencyMs = 49; // within the step: left alone
  p.tick(1, v, j);
  assert.equal(j.minDelayMs, 45);
  v.latencyMs = 120;
  v.busy = true; // scheduled or mid-utterance: never pulled away from its face
  p.tick(2, v, j);
  assert.equal(j.minDelayMs, 45);
  v.busy = false;
  p.tick(3, v, j);
  assert.equal(j.minDelayMs, 120);
  assert.equal(v.ticks.length, 4, 'the voice is ticked every time');
});
