import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LodBudget } from '../src/budget.js';

const opts = { minFps: 45, maxKbps: 100, downAfterMs: 2000, upAfterMs: 8000, cooldownMs: 5000 };

/** Feed one measurement per second from t0 for n seconds; return the [t, lod] changes. */
function run(b, t0, n, m) {
  const changes = [];
  for (let i = 0; i < n; i++) {
    const t = t0 + i * 1000;
    const next = b.update(t, m);
    if (next !== null) changes.push([t, next]);
  }
  return changes;
}

test('low fps sustained past downAfterMs steps down one level', () => {
  const b = new LodBudget(0, opts);
  assert.deepEqual(run(b, 0, 2, { fps: 30, kbps: 50 }), []);
  assert.deepEqual(run(b, 2000, 1, { fps: 30, kbps: 50 }), [[2000, 1]]);
  assert.equal(b.lod, 1);
});

test('bandwidth over budget also steps down', () => {
  const b = new LodBudget(0, opts);
  assert.deepEqual(run(b, 0, 3, { fps: 60, kbps: 300 }), [[2000, 1]]);
});

test('a short dip changes nothing', () => {
  const b = new LodBudget(1, opts);
  const changes = [...run(b, 0, 1, { fps: 20, kbps: 10 }), ...run(b, 1000, 30, { fps: 50, kbps: 40 })];
  assert.deepEqual(changes, []);
  assert.equal(b.lod, 1);
});

test('cooldown spaces steps; it never goes past the coarsest level', () => {
  const b = new LodBudget(0, opts);
  const changes = run(b, 0, 30, { fps: 10, kbps: 10 });
  assert.deepEqual(changes.map(([, l]) => l), [1, 2, 3]);
  for (let i = 1; i < changes.length; i++) assert.ok(changes[i][0] - changes[i - 1][0] >= opts.cooldownMs);
});

test('headroom steps back up, slower than it stepped down, and not past finestLod', () => {
  const b = new LodBudget(2, { ...opts, finestLod: 1 });
  const changes = run(b, 0, 40, { fps: 60, kbps: 10 });
  assert.deepEqual(changes.map(([, l]) => l), [1]);
  assert.ok(changes[0][0] >= opts.upAfterMs);
});

test('hysteresis band: fps between minFps and minFps*(1+margin) neither steps up nor down', () => {
  const b = new LodBudget(2, opts);
  assert.deepEqual(run(b, 0, 60, { fps: 48, kbps: 10 }), []);
  // kbps between maxKbps*headroom and maxKbps: no step either
  assert.deepEqual(run(b, 60000, 60, { fps: 60, kbps: 80 }), []);
});

test('a user choice resets the timers and starts a cooldown', () => {
  const b = new LodBudget(0, opts);
  run(b, 0, 2, { fps: 10, kbps: 10 });
  b.setLod(2, 1500);
  assert.equal(b.update(2000, { fps: 10, kbps: 10 }), null);
  // timers restarted at 2000 and the cooldown ends at 6500: the next sample after that steps
  assert.deepEqual(run(b, 3000, 6, { fps: 10, kbps: 10 }), [[7000, 3]]);
  assert.equal(b.lod, 3);
});
