// Connection: the transport under a client, and keeping one up.
//
// Fallback. With transport 'auto' WebRTC is tried first; if it fails, WebSocket, and WebRTC is
// tried again later in the background with its own (slow) backoff; when it comes up it takes
// over and the WebSocket is closed. 'webrtc' never falls back; 'websocket' never tries WebRTC.
//
// Reconnect. A lost connection reconnects with exponential backoff and jitter (backoff.js); the
// backoff resets once frames flow again (healthy()). Close codes that retrying cannot fix
// (FATAL_CLOSE_CODES) end it: state 'error' and a fatal 'error' event.
//
// Generations. Every stop() (a disconnect, a new connect, a fatal error) starts a generation;
// an attempt that completes in an older one closes what it opened and reports nothing.
//
// The connection does not decode or count: it tells its host (the client) which transport now
// carries the stream and hands it the messages of that transport only.

import { Backoff } from './backoff.js';
import { WebRTCTransport, WebSocketTransport, httpUrl, streamUrl } from './transports.js';

/**
 * Close codes after which reconnecting is pointless: bad token, forbidden, no such session,
 * session deleted. One exception: 4404 while *re*connecting (the stream was up before) is
 * retried, because a restarted server forgets in-memory sessions until their owner recreates
 * them.
 */
export const FATAL_CLOSE_CODES = Object.freeze([4401, 4403, 4404, 4410]);

export const ConnectionState = Object.freeze({
  IDLE: 'idle', CONNECTING: 'connecting', READY: 'ready', ACTIVE: 'active',
  DEGRADED: 'degraded', ERROR: 'error', DISCONNECTED: 'disconnected',
});

/**
 * Whether a close (or a failed WebRTC offer, as 4000 + its HTTP status) ends the connection.
 * @param {number} code
 * @param {boolean} wasActive whether frames flowed on this connection before
 * @returns {boolean}
 */
export function isFatalClose(code, wasActive) {
  return FATAL_CLOSE_CODES.includes(code) && !(code === 4404 && wasActive);
}

/**
 * Whether to try WebRTC first: not when the preference is 'websocket', and only where the
 * browser has it (an injected createTransport stands for any transport).
 * @param {{transport?: string, createTransport?: unknown}} options
 * @returns {boolean}
 */
export function rtcWanted(options) {
  if (options.transport === 'websocket') return false;
  return options.createTransport ? true : WebRTCTransport.supported;
}

/**
 * @typedef {object} TransportParams
 * @property {string} base        http(s):// base of the server
 * @property {string} session
 * @property {number} lod
 * @property {number} bits
 * @property {string} token
 * @property {string} audio       'opus' | 'pcm' | 'off'
 * @property {RTCIceServer[]} iceServers
 * @property {typeof fetch} [fetch]
 * @property {(kind: 'webrtc'|'websocket', params: object) => any} [createTransport] for tests
 */

/**
 * A transport of `kind` for the stream `p` describes (not yet connected).
 * @param {'webrtc'|'websocket'} kind
 * @param {TransportParams} p
 */
export function makeTransport(kind, p) {
  const { base, session, lod, bits, token, audio, iceServers } = p;
  if (p.createTransport) return p.createTransport(kind, { base, session, lod, bits, token, audio });
  if (kind === 'webrtc') {
    return new WebRTCTransport(httpUrl(base, 'rtc/offer'), { session, lod, bits, token, audio, iceServers, fetchImpl: p.fetch });
  }
  return new WebSocketTransport(streamUrl(base, session, { lod, bits, token, audio, mode: 'chained' }));
}

/**
 * @typedef {object} ConnectionHost what a Connection reports to (the client)
 * @property {(kind: 'webrtc'|'websocket') => any} createTransport  a fresh, unconnected transport
 * @property {(state: string) => void} setState   'connecting' before an attempt, 'disconnected'
 *   on a drop, 'error' on a fatal close
 * @property {(transport: any) => void} attached  `transport` now carries the stream
 * @property {(bytes: Uint8Array, arrivalMs: number) => void} message  from the current transport
 * @property {(type: 'fallback'|'reconnect'|'error', detail: object) => void} emit
 */

/**
 * @typedef {object} ConnectionOptions read live, at each attempt
 * @property {'auto'|'webrtc'|'websocket'} transport
 * @property {import('./backoff.js').BackoffOptions} [reconnect]  read once, by the constructor
 * @property {import('./backoff.js').BackoffOptions} [rtcRetry]   read once, by the constructor
 * @property {unknown} [createTransport]
 */

