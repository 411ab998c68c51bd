// AvatarStreamClient: connects to an avatar-engine session, decodes its stream and drives a
// Three.js object at display rate.
//
//   const client = new AvatarStreamClient();
//   client.addEventListener('state', (e) => console.log(e.detail.state));
//   await client.connect('http://127.0.0.1:8766', 'demo');
//   client.bind(gltf.scene);                  // morphs by name, bones from the rig profile
//   renderer.setAnimationLoop((t) => { client.update(t); renderer.render(scene, camera); });
//
// Transport: WebRTC first (transport: 'auto'); if it fails, WebSocket, and WebRTC is tried again
// later in the background (its own backoff); when it comes up the client switches over. A lost
// connection reconnects with exponential backoff and jitter. Close codes that retrying cannot
// fix (401, 403, 404: bad token, no such session) end in state 'error'.
//
// Connection states ('state' events): idle, connecting, ready (hello received), active (frames
// flowing), degraded (no frame for `stallMs`, or a protocol error), error, disconnected.
// The session's own state pushed by the server (idle, thinking, ...) comes as 'session' events
// together with 'speaking' and 'emotion'.

import { AudioCodec, Decoder, EventKind, Op, ProtocolError, encodeControl, encodePing, encodePong, encodeSetAudio } from './protocol.js';
import { Backoff } from './backoff.js';
import { JitterBuffer, SampleStatus } from './jitter.js';
import { LodBudget } from './budget.js';
import { RigBinding } from './binding.js';
import { WebRTCTransport, WebSocketTransport, httpUrl, streamUrl } from './transports.js';
import { SoundState, VoicePlayer, preferredAudio } from './voice.js';
import { VoicePlayout } from './playout.js';

/**
 * Close codes after which reconnecting is pointless: bad token, forbidden, no such session,
 * session deleted. One exception: 4404 while *re*connecting (the stream was up before) is
 * retried, because a restarted server forgets in-memory sessions until their owner recreates
 * them.
 */
export const FATAL_CLOSE_CODES = Object.freeze([4401, 4403, 4404, 4410]);

/** The `audio` option's codes on the wire (SUBSCRIBE, SET_AUDIO). */
const AUDIO_CODES = Object.freeze({ off: AudioCodec.OFF, opus: AudioCodec.OPUS, pcm: AudioCodec.PCM16 });

export const ConnectionState = Object.freeze({
  IDLE: 'idle', CONNECTING: 'connecting', READY: 'ready', ACTIVE: 'active',
  DEGRADED: 'degraded', ERROR: 'error', DISCONNECTED: 'disconnected',
});

const perfNow = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/**
 * @typedef {object} ClientOptions
 * @property {'auto'|'webrtc'|'websocket'} [transport='auto']
 * @property {number} [lod=0]                 level to subscribe at (0 = everything)
 * @property {8|16} [bits=8]                  quantization
 * @property {string} [token]                 JWT for servers with auth
 * @property {RTCIceServer[]} [iceServers=[]] STUN/TURN for WebRTC (none needed on a LAN)
 * @property {import('./backoff.js').BackoffOptions} [reconnect]   reconnect delays
 * @property {import('./backoff.js').BackoffOptions} [rtcRetry]    delays before retrying WebRTC after a fallback
 * @property {import('./budget.js').BudgetOptions | false} [budget] LOD budget; false disables it
 * @property {number} [stallMs=1000]          no frame for this long: 'degraded'
 * @property {number} [pingMs=2000]           clock/latency probe interval
 * @property {'opus'|'pcm'|'off'} [audio]      the voice to ask for; default: 'opus' where WebCodecs'
 *   AudioDecoder exists, 'pcm' where only WebAudio does, 'off' without WebAudio
 * @property {number} [volume=1]             voice volume 0..1
 * @property {boolean} [muted=false]
 * @property {import('./voice.js').VoiceOptions} [voice] voice scheduling options
 * @property {() => AudioContext} [createAudioContext] for tests (default: new AudioContext)
 * @property {Record<string, import('./binding.js').RigBones>} [rigs] rig bone data by rig name (skips GET /rigs/{name})
 * @property {Record<string, import('./binding.js').RigBones>} [rigFallback] used when GET /rigs/{name} fails
 * @property {(kind: 'webrtc'|'websocket', params: object) => any} [createTransport] for tests
 * @property {() => number} [now]             clock, ms (performance.now)
 * @property {typeof fetch} [fetch]
 */

