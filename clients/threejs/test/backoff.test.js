import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../src/backoff.js';

test('delays grow exponentially up to the cap', () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2, jitter: 0 });
  assert.deepEqual(Array.from({ length: 6 }, () => b.next()), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(b.attempts, 6);
});

test('jitter stays within [1 - jitter, 1] of the base delay', () => {
  let r = 0;
  const seq = [0, 0.999999, 0.5];
  const b = new Backoff({ initialMs: 1000, maxMs: 1000, jitter: 0.5, random: () => seq[r++ % seq.length] });
  assert.equal(b.next(), 500);
  assert.ok(Math.abs(b.next() - 1000) < 1e-3);
  assert.equal(b.next(), 750);
});

test('jittered delays spread out (no thundering herd)', () => {
  const b = new Backoff({ initialMs: 1000, maxMs: 1000, jitter: 1 });
  const delays = Array.from({ length: 200 }, () => b.next());
  assert.ok(Math.min(...delays) >= 0 && Math.max(...delays) <= 1000);
  assert.ok(new Set(delays.map((d) => Math.floor(d / 100))).size >= 8, 'delays cover the range');
});

test('reset starts over from the initial delay', () => {
  const b = new Backoff({ initialMs: 50, maxMs: 800, jitter: 0 });
  b.next(); b.next(); b.next();
  assert.equal(b.peek(), 400);
  b.reset();
  assert.equal(b.next(), 50);
});

test('bad options are refused', () => {
  assert.throws(() => new Backoff({ initialMs: 0 }), RangeError);
  assert.throws(() => new Backoff({ initialMs: 10, maxMs: 5 }), RangeError);
  assert.throws(() => new Backoff({ jitter: 2 }), RangeError);
  assert.throws(() => new Backoff({ factor: 0.5 }), RangeError);
});