export class Connection {
  /**
   * @param {ConnectionHost} host
   * @param {ConnectionOptions} options
   * @param {{after(ms: number, fn: () => void): void, clear(): void}} timers shared with the
   *   host, all cleared by stop() and by a fatal close
   */
  constructor(host, options, timers) {
    this.host = host;
    this.options = options;
    this.timers = timers;
    this.reconnectBackoff = new Backoff({ initialMs: 500, maxMs: 15000, ...options.reconnect });
    this.rtcBackoff = new Backoff({ initialMs: 10000, maxMs: 120000, ...options.rtcRetry });
    /** @type {any} the transport that carries the stream now, or null */
    this.transport = null;
    /** No retries: stopped by the user or by a fatal close. */
    this.stopped = false;
    this._wasActive = false;
    this._generation = 0;
  }

  /** Which transport carries the stream now: 'webrtc', 'websocket' or ''. */
  get kind() {
    return this.transport?.kind ?? '';
  }

  /** Make ready for a new connect(): retries allowed, fresh backoffs, no stream seen yet. */
  restart() {
    this.stopped = false;
    this._wasActive = false;
    this.reconnectBackoff.reset();
    this.rtcBackoff.reset();
  }

  /**
   * Open a transport: WebRTC first when wanted, else (or failing that) WebSocket. Resolves
   * once one carries the stream; rejects when the WebSocket fails too (a reconnect is then
   * scheduled unless the failure was fatal or the connection stopped meanwhile).
   * @returns {Promise<void>}
   */
  async open() {
    const gen = this._generation;
    this.host.setState(ConnectionState.CONNECTING);
    let rtcError = null;
    if (rtcWanted(this.options)) {
      const t = this.host.createTransport('webrtc');
      try {
        await t.connect();
        if (gen !== this._generation) { t.close(); return; }
        this._attach(t);
        return;
      } catch (err) {
        rtcError = err;
        if (gen !== this._generation) return;
        const reason = String(err?.message ?? err);
        if (err?.status && isFatalClose(4000 + err.status, this._wasActive)) return this._fatal(err.message);
        this.host.emit('fallback', { from: 'webrtc', to: 'websocket', reason });
        if (this.options.transport === 'webrtc') return this._scheduleReconnect(reason);
      }
    }
    const ws = this.host.createTransport('websocket');
    try {
      await ws.connect();
    } catch (err) {
      if (gen !== this._generation) return;
      this._scheduleReconnect(String(err?.message ?? err));
      throw err;
    }
    if (gen !== this._generation) { ws.close(); return; }
    this._attach(ws);
    if (rtcError) this._scheduleRtcRetry();
  }

  /** Close the transport and stop retrying (every pending timer of the host is cleared). */
  stop() {
    this.stopped = true;
    this._generation += 1;
    this.timers.clear();
    const t = this.transport;
    this.transport = null;
    t?.close();
  }

  /** Frames flow: the next failure backs off from the start, and 4404 means a restarted server. */
  healthy() {
    this._wasActive = true;
    this.reconnectBackoff.reset();
  }

  /**
   * Send on the current transport.
   * @param {Uint8Array} bytes
   * @returns {boolean} false when no transport is up
   */
  send(bytes) {
    if (!this.transport) return false;
    this.transport.send(bytes);
    return true;
  }

  _attach(t) {
    const old = this.transport;
    this.transport = t;
    t.onmessage = (bytes, arrival) => { if (t === this.transport) this.host.message(bytes, arrival); };
    t.onclose = (info) => this._onClose(t, info);
    if (old && old !== t) old.close();
    this.host.attached(t);
  }

  _onClose(t, { code, reason }) {
    if (t !== this.transport) return;
    this.transport = null;
    if (this.stopped) return;
    if (isFatalClose(code, this._wasActive)) return this._fatal(`closed ${code}: ${reason}`);
    this.host.setState(ConnectionState.DISCONNECTED);
    this._scheduleReconnect(`closed ${code}${reason ? `: ${reason}` : ''}`);
  }

  _fatal(reason) {
    this.stopped = true;
    this._generation += 1;
    this.timers.clear();
    this.host.setState(ConnectionState.ERROR);
    this.host.emit('error', { reason, fatal: true });
  }

  _scheduleReconnect(reason) {
    if (this.stopped) return;
    const delay = this.reconnectBackoff.next();
    this.host.emit('reconnect', { delay, attempt: this.reconnectBackoff.attempts, reason });
    this.timers.after(delay, () => this.open().catch(() => {}));
  }

  /** While on the WebSocket fallback (and still in this generation), try WebRTC again. */
  _scheduleRtcRetry() {
    if (this.stopped || this.options.transport !== 'auto') return;
    const gen = this._generation;
    this.timers.after(this.rtcBackoff.next(), async () => {
      if (gen !== this._generation || this.transport?.kind !== 'websocket') return;
      const t = this.host.createTransport('webrtc');
      try {
        await t.connect();
      } catch {
        this._scheduleRtcRetry();
        return;
      }
      if (gen !== this._generation || this.stopped) { t.close(); return; }
      this.rtcBackoff.reset();
      this._attach(t);
    });
  }
}