export class AvatarStreamClient extends EventTarget {
  /** @param {ClientOptions} [options] */
  constructor(options = {}) {
    super();
    this.options = {
      transport: 'auto', lod: 0, bits: 8, token: '', iceServers: [], stallMs: 1000, pingMs: 2000,
      rigs: {}, rigFallback: {}, ...options,
    };
    this.options.audio ??= preferredAudio();
    this.now = this.options.now ?? perfNow;
    this.fetch = this.options.fetch ?? globalThis.fetch?.bind(globalThis);
    this.reconnectBackoff = new Backoff({ initialMs: 500, maxMs: 15000, ...this.options.reconnect });
    this.rtcBackoff = new Backoff({ initialMs: 10000, maxMs: 120000, ...this.options.rtcRetry });
    this.budget = this.options.budget === false ? null : new LodBudget(this.options.lod, { finestLod: this.options.lod, ...this.options.budget });
    this.state = ConnectionState.IDLE;
    /** Last session state the server pushed ('idle', 'thinking', ...). */
    this.sessionState = null;
    this.speaking = false;
    /** @type {[string, number] | null} */
    this.emotion = null;
    this.base = '';
    this.session = '';
    this.lod = this.options.lod;
    /** @type {any} */
    this.transport = null;
    this.hello = null;
    /** The raw hello message of the current stream (to replay recorded traffic). */
    this.helloBytes = null;
    this.decoder = null;
    this.jitter = null;
    this.binding = null;
    this.out = null;
    /** @type {VoicePlayer | null} plays the voice; made by connect() unless audio is 'off' */
    this.voice = null;
    this._voiceAvailable = false;
    /** When the face is shown and its voice heard (playout.js). */
    this.playout = new VoicePlayout();
    this._bindTarget = null;
    this._rigCache = new Map();
    this._timers = new Set();
    this._closedByUser = false;
    this._wasActive = false;
    this._generation = 0;
    this._lastSeq = -1;
    this._lastLodSeen = -1;
    this._lastFrameAt = NaN;
    this._lastKfRequest = -Infinity;
    this._nonce = 1;
    this._pings = new Map();
    this._bestRtt = Infinity;
    /** Server stream ms minus local ms, from ping/pong (NaN until the first pong). */
    this.clockOffset = NaN;
    this._window = { start: NaN, renders: 0, bytes: 0 };
    // decodeUs / applyUs are moving averages of performance.now() differences: in a page that
    // is not cross-origin isolated the browser coarsens that clock (100 us in Chromium), so
    // they are rough; time many frames at once for a real figure (the demo's measure()).
    this.stats = {
      transport: '', state: this.state, lod: this.lod, renderFps: 0, kbps: 0, latencyMs: NaN, rttMs: NaN,
      framesReceived: 0, framesRendered: 0, framesSkipped: 0, framesStale: 0, keyframesRequested: 0,
      protocolErrors: 0, bytesReceived: 0, reconnects: 0, decodeUs: 0, applyUs: 0, sampleStatus: SampleStatus.EMPTY,
    };
  }

  // ------------------------------------------------------------------ public API

  /**
   * Connect to `session` on the server at `url` (http(s)://host:port). Resolves when the first
   * transport is up (or rejects if neither could be opened; reconnecting then goes on in the
   * background unless the failure is fatal).
   * @param {string} url
   * @param {string} session
   * @param {Partial<ClientOptions>} [options]
   */
  async connect(url, session, options = {}) {
    Object.assign(this.options, options);
    if (options.lod !== undefined) this.lod = options.lod;
    this.disconnect();
    this._closedByUser = false;
    this._wasActive = false;
    this.base = url;
    this.session = session;
    this.reconnectBackoff.reset();
    this.rtcBackoff.reset();
    this._makeVoice();
    this._every(this.options.pingMs, () => this._ping());
    await this._open();
  }

