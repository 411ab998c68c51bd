// AvatarStreamClient: connects to an avatar-engine session, decodes its stream and drives a
// Three.js object at display rate.
//
//   const client = new AvatarStreamClient();
//   client.addEventListener('state', (e) => console.log(e.detail.state));
//   await client.connect('http://127.0.0.1:8766', 'demo');
//   client.bind(gltf.scene);                  // morphs by name, bones from the rig profile
//   renderer.setAnimationLoop((t) => { client.update(t); renderer.render(scene, camera); });
//
// Connection states ('state' events): idle, connecting, ready (hello received), active (frames
// flowing), degraded (no frame for `stallMs`, or a protocol error), error, disconnected.
// The session's own state pushed by the server (idle, thinking, ...) comes as 'session' events
// together with 'speaking' and 'emotion'.
//
// This class routes the stream's messages; each job lives in its own module:
//   connection.js  transports: WebRTC first, WebSocket fallback, reconnect, fatal close codes
//   clock.js       the server's clock from PING/PONG (clockOffset, stats.latencyMs)
//   stats.js       the `stats` object: counters, render fps and kbit/s per window
//   budget.js      the LOD budget fed by those rates (setLod when over budget or with headroom)
//   voicelink.js   the voice: its player, its events, its availability; playout.js times it
//   rigsource.js   bone data of a rig for binding.js
//   jitter.js      frames in as they arrive, values out at display rate

import { Decoder, EventKind, Op, ProtocolError, encodeControl, encodePing, encodePong } from './protocol.js';
import { JitterBuffer, SampleStatus } from './jitter.js';
import { LodBudget } from './budget.js';
import { RigBinding } from './binding.js';
import { ClockSync } from './clock.js';
import { Connection, ConnectionState, FATAL_CLOSE_CODES, makeTransport } from './connection.js';
import { RigSource } from './rigsource.js';
import { StatsMeter } from './stats.js';
import { Timers } from './timers.js';
import { VoiceLink } from './voicelink.js';
import { SoundState, preferredAudio } from './voice.js';

export { ConnectionState, FATAL_CLOSE_CODES };

