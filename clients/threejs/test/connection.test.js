// Connection on its own, with fake transports and hand-run timers: which transport is tried
// when, what a failure leads to (fallback, reconnect, fatal end), and that a stopped or
// superseded attempt never takes over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Connection, FATAL_CLOSE_CODES, isFatalClose, rtcWanted } from '../src/connection.js';

/** Let pending promise callbacks (transport.connect() settling) run. */
const settle = () => new Promise((r) => setImmediate(r));

/** A transport whose connect() fails with `failure`: an Error, a status (a refused offer) or true. */
class FakeTransport {
  constructor(kind, failure) {
    this.kind = kind;
    this.failure = failure;
    this.closed = false;
    this.sent = [];
    this.onmessage = () => {};
    this.onclose = () => {};
  }
  connect() {
    if (!this.failure) return Promise.resolve();
    if (this.failure instanceof Error) return Promise.reject(this.failure);
    const err = new Error(`${this.kind} refused`);
    if (typeof this.failure === 'number') err.status = this.failure;
    return Promise.reject(err);
  }
  send(b) { this.sent.push(b); }
  close() { this.closed = true; }
  drop(code, reason = '') { this.onclose({ code, reason }); }
}

/** Timers run by hand: `run()` fires the earliest pending one. */
class ManualTimers {
  constructor() { this.pending = []; }
  after(ms, fn) { this.pending.push({ ms, fn }); }
  clear() { this.pending = []; }
  async run() {
    const i = this.pending.reduce((best, p, k, a) => (p.ms < a[best].ms ? k : best), 0);
    const [{ ms, fn }] = this.pending.splice(i, 1);
    fn();
    await settle();
    return ms;
  }
}

/**
 * A Connection whose transports follow `plan` (kind -> failures in order; false = connects;
 * missing = refuses), recording what it reports.
 */
function setup(plan, options = {}) {
  const made = [];
  const log = [];
  const timers = new ManualTimers();
  const host = {
    createTransport: (kind) => {
      const list = plan[kind] ?? [];
      const t = new FakeTransport(kind, list.length ? list.shift() : true);
      made.push(t);
      return t;
    },
    setState: (state) => log.push(['state', state]),
    attached: (t) => log.push(['attached', t.kind]),
    message: (bytes, arrival) => log.push(['message', bytes, arrival]),
    emit: (type, detail) => log.push([type, detail]),
  };
  const opts = {
    transport: 'auto', createTransport: host.createTransport,
    reconnect: { initialMs: 100, maxMs: 400, jitter: 0 }, rtcRetry: { initialMs: 1000, maxMs: 4000, jitter: 0 }, ...options,
  };
  const conn = new Connection(host, opts, timers);
  const kinds = (type) => log.filter((e) => e[0] === type).map((e) => e[1]);
  return { conn, made, log, timers, kinds };
}

test('close codes: bad token, forbidden, deleted are fatal; "no such session" only before the stream was up', () => {
  for (const code of [4401, 4403, 4410]) {
    assert.equal(isFatalClose(code, false), true);
    assert.equal(isFatalClose(code, true), true);
  }
  assert.equal(isFatalClose(4404, false), true);
  assert.equal(isFatalClose(4404, true), false, 'a restarted server forgot the session: retry');
  for (const code of [1000, 1001, 1006, 1011, 4000, 4429]) assert.equal(isFatalClose(code, false), false);
  assert.deepEqual([...FATAL_CLOSE_CODES], [4401, 4403, 4404, 4410]);
});

test('WebRTC is tried first unless the preference is websocket or the browser has none', () => {
  assert.equal(rtcWanted({ transport: 'auto', createTransport: () => null }), true);
  assert.equal(rtcWanted({ transport: 'webrtc', createTransport: () => null }), true);
  assert.equal(rtcWanted({ transport: 'websocket', createTransport: () => null }), false);
  assert.equal(rtcWanted({ transport: 'auto' }), typeof globalThis.RTCPeerConnection === 'function');
});

test('auto: WebRTC fails, WebSocket carries the stream, WebRTC is retried and takes over', async () => {
  const { conn, made, log, timers, kinds } = setup({ webrtc: [new Error('ice'), new Error('ice'), false], websocket: [false] });
  await conn.open();
  assert.deepEqual(made.map((t) => t.kind), ['webrtc', 'websocket']);
  assert.equal(conn.kind, 'websocket');
  assert.deepEqual(kinds('fallback'), [{ from: 'webrtc', to: 'websocket', reason: 'ice' }]);
  assert.deepEqual(kinds('attached'), ['websocket']);
  assert.equal(await timers.run(), 1000, 'the first WebRTC retry waits rtcRetry.initialMs');
  assert.equal(conn.kind, 'websocket', 'a failed retry leaves the WebSocket in place');
  assert.equal(await timers.run(), 2000, 'and backs off');
  assert.equal(conn.kind, 'webrtc');
  assert.ok(made[1].closed, 'the WebSocket is closed after the switch');
  assert.equal(conn.rtcBackoff.attempts, 0);
  assert.equal(timers.pending.length, 0);
  assert.deepEqual(kinds('state'), ['connecting']);
  assert.ok(!log.some((e) => e[0] === 'reconnect'));
});