  /** Close the connection and stop reconnecting. */
  disconnect() {
    this._closedByUser = true;
    this._generation += 1;
    this._clearTimers();
    const t = this.transport;
    this.transport = null;
    t?.close();
    this.voice?.reset();
    if (this.state !== ConnectionState.IDLE) this._setState(ConnectionState.DISCONNECTED);
  }

  /**
   * Drive `object3D` (and every mesh under it) from the stream. Bone data comes from
   * `options.rig`, the client's `rigs` option, or GET {url}/rigs/{name}; without it only morphs
   * are driven. Can be called before or after connect(); binding happens once the hello is in.
   * @param {import('three').Object3D} object3D
   * @param {{rig?: import('./binding.js').RigBones | null}} [options]
   * @returns {Promise<RigBinding | null>} the binding once made (null if no hello yet)
   */
  async bind(object3D, options = {}) {
    this._bindTarget = { object3D, rig: options.rig };
    return this._rebind();
  }

  /** Stop driving the bound object (and reset it to rest). */
  unbind() {
    this.binding?.reset();
    this.binding = null;
    this._bindTarget = null;
  }

  /**
   * Call once per rendered frame: samples the jitter buffer at `nowMs` and applies it.
   * @param {number} [nowMs]
   * @returns {boolean} whether values were applied
   */
  update(nowMs = this.now()) {
    this._tickStats(nowMs);
    if (!this.jitter || !this.out) return false;
    const t0 = this.now();
    const status = this.jitter.sample(nowMs, this.out);
    this.stats.sampleStatus = status;
    if (status === SampleStatus.EMPTY) return false;
    if (this.binding) this.binding.apply(this.out);
    this.playout.tick(nowMs, this.voice, this.jitter);
    this.stats.applyUs += ((this.now() - t0) * 1000 - this.stats.applyUs) * 0.05;
    this.stats.framesRendered += 1;
    this._window.renders += 1;
    // A still face sends only keyframes (every keyframe_ms): a stall is longer than that.
    const stallMs = Math.max(this.options.stallMs, 2.5 * (this.hello?.keyframeMs ?? 0));
    if (this.state === ConnectionState.ACTIVE && nowMs - this._lastFrameAt > stallMs) {
      this._setState(ConnectionState.DEGRADED);
    }
    return true;
  }

  /** Current values (morphs then channels, rig order), as last sampled; null before frames. */
  get values() {
    return this.out;
  }

  /**
   * Ask the server for another level of detail.
   * @param {number} lod 0..3
   * @param {{user?: boolean}} [options] user: true makes it the budget's finest level too
   */
  setLod(lod, { user = true } = {}) {
    if (!(lod >= 0 && lod <= 3)) throw new RangeError('lod must be 0..3');
    if (user && this.budget) this.budget.finestLod = lod;
    this.budget?.setLod(lod, this.now());
    if (lod === this.lod) return;
    this.lod = lod;
    if (this.hello && this.transport) {
      this.decoder.expectLod(this.hello.sid, lod);
      this.transport.send(encodeControl(Op.SET_LOD, this.hello.sid, lod));
    }
    this._emit('lod', { lod, user });
  }

  requestKeyframe() {
    if (!this.hello || !this.transport) return;
    this._lastKfRequest = this.now();
    this.stats.keyframesRequested += 1;
    this.transport.send(encodeControl(Op.REQUEST_KEYFRAME, this.hello.sid, this.lod));
  }

  // ------------------------------------------------------------------ voice

  /**
   * Unlock sound: call from a user gesture (click, key press). Browsers start an AudioContext
   * 'suspended' until one (the autoplay rule). Resolves with whether sound now plays.
   * @returns {Promise<boolean>}
   */
  async unlockAudio() {
    return this.voice ? this.voice.unlock() : false;
  }

