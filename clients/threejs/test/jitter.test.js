import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JitterBuffer, SampleStatus } from '../src/jitter.js';

const close = (a, b, eps = 1e-4) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

/** A buffer of width 2 (one morph, one channel) fed a ramp m = t/1000, c = -t/1000. */
function ramp(interval = 20, n = 6, latency = 5, jitter = () => 0) {
  const jb = new JitterBuffer(2, { frameIntervalMs: interval });
  for (let k = 0; k < n; k++) {
    const t = 1000 + k * interval;
    jb.push(t, [t / 1000], [-t / 1000], t + latency + jitter(k));
  }
  return jb;
}

test('empty buffer reports empty and leaves out untouched', () => {
  const jb = new JitterBuffer(3);
  const out = new Float32Array([7, 7, 7]);
  assert.equal(jb.sample(0, out), SampleStatus.EMPTY);
  assert.deepEqual(Array.from(out), [7, 7, 7]);
});

test('interpolates between bracketing frames, one frame interval behind the newest arrival', () => {
  const jb = ramp(20, 6, 5);
  const out = new Float32Array(2);
  assert.equal(jb.offset, 5);
  // local 1105 -> server 1100 -> minus one interval = 1080 (a frame: exact)
  assert.equal(jb.sample(1105, out), SampleStatus.INTERPOLATE);
  close(out[0], 1.08);
  // local 1095 -> render 1070, halfway between 1060 and 1080
  jb.sample(1095, out);
  close(out[0], 1.07);
  close(out[1], -1.07);
});

test('added latency is at most one frame interval', () => {
  const jb = ramp(20, 6, 5);
  const out = new Float32Array(2);
  const now = 1105; // the newest frame (t=1100) has just arrived
  jb.sample(now, out);
  const shownT = out[0] * 1000;
  const newestArrivalServerT = now - jb.offset;
  assert.ok(newestArrivalServerT - shownT <= 20 + 1e-3);
});

test('extrapolation is capped, then values hold', () => {
  const jb = ramp(20, 4, 0, () => 0);
  const out = new Float32Array(2);
  // newest t = 1060; render time 1060 + 10 -> extrapolated by 10 ms along the slope
  assert.equal(jb.sample(1090, out), SampleStatus.EXTRAPOLATE);
  close(out[0], 1.07);
  // far in the future: capped at maxExtrapolationMs (= min(interval, 50) = 20)
  jb.sample(5000, out);
  close(out[0], 1.08);
});

test('extrapolation keeps a morph weight inside [0, 1] (a fast blink does not become a stare)', () => {
  const jb = new JitterBuffer(2, { frameIntervalMs: 20, maxExtrapolationMs: 50 });
  jb.push(1000, [0.9], [0.9], 1000); // the lid reopening fast; a channel moving as fast
  jb.push(1020, [0.3], [0.3], 1020);
  const out = new Float32Array(2);
  assert.equal(jb.sample(1070, out), SampleStatus.EXTRAPOLATE); // 30 ms past the newest
  assert.equal(out[0], 0); // not 0.3 - 0.6 * 1.5 = -0.6
  close(out[1], -0.6); // rotations may cross zero
  jb.push(1040, [0.7], [0.7], 1040);
  jb.push(1060, [1.0], [1.0], 1060);
  jb.sample(1110, out);
  assert.equal(out[0], 1);
});

test('out-of-order and duplicate frames are refused and counted', () => {
  const jb = new JitterBuffer(1, { frameIntervalMs: 10 });
  assert.ok(jb.push(100, [1], [], 100));
  assert.ok(jb.push(110, [3], [], 110));
  assert.equal(jb.push(105, [2], [], 111), false);
  assert.equal(jb.push(110, [2], [], 112), false);
  assert.equal(jb.dropped, 2);
  const out = new Float32Array(1);
  jb.sample(115, out); // render 105 -> halfway between 100 and 110
  close(out[0], 2);
});

test('arrival jitter: the offset follows the fastest path, so late frames do not push playout later', () => {
  const late = [0, 12, 3, 18, 0, 7, 15, 2];
  const jb = ramp(16, 8, 4, (k) => late[k]);
  assert.ok(jb.offset >= 4 && jb.offset < 5, `offset ${jb.offset}`);
});

test('before the oldest frame it holds the oldest; with one frame it holds that', () => {
  const jb = new JitterBuffer(1, { frameIntervalMs: 10 });
  const out = new Float32Array(1);
  jb.push(100, [5], [], 100);
  assert.equal(jb.sample(50, out), SampleStatus.HOLD);
  assert.equal(out[0], 5);
  jb.push(110, [6], [], 110);
  jb.push(120, [7], [], 120);
  assert.equal(jb.sample(0, out), SampleStatus.HOLD);
  assert.equal(out[0], 5);
});

test('the ring keeps the newest capacity frames and interpolates across the wrap', () => {
  const jb = new JitterBuffer(1, { capacity: 4, frameIntervalMs: 10 });
  for (let k = 0; k < 11; k++) jb.push(k * 10, [k], [], k * 10);
  assert.equal(jb.count, 4);
  const out = new Float32Array(1);
  jb.sample(95, out); // render 85 -> between frames 8 and 9
  close(out[0], 8.5);
  jb.sample(75, out); // render 65 -> older than the oldest kept (70): hold it
  close(out[0], 7);
});

test('a frame interval change (LOD switch) moves the delay with it', () => {
  const jb = new JitterBuffer(1, { frameIntervalMs: 1000 / 60 });
  close(jb.delayMs, 16.667, 1e-3);
  jb.setFrameInterval(100);
  assert.equal(jb.delayMs, 100);
  assert.equal(jb.maxExtrapolationMs, 50);
});

test('a jump far ahead in server time (server restart) resets the buffer', () => {
  const jb = new JitterBuffer(1);
  jb.push(100, [1], [], 100);
  jb.push(50000, [2], [], 200);
  assert.equal(jb.count, 1);
  assert.equal(jb.offset, 200 - 50000);
});

test('across a gap (a still face sends nothing) the old value holds until one interval before the new frame', () => {
  const jb = new JitterBuffer(1, { frameIntervalMs: 20 });
  jb.push(1000, [0], [], 1000);
  jb.push(1500, [1], [], 1500); // the next frame after 500 ms of stillness
  const out = new Float32Array(1);
  jb.sample(1400, out); // render 1380: still holding the old value
  close(out[0], 0);
  jb.sample(1510, out); // render 1490: halfway through the last interval
  close(out[0], 0.5);
});

test('extrapolation after a gap uses at most one interval of slope', () => {
  const jb = new JitterBuffer(1, { frameIntervalMs: 20 });
  jb.push(1000, [0], [], 1000);
  jb.push(1500, [0.5], [], 1500);
  const out = new Float32Array(1);
  jb.sample(1530, out); // render 1510: 10 ms past, slope taken over the last 20 ms
  close(out[0], 0.75);
});
