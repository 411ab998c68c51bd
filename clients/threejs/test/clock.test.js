// ClockSync: the server clock from PING/PONG round trips, kept from the fastest one lately.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClockSync, MAX_PENDING_PINGS } from '../src/clock.js';

test('the offset is server time minus the round trip midpoint', () => {
  const c = new ClockSync();
  assert.ok(Number.isNaN(c.offset));
  assert.ok(Number.isNaN(c.latencyMs(100, 50)), 'no latency before the first pong');
  const nonce = c.ping(1000);
  assert.equal(c.pong(nonce, 5020, 1040), 40);
  assert.equal(c.rttMs, 40);
  assert.equal(c.offset, 5020 - 1020);
  // a frame stamped 5100 on the server arriving at local 1110: 1110 + 4000 - 5100
  assert.equal(c.latencyMs(1110, 5100), 10);
});

test('a slower round trip does not move the offset; a faster one does', () => {
  const c = new ClockSync();
  c.pong(c.ping(0), 1010, 20); // rtt 20: offset 1000
  c.pong(c.ping(100), 1150, 200); // rtt 100, its midpoint guess 1000 off by 50
  assert.equal(c.rttMs, 100);
  assert.equal(c.offset, 1000);
  c.pong(c.ping(300), 1303, 306); // rtt 6: offset 1000
  assert.equal(c.offset, 1000);
  c.pong(c.ping(400), 1408, 410); // rtt 10, above the bar (6 * 1.05 + 0.1 = 6.4): kept out
  assert.equal(c.offset, 1000);
  c.pong(c.ping(500), 1508, 506); // rtt 6, within the risen bar: taken
  assert.equal(c.offset, 1005);
});

test('the bar rises, so a route that got slower for good is followed', () => {
  const c = new ClockSync();
  c.pong(c.ping(0), 1001, 2); // rtt 2
  let t = 1000;
  for (let i = 0; i < 100 && c.offset === 1000; i++, t += 1000) c.pong(c.ping(t), t + 1000 + 30 + 500, t + 60); // rtt 60, clock moved 500
  assert.equal(c.offset, 1500);
});

test('unknown, repeated and forgotten nonces are ignored', () => {
  const c = new ClockSync();
  assert.ok(Number.isNaN(c.pong(12345, 0, 0)));
  const first = c.ping(0);
  const nonces = Array.from({ length: MAX_PENDING_PINGS }, (_, i) => c.ping(i + 1));
  assert.ok(Number.isNaN(c.pong(first, 10, 20)), 'the oldest pending ping was forgotten');
  assert.equal(c.pong(nonces[0], 10, 20), 19);
  assert.ok(Number.isNaN(c.pong(nonces[0], 10, 21)), 'answered once');
  assert.equal(c.rttMs, 19, 'the last answered round trip');
});