  /** 'locked' (a gesture must call unlockAudio()), 'unlocked', or 'unavailable' (audio 'off'). */
  get soundState() {
    return this.voice?.soundState ?? SoundState.UNAVAILABLE;
  }

  /** Voice volume, 0..1. */
  get volume() { return this.voice?.volume ?? this.options.volume ?? 1; }
  set volume(v) { this.options.volume = v; if (this.voice) this.voice.volume = v; }

  get muted() { return this.voice?.muted ?? this.options.muted ?? false; }
  set muted(m) { this.options.muted = m; if (this.voice) this.voice.muted = m; }

  /**
   * Whether the avatar carries the voice now: the stream has a voice, frames flow and sound is
   * unlocked. A host app that also plays its agent's audio keeps that muted while this is true
   * ('voiceavailable' events; 'voicedegraded' when it turns false).
   */
  get voiceAvailable() {
    return this._voiceAvailable;
  }

  /**
   * Ask for another voice ('opus', 'pcm' or 'off') on the running stream (SET_AUDIO); it is
   * also the voice of every reconnect.
   * @param {'opus'|'pcm'|'off'} audio
   */
  setAudio(audio) {
    if (!['opus', 'pcm', 'off'].includes(audio)) throw new RangeError("audio must be 'opus', 'pcm' or 'off'");
    this.options.audio = audio;
    this._makeVoice();
    if (this.hello && this.transport) this.transport.send(encodeSetAudio(this.hello.sid, AUDIO_CODES[audio]));
  }

  /** Which transport carries the stream now: 'webrtc', 'websocket' or ''. */
  get transportKind() {
    return this.transport?.kind ?? '';
  }

  // ------------------------------------------------------------------ connection

  _makeTransport(kind) {
    const { lod, bits, token, iceServers, audio } = { ...this.options, lod: this.lod };
    if (this.options.createTransport) return this.options.createTransport(kind, { base: this.base, session: this.session, lod, bits, token, audio });
    if (kind === 'webrtc') {
      return new WebRTCTransport(httpUrl(this.base, 'rtc/offer'), { session: this.session, lod, bits, token, audio, iceServers, fetchImpl: this.fetch });
    }
    return new WebSocketTransport(streamUrl(this.base, this.session, { lod, bits, token, audio, mode: 'chained' }));
  }

  _rtcWanted() {
    const pref = this.options.transport;
    if (pref === 'websocket') return false;
    return this.options.createTransport ? true : WebRTCTransport.supported;
  }