const perfNow = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** A need_keyframe within this long (ms) of the last request does not ask again. */
const KEYFRAME_REQUEST_GAP_MS = 100;

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
    /** Every pending timeout and interval (reconnects, WebRTC retries, the ping). */
    this.timers = new Timers();
    this.connection = new Connection(this._connectionHost(), this.options, this.timers);
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
    this.hello = null;
    /** The raw hello message of the current stream (to replay recorded traffic). */
    this.helloBytes = null;
    this.decoder = null;
    this.jitter = null;
    this.binding = null;
    this.out = null;
    this.clock = new ClockSync();
    this.meter = new StatsMeter({ state: this.state, lod: this.lod });
    this.stats = this.meter.stats;
    this.voiceLink = new VoiceLink(this);
    this.rigSource = new RigSource(this.options, this.fetch);
    this._bindTarget = null;
    this._lastFrameAt = NaN;
    this._lastKfRequest = -Infinity;
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
    this.connection.restart();
    this.base = url;
    this.session = session;
    this.voiceLink.make();
    this.timers.every(this.options.pingMs, () => this._ping());
    await this.connection.open();
  }

  /** Close the connection and stop reconnecting. */
  disconnect() {
    this.connection.stop();
    this.voiceLink.reset();
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
    this.voiceLink.tick(nowMs, this.jitter);
    this.meter.frameRendered((this.now() - t0) * 1000);
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
      this.connection.send(encodeControl(Op.SET_LOD, this.hello.sid, lod));
    }
    this._emit('lod', { lod, user });
  }

  /** Ask the server for a keyframe now (a broken delta chain asks by itself). */
  requestKeyframe() {
    if (!this.hello || !this.transport) return;
    this._lastKfRequest = this.now();
    this.stats.keyframesRequested += 1;
    this.connection.send(encodeControl(Op.REQUEST_KEYFRAME, this.hello.sid, this.lod));
  }

  /** The transport that carries the stream now (null between connections). */
  get transport() {
    return this.connection.transport;
  }

  /** Which transport carries the stream now: 'webrtc', 'websocket' or ''. */
  get transportKind() {
    return this.connection.kind;
  }

  /** Reconnect delays (the `reconnect` option); reset once frames flow. */
  get reconnectBackoff() {
    return this.connection.reconnectBackoff;
  }

  /** Delays before retrying WebRTC after a fallback (the `rtcRetry` option). */
  get rtcBackoff() {
    return this.connection.rtcBackoff;
  }

  /** Server stream ms minus local ms, from ping/pong (NaN until the first pong). */
  get clockOffset() {
    return this.clock.offset;
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

  /** @type {import('./voice.js').VoicePlayer | null} plays the voice; made by connect() unless audio is 'off' */
  get voice() {
    return this.voiceLink.player;
  }

  /** 'locked' (a gesture must call unlockAudio()), 'unlocked', or 'unavailable' (audio 'off'). */
  get soundState() {
    return this.voice?.soundState ?? SoundState.UNAVAILABLE;
  }

  /** Voice volume, 0..1. */
  get volume() { return this.voice?.volume ?? this.options.volume ?? 1; }
  set volume(v) { this.options.volume = v; if (this.voice) this.voice.volume = v; }

  /** Whether the voice is muted (it keeps playing silently, in step with the face). */
  get muted() { return this.voice?.muted ?? this.options.muted ?? false; }
  set muted(m) { this.options.muted = m; if (this.voice) this.voice.muted = m; }

  /**
   * Whether the avatar carries the voice now: the stream has a voice, frames flow and sound is
   * unlocked. A host app that also plays its agent's audio keeps that muted while this is true
   * ('voiceavailable' events; 'voicedegraded' when it turns false).
   */
  get voiceAvailable() {
    return this.voiceLink.available;
  }

  /**
   * Ask for another voice ('opus', 'pcm' or 'off') on the running stream (SET_AUDIO); it is
   * also the voice of every reconnect.
   * @param {'opus'|'pcm'|'off'} audio
   */
  setAudio(audio) {
    this.voiceLink.setAudio(audio);
  }

  // ------------------------------------------------------------------ connection

  /** What the Connection reports to: it opens transports, this client decodes what they carry. */
  _connectionHost() {
    return {
      createTransport: (kind) => makeTransport(kind, { ...this.options, lod: this.lod, base: this.base, session: this.session, fetch: this.fetch }),
      setState: (state) => this._setState(state),
      attached: (t) => {
        this.decoder = new Decoder();
        this.meter.newStream();
        this.stats.transport = t.kind;
        this._emit('transport', { transport: t.kind });
      },
      message: (bytes, arrival) => this._onMessage(bytes, arrival),
      emit: (type, detail) => {
        if (type === 'reconnect') this.stats.reconnects += 1;
        this._emit(type, detail);
      },
    };
  }

  _ping() {
    if (!this.transport) return;
    const sent = this.now();
    this.connection.send(encodePing(this.clock.ping(sent), Math.max(0, Math.round(sent))));
  }

  _onPong({ nonce, t }) {
    const rtt = this.clock.pong(nonce, t, this.now());
    if (!Number.isNaN(rtt)) this.stats.rttMs = rtt;
  }

  // ------------------------------------------------------------------ messages

  _onMessage(bytes, arrival) {
    this.meter.countBytes(bytes.length);
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
        if (this.now() - this._lastKfRequest > KEYFRAME_REQUEST_GAP_MS) this.requestKeyframe();
        break;
      case 'stale': this.stats.framesStale += 1; break;
      case 'event': this._onEvent(r); break;
      case 'audio': this.voiceLink.audio(r, arrival, this.jitter); break;
      case 'ping': this.connection.send(encodePong(r.nonce, Math.max(0, Math.round(this.now())))); break;
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
      this.connection.send(encodeControl(Op.SET_LOD, hello.sid, this.lod));
    }
    this.voiceLink.hello(hello);
    this._setState(ConnectionState.READY);
    this._emit('hello', { hello });
    if (!sameShape) this._rebind().catch((err) => this._emit('error', { reason: `bind: ${err.message}`, fatal: false }));
  }

  _onFrame(r, arrival, t0) {
    if (!this.hello || r.sid !== this.hello.sid) return;
    const st = this.decoder.stream(r.sid);
    if (this.meter.countFrame(r.lod, r.seq)) this.jitter.setFrameInterval(1000 / (this.hello.lods[r.lod]?.fps ?? 60));
    this.jitter.push(r.t, st.morphs, st.channels, arrival);
    this.meter.frameDecoded((this.now() - t0) * 1000, this.clock.latencyMs(arrival, r.t));
    this._lastFrameAt = arrival;
    if (this.state !== ConnectionState.ACTIVE) {
      this.connection.healthy();
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
      this.voiceLink.cut(r.t, r.value);
    }
  }

  // ------------------------------------------------------------------ binding, stats, events

  async _rebind() {
    const target = this._bindTarget;
    const hello = this.hello;
    if (!target || !hello) return null;
    const rig = target.rig !== undefined ? target.rig : await this.rigSource.get(hello.rig, this.base);
    if (this._bindTarget !== target || this.hello !== hello) return this.binding;
    this.binding?.reset();
    this.binding = new RigBinding(target.object3D, { morphNames: hello.morphNames, channelNames: hello.channelNames, rig });
    this._emit('bound', { binding: this.binding });
    return this.binding;
  }

  /** Close the stats window when due: feed the LOD budget its rates and report them. */
  _tickStats(nowMs) {
    if (!this.meter.tick(nowMs)) return;
    if (this.budget && this.transport && this.state === ConnectionState.ACTIVE) {
      const next = this.budget.update(nowMs, { fps: this.stats.renderFps, kbps: this.stats.kbps });
      if (next !== null) this.setLod(next, { user: false });
    }
    this._emit('stats', this.meter.snapshot());
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.stats.state = state;
    this._emit('state', { state, transport: this.transportKind });
    this.voiceLink.check();
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