test('only messages of the current transport reach the host', async () => {
  const { conn, made, timers, kinds } = setup({ webrtc: [new Error('x'), false], websocket: [false] });
  await conn.open();
  const bytes = new Uint8Array([1]);
  made[1].onmessage(bytes, 5);
  await timers.run();
  made[1].onmessage(bytes, 6); // the replaced WebSocket
  made[2].onmessage(bytes, 7);
  assert.deepEqual(kinds('message'), [bytes, bytes]);
  assert.equal(conn.send(bytes), true);
  assert.deepEqual(made[2].sent, [bytes]);
});

test('webrtc only: a failed offer reconnects instead of falling back', async () => {
  const { conn, made, timers, kinds } = setup({ webrtc: [new Error('x'), false] }, { transport: 'webrtc' });
  await conn.open();
  assert.deepEqual(made.map((t) => t.kind), ['webrtc']);
  assert.equal(kinds('fallback').length, 1);
  assert.deepEqual(kinds('reconnect'), [{ delay: 100, attempt: 1, reason: 'x' }]);
  assert.equal(await timers.run(), 100);
  assert.equal(conn.kind, 'webrtc');
});

test('a refused WebRTC offer (401/403/404) ends the connection without trying WebSocket', async () => {
  const { conn, made, timers, kinds } = setup({ webrtc: [404] });
  await conn.open();
  assert.deepEqual(made.map((t) => t.kind), ['webrtc']);
  assert.deepEqual(kinds('state'), ['connecting', 'error']);
  assert.deepEqual(kinds('error'), [{ reason: 'webrtc refused', fatal: true }]);
  assert.equal(conn.stopped, true);
  assert.equal(timers.pending.length, 0);
});

test('a drop reconnects with growing delays; frames flowing reset the backoff', async () => {
  const { conn, made, timers, kinds } = setup({ websocket: [false, new Error('down'), new Error('down'), false, false] }, { transport: 'websocket' });
  await conn.open();
  made[0].drop(1006, 'gone');
  assert.deepEqual(kinds('state'), ['connecting', 'disconnected']);
  assert.equal(conn.transport, null);
  assert.equal(await timers.run(), 100);
  assert.equal(await timers.run(), 200);
  assert.equal(await timers.run(), 400);
  assert.equal(conn.kind, 'websocket');
  assert.deepEqual(kinds('reconnect').map((r) => [r.attempt, r.reason]), [[1, 'closed 1006: gone'], [2, 'down'], [3, 'down']]);
  conn.healthy();
  made[3].drop(1011);
  assert.deepEqual(kinds('reconnect').at(-1), { delay: 100, attempt: 1, reason: 'closed 1011' });
});

test('4404 ends a connection that never streamed, but is retried once frames flowed', async () => {
  const first = setup({ websocket: [false] }, { transport: 'websocket' });
  await first.conn.open();
  first.made[0].drop(4404, 'no such session');
  assert.deepEqual(first.kinds('error'), [{ reason: 'closed 4404: no such session', fatal: true }]);
  assert.equal(first.timers.pending.length, 0);

  const second = setup({ websocket: [false] }, { transport: 'websocket' });
  await second.conn.open();
  second.conn.healthy();
  second.made[0].drop(4404, 'no such session');
  assert.deepEqual(second.kinds('error'), []);
  assert.equal(second.kinds('reconnect').length, 1);
  second.made[0].drop(4410); // an old transport's late close changes nothing
  assert.equal(second.kinds('error').length, 0);
});

test('stop() closes the transport, cancels retries, and a late attempt never takes over', async () => {
  const { conn, made, timers, log } = setup({ websocket: [false, false] }, { transport: 'websocket' });
  await conn.open();
  conn.stop();
  assert.ok(made[0].closed);
  assert.equal(conn.kind, '');
  assert.equal(conn.send(new Uint8Array([1])), false);
  made[0].drop(1006); // its close arrives after the stop: no reconnect
  assert.equal(timers.pending.length, 0);
  conn.restart();
  const opening = conn.open();
  conn.stop(); // a disconnect while the WebSocket is still opening
  await opening;
  assert.ok(made[1].closed, 'the late transport is closed');
  assert.equal(conn.transport, null);
  assert.deepEqual(log.filter((e) => e[0] === 'attached').length, 1);
});

test('restart() re-arms a connection that ended and resets both backoffs', async () => {
  const { conn, made } = setup({ webrtc: [403, false] });
  await conn.open();
  assert.equal(conn.stopped, true);
  conn.reconnectBackoff.next();
  conn.restart();
  assert.equal(conn.stopped, false);
  assert.equal(conn.reconnectBackoff.attempts, 0);
  await conn.open();
  assert.equal(conn.kind, 'webrtc');
  assert.equal(made.length, 2);
});