  async _open() {
    const gen = this._generation;
    this._setState(ConnectionState.CONNECTING);
    let rtcError = null;
    if (this._rtcWanted()) {
      const t = this._makeTransport('webrtc');
      try {
        await t.connect();
        if (gen !== this._generation) { t.close(); return; }
        this._attach(t);
        return;
      } catch (err) {
        rtcError = err;
        if (gen !== this._generation) return;
        if (err?.status && this._isFatal(4000 + err.status)) return this._fatal(err.message);
        this._emit('fallback', { from: 'webrtc', to: 'websocket', reason: String(err?.message ?? err) });
        if (this.options.transport === 'webrtc') return this._scheduleReconnect(String(err?.message ?? err));
      }
    }
    const ws = this._makeTransport('websocket');
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

  _attach(t) {
    const old = this.transport;
    this.transport = t;
    this.decoder = new Decoder();
    this._lastSeq = -1;
    this._lastLodSeen = -1;
    t.onmessage = (bytes, arrival) => { if (t === this.transport) this._onMessage(bytes, arrival); };
    t.onclose = (info) => this._onClose(t, info);
    if (old && old !== t) old.close();
    this.stats.transport = t.kind;
    this._emit('transport', { transport: t.kind });
  }

  _onClose(t, { code, reason }) {
    if (t !== this.transport) return;
    this.transport = null;
    if (this._closedByUser) return;
    if (this._isFatal(code)) return this._fatal(`closed ${code}: ${reason}`);
    this._setState(ConnectionState.DISCONNECTED);
    this._scheduleReconnect(`closed ${code}${reason ? `: ${reason}` : ''}`);
  }

  _isFatal(code) {
    return FATAL_CLOSE_CODES.includes(code) && !(code === 4404 && this._wasActive);
  }

  _fatal(reason) {
    this._closedByUser = true; // no more retries
    this._generation += 1;
    this._clearTimers();
    this._setState(ConnectionState.ERROR);
    this._emit('error', { reason, fatal: true });
  }

  _scheduleReconnect(reason) {
    if (this._closedByUser) return;
    const delay = this.reconnectBackoff.next();
    this.stats.reconnects += 1;
    this._emit('reconnect', { delay, attempt: this.reconnectBackoff.attempts, reason });
    this._after(delay, () => this._open().catch(() => {}));
  }

  _scheduleRtcRetry() {
    if (this._closedByUser || this.options.transport !== 'auto') return;
    const gen = this._generation;
    this._after(this.rtcBackoff.next(), async () => {
      if (gen !== this._generation || this.transport?.kind !== 'websocket') return;
      const t = this._makeTransport('webrtc');
      try {
        await t.connect();
      } catch {
        this._scheduleRtcRetry();
        return;
      }
      if (gen !== this._generation || this._closedByUser) { t.close(); return; }
      this.rtcBackoff.reset();
      this._attach(t);
    });
  }

  _clearTimers() {
    for (const id of this._timers) {
      clearTimeout(id);
      clearInterval(id);
    }
    this._timers.clear();
  }

  _after(ms, fn) {
    const id = setTimeout(() => { this._timers.delete(id); fn(); }, ms);
    this._timers.add(id);
  }

  _every(ms, fn) {
    const id = setInterval(fn, ms);
    this._timers.add(id);
  }

  // ------------------------------------------------------------------ messages

  _onMessage(bytes, arrival) {
    this.stats.bytesReceived += bytes.length;
    this._window.bytes += bytes.length;
    const t0 = this.now();
    let r;
    try {
      r = this.decoder.feed(bytes);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.stats.protocolErrors += 1;
      this._emit('error', { reason: err.message, fatal: false });
      this.requestKeyframe();
      return;
    }
    switch (r.kind) {
      case 'frame': this._onFrame(r, arrival, t0); break;
      case 'hello': this.helloBytes = bytes.slice(); this._onHello(r); break;
      case 'need_keyframe':
        if (this.now() - this._lastKfRequest > 100) this.requestKeyframe();
        break;
      case 'stale': this.stats.framesStale += 1; break;
      case 'event': this._onEvent(r); break;
      case 'audio':
        if (!this.voice || r.sid !== this.hello?.sid) break;
        if (r.codec === 'opus' && !this.voice.decoder) { this._opusFailed(); break; }
        this.voice.push(r);
        this.playout.noteAudio(arrival, r.t, this.jitter);
        this.playout.tick(arrival, this.voice, this.jitter); // schedule now: a page that renders slowly still plays on time
        break;
      case 'ping': this.transport?.send(encodePong(r.nonce, Math.max(0, Math.round(this.now())))); break;
      case 'pong': this._onPong(r); break;
      case 'error_message': this._emit('error', { reason: `server: ${r.message}`, code: r.code, fatal: false }); break;
      default: break;
    }
  }

  _onHello(hello) {
    const sameShape = this.hello && this.hello.morphNames.length === hello.morphNames.length
      && this.hello.channelNames.length === hello.channelNames.length && this.hello.rig === hello.rig;
    this.hello = hello;
    const width = hello.morphNames.length + hello.channelNames.length;
    const fps = hello.lods[this.lod]?.fps ?? 60;
    if (!sameShape || !this.jitter) {
      this.jitter = new JitterBuffer(width, { frameIntervalMs: 1000 / fps });
      this.out = new Float32Array(width);
    }
    if (this.lod !== this.options.lod && this.transport) {
      // A reconnect subscribes at options.lod; catch up with a level chosen since.
      this.decoder.expectLod(hello.sid, this.lod);
      this.transport.send(encodeControl(Op.SET_LOD, hello.sid, this.lod));
    }
    this._helloVoice(hello);
    this._setState(ConnectionState.READY);
    this._emit('hello', { hello });
    if (!sameShape) this._rebind().catch((err) => this._emit('error', { reason: `bind: ${err.message}`, fatal: false }));
  }

  _onFrame(r, arrival, t0) {
    if (!this.hello || r.sid !== this.hello.sid) return;
    const st = this.decoder.stream(r.sid);
    if (r.lod !== this._lastLodSeen) {
      this._lastLodSeen = r.lod;
      this._lastSeq = -1;
      const fps = this.hello.lods[r.lod]?.fps ?? 60;
      this.jitter.setFrameInterval(1000 / fps);
      this.stats.lod = r.lod;
    }
    if (this._lastSeq >= 0) {
      const gap = (r.seq - this._lastSeq - 1) & 0xffff;
      if (gap < 0x8000) this.stats.framesSkipped += gap;
    }
    this._lastSeq = r.seq;
    this.jitter.push(r.t, st.morphs, st.channels, arrival);
    this.stats.decodeUs += ((this.now() - t0) * 1000 - this.stats.decodeUs) * 0.05;
    this.stats.framesReceived += 1;
    if (!Number.isNaN(this.clockOffset)) {
      const latency = arrival + this.clockOffset - r.t;
      this.stats.latencyMs = Number.isNaN(this.stats.latencyMs) ? latency : this.stats.latencyMs + (latency - this.stats.latencyMs) * 0.1;
    }
    this._lastFrameAt = arrival;
    if (this.state !== ConnectionState.ACTIVE) {
      this._wasActive = true;
      this.reconnectBackoff.reset();
      this._setState(ConnectionState.ACTIVE);
    }
    this._emit('frame', r);
  }

  _onEvent(r) {
    if (r.event === EventKind.STATE) {
      this.sessionState = r.value;
      this._emit('session', { state: r.value });
    } else if (r.event === EventKind.SPEAKING) {
      this.speaking = r.value;
      this._emit('speaking', { speaking: r.value });
    } else if (r.event === EventKind.EMOTION) {
      this.emotion = r.value;
      this._emit('emotion', { emotion: r.value[0], intensity: r.value[1] });
    } else if (r.event === EventKind.VOICE_CUT) {
      this.voice?.cut(r.t, r.value);
    }
  }

  _ping() {
    if (!this.transport) return;
    const nonce = this._nonce++ & 0xffffffff;
    const sent = this.now();
    this._pings.set(nonce, sent);
    if (this._pings.size > 16) this._pings.delete(this._pings.keys().next().value);
    this.transport.send(encodePing(nonce, Math.max(0, Math.round(sent))));
  }

  _onPong({ nonce, t }) {
    const sent = this._pings.get(nonce);
    if (sent === undefined) return;
    this._pings.delete(nonce);
    const recv = this.now();
    const rtt = recv - sent;
    this.stats.rttMs = rtt;
    // Keep the offset of the fastest round trip seen lately (its midpoint guess is the best);
    // let the bar rise slowly so a changed route is followed.
    this._bestRtt = Math.min(this._bestRtt * 1.05 + 0.1, Infinity);
    if (rtt <= this._bestRtt || Number.isNaN(this.clockOffset)) {
      this._bestRtt = rtt;
      this.clockOffset = t - (sent + recv) / 2;
    }
  }

  // ------------------------------------------------------------------ binding, stats, events

  async _rebind() {
    const target = this._bindTarget;
    const hello = this.hello;
    if (!target || !hello) return null;
    const rig = target.rig !== undefined ? target.rig : await this._rigInfo(hello.rig);
    if (this._bindTarget !== target || this.hello !== hello) return this.binding;
    this.binding?.reset();
    this.binding = new RigBinding(target.object3D, { morphNames: hello.morphNames, channelNames: hello.channelNames, rig });
    this._emit('bound', { binding: this.binding });
    return this.binding;
  }

  async _rigInfo(name) {
    if (this.options.rigs[name]) return this.options.rigs[name];
    if (this._rigCache.has(name)) return this._rigCache.get(name);
    let rig = null;
    if (this.fetch && this.base) {
      try {
        const headers = this.options.token ? { authorization: `Bearer ${this.options.token}` } : {};
        const res = await this.fetch(httpUrl(this.base, `rigs/${encodeURIComponent(name)}`), { headers });
        if (res.ok) rig = await res.json();
      } catch { /* no rig endpoint: fall back */ }
    }
    rig ??= this.options.rigFallback?.[name] ?? null;
    this._rigCache.set(name, rig);
    return rig;
  }

  _tickStats(nowMs) {
    const w = this._window;
    if (Number.isNaN(w.start)) { w.start = nowMs; return; }
    const span = nowMs - w.start;
    if (span < 1000) return;
    this.stats.renderFps = (w.renders * 1000) / span;
    this.stats.kbps = (w.bytes * 8) / span;
    w.start = nowMs; w.renders = 0; w.bytes = 0;
    if (this.budget && this.transport && this.state === ConnectionState.ACTIVE) {
      const next = this.budget.update(nowMs, { fps: this.stats.renderFps, kbps: this.stats.kbps });
      if (next !== null) this.setLod(next, { user: false });
    }
    this._emit('stats', { ...this.stats });
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.stats.state = state;
    this._emit('state', { state, transport: this.transportKind });
    this._checkVoiceAvailable();
  }

  // ------------------------------------------------------------------ voice internals

  /** Make (or drop) the VoicePlayer the `audio` option asks for; its events are re-emitted. */
  _makeVoice() {
    if (this.options.audio === 'off') {
      this.voice?.close();
      this.voice = null;
      this._checkVoiceAvailable();
      return;
    }
    if (this.voice) return;
    const create = this.options.createAudioContext ?? (() => new AudioContext({ latencyHint: 'interactive' }));
    let context;
    try {
      context = create();
    } catch (err) {
      this.options.audio = 'off';
      this._emit('error', { reason: `no sound: ${err?.message ?? err}`, fatal: false });
      return;
    }
    const voice = new VoicePlayer(context, { volume: this.options.volume ?? 1, muted: this.options.muted ?? false, now: this.now, ...this.options.voice });
    for (const type of ['voicestart', 'voicestop', 'voicecut', 'sound']) {
      voice.addEventListener(type, (e) => {
        this._emit(type, /** @type {CustomEvent} */ (e).detail);
        if (type === 'sound') this._checkVoiceAvailable();
      });
    }
    this.voice = voice;
    this._emit('sound', { state: voice.soundState, volume: voice.volume, muted: voice.muted });
  }

  /** A hello names the stream's voice: configure the player, or ask for PCM if it cannot play Opus. */
  _helloVoice(hello) {
    if (!this.voice) return;
    if (!hello.audio) { this.voice.reset(); this._checkVoiceAvailable(); return; }
    this.voice.reset();
    if (!this.voice.configure(hello.audio, hello.audioRate) && this.transport) {
      this.options.audio = 'pcm';
      this.transport.send(encodeSetAudio(hello.sid, AudioCodec.PCM16));
    }
    this._checkVoiceAvailable();
  }

  /** The Opus decoder failed (or is gone): ask for PCM instead, once, and say so. */
  _opusFailed() {
    if (this.options.audio === 'pcm' || !this.transport || !this.hello) return;
    this.options.audio = 'pcm';
    this.transport.send(encodeSetAudio(this.hello.sid, AudioCodec.PCM16));
    this._emit('error', { reason: 'the Opus decoder failed: asking for PCM', fatal: false });
  }

  _checkVoiceAvailable() {
    const v = this.voice;
    let reason = '';
    if (!v || !this.hello?.audio) reason = 'no-voice';
    else if (v.soundState !== SoundState.UNLOCKED) reason = 'locked';
    else if (this.state !== ConnectionState.ACTIVE) reason = this.state;
    const available = reason === '';
    if (available === this._voiceAvailable) return;
    this._voiceAvailable = available;
    this._emit('voiceavailable', { available, reason });
    if (!available) this._emit('voicedegraded', { reason });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
