// StatsMeter: counters, per-window rates, frame gaps, moving averages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STATS_WINDOW_MS, StatsMeter } from '../src/stats.js';

test('rates are measured over windows of at least one second', () => {
  const m = new StatsMeter({ state: 'idle', lod: 0 });
  assert.equal(m.tick(0), false, 'the first tick opens the window');
  for (let i = 1; i <= 59; i++) {
    m.countBytes(100);
    m.frameRendered(50);
    assert.equal(m.tick(i * 16), false);
  }
  m.frameRendered(50);
  m.countBytes(100);
  assert.equal(m.tick(STATS_WINDOW_MS + 200), true);
  assert.equal(m.stats.renderFps, (60 * 1000) / 1200);
  assert.equal(m.stats.kbps, (6000 * 8) / 1200);
  assert.equal(m.stats.bytesReceived, 6000);
  assert.equal(m.stats.framesRendered, 60);
  assert.equal(m.tick(STATS_WINDOW_MS + 300), false, 'a new window started');
});

test('sequence gaps count skipped frames, wrapping at 16 bits; a new level or stream starts over', () => {
  const m = new StatsMeter({ state: 'idle', lod: 0 });
  assert.equal(m.countFrame(0, 65534), true, 'the first frame is a level change');
  assert.equal(m.countFrame(0, 65535), false);
  m.countFrame(0, 2); // 0 and 1 lost across the wrap
  assert.equal(m.stats.framesSkipped, 2);
  m.countFrame(0, 1); // reordered (older): no gap
  assert.equal(m.stats.framesSkipped, 2);
  assert.equal(m.countFrame(2, 900), true);
  assert.equal(m.stats.lod, 2);
  assert.equal(m.stats.framesSkipped, 2, 'another level numbers its frames afresh');
  m.newStream();
  assert.equal(m.countFrame(2, 5), true, 'a new transport: the first frame is a level change again');
  assert.equal(m.stats.framesSkipped, 2);
});

test('decode and apply times and latency are moving averages; latency waits for the clock', () => {
  const m = new StatsMeter({ state: 'idle', lod: 0 });
  m.frameDecoded(100, NaN);
  assert.equal(m.stats.decodeUs, 5);
  assert.ok(Number.isNaN(m.stats.latencyMs));
  m.frameDecoded(100, 40);
  assert.equal(m.stats.latencyMs, 40, 'the first latency is taken as is');
  m.frameDecoded(100, 50);
  assert.equal(m.stats.latencyMs, 41);
  assert.equal(m.stats.framesReceived, 3);
  m.frameRendered(20);
  assert.equal(m.stats.applyUs, 1);
});

test('the snapshot is a copy with every field of the stats', () => {
  const m = new StatsMeter({ state: 'connecting', lod: 1 });
  const snap = m.snapshot();
  assert.notEqual(snap, m.stats);
  assert.deepEqual(Object.keys(snap), [
    'transport', 'state', 'lod', 'renderFps', 'kbps', 'latencyMs', 'rttMs', 'framesReceived', 'framesRendered',
    'framesSkipped', 'framesStale', 'keyframesRequested', 'protocolErrors', 'bytesReceived', 'reconnects',
    'decodeUs', 'applyUs', 'sampleStatus',
  ]);
  assert.equal(snap.state, 'connecting');
  assert.equal(snap.lod, 1);
  assert.equal(snap.sampleStatus, 'empty');
});
