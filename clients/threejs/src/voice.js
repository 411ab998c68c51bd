// VoicePlayer: plays the avatar's voice (AUDIO messages, docs/protocol.md 3.8) through WebAudio
// on the same timeline as the face. Its one job is scheduling decoded audio on the jitter
// buffer's playout clock.
//
// Clocks. A packet carries `t`, the stream-clock time of its first sample, the same clock as the
// frames. The jitter buffer shows the frame of stream time t at local time
//   local = t + map          map = jitter.offset + jitter.delayMs   (performance.now() ms)
// and the voice must be *heard* then. The AudioContext has its own clock; getOutputTimestamp()
// (or currentTime and outputLatency/baseLatency where that is missing) says which context time
// reaches the speaker at which performance.now(), so
//   when = (local + ctxMinusPerf) / 1000        (seconds on the context clock)
// Both are smoothed: `ctxMinusPerf` a little per tick (it jumps only when far off); `map` is
// taken as it is between utterances and followed with a 0.5 s time constant while one plays
// (the jitter offset relaxing, a changed playout delay), so slow drift is followed.
//
// Schedule. Packets of one utterance are contiguous (packet seq+1 starts where seq ends):
// they are scheduled back to back, sample-exact, as long as that position stays within
// `toleranceMs` of the mapped time; past that (drift, a long stall) and at every gap in `t`
// (a new utterance) the run re-anchors on the mapped time. A lost packet inside an utterance
// leaves its 20 ms silent and keeps the schedule (concealment; WebCodecs exposes no Opus PLC).
// Packets are scheduled `horizonMs` ahead of their time, so a VOICE_CUT can still drop most of
// them, and stopped at the cut time if they already play.
//
// Autoplay. An AudioContext starts 'suspended' until a user gesture: the sound state is
// 'locked', nothing is scheduled and packets whose time passes are dropped (the queue stays
// bounded); unlock() (call it from a click handler) resumes it and the voice joins mid-word.
//
// Events (CustomEvent): 'voicestart' {t}, 'voicestop' {t, reason: 'end'|'cut'|'reset'},
// 'voicecut' {t, nextSeq}, 'sound' {state: 'locked'|'unlocked'|'unavailable', volume, muted}.

import { AUDIO_PACKET_MS } from './protocol.js';

export const SoundState = Object.freeze({ LOCKED: 'locked', UNLOCKED: 'unlocked', UNAVAILABLE: 'unavailable' });

const perfNow = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());
/** Serial-number order of two u16 sequence numbers (docs/protocol.md 2): is `a` older than `b`? */
const seqOlder = (a, b) => a !== b && ((b - a) & 0xffff) < 0x8000;

/**
 * The voice a client should ask for in this environment: 'opus' where WebCodecs' AudioDecoder
 * exists, 'pcm' where only WebAudio does, 'off' without WebAudio.
 * @param {any} [scope=globalThis]
 * @returns {'opus'|'pcm'|'off'}
 */
export function preferredAudio(scope = globalThis) {
  if (typeof scope.AudioContext !== 'function') return 'off';
  return typeof scope.AudioDecoder === 'function' && typeof scope.EncodedAudioChunk === 'function' ? 'opus' : 'pcm';
}

/**
 * @typedef {object} VoiceOptions
 * @property {number} [horizonMs=500]    schedule packets this far ahead of their time (the server
 *   sends them about 250 ms ahead; scheduled ones can still be stopped by a cut)
 * @property {number} [toleranceMs=15]   back-to-back drift allowed before a run re-anchors
 * @property {number} [maxQueue=100]     packets held (100 x 20 ms = 2 s; the server sends <= 1 s ahead)
 * @property {number} [jumpMs=60]        clock mappings further off than this jump instead of slewing
 * @property {number} [hangoverMs=150]   silence after the last packet before 'voicestop'
 * @property {number} [marginMs=25]      added to the measured output latency (an audio callback,
 *   decoding, a late tick): the playout delay a face needs to be heard with its voice
 * @property {number} [volume=1]
 * @property {boolean} [muted=false]
 * @property {any} [AudioDecoderImpl]    WebCodecs' AudioDecoder (tests inject a fake)
 * @property {any} [EncodedAudioChunkImpl]
 * @property {() => number} [now]        performance.now
 */

export class VoicePlayer extends EventTarget {
  /**
   * @param {AudioContext} context the context to play through (created by the caller, so a
   *   page can create it inside a gesture, or share one)
   * @param {VoiceOptions} [options]
   */
  constructor(context, options = {}) {
    super();
    this.context = context;
    this.options = { horizonMs: 500, toleranceMs: 15, maxQueue: 100, jumpMs: 60, hangoverMs: 150, marginMs: 25, ...options };
    this.now = this.options.now ?? perfNow;
    this.AudioDecoderImpl = 'AudioDecoderImpl' in options ? options.AudioDecoderImpl : globalThis.AudioDecoder;
    this.EncodedAudioChunkImpl = 'EncodedAudioChunkImpl' in options ? options.EncodedAudioChunkImpl : globalThis.EncodedAudioChunk;
    /** The node everything plays through (volume and mute); connected to the destination. Tap it to record. */
    this.output = context.createGain();
    this.output.connect(context.destination);
    this._volume = this.options.volume ?? 1;
    this._muted = this.options.muted ?? false;
    this._applyGain();
    this.codec = null;
    this.rate = 0;
    this.decoder = null;
    /** @type {Array<{seq: number, t: number, ms: number, rate: number, samples: Float32Array|null}>} sorted by t */
    this.queue = [];
    this._decoding = [];
    /** @type {Array<{node: AudioBufferSourceNode, start: number, end: number, t: number, endT: number}>} */
    this.sources = [];
    this.map = NaN;            // local ms - stream ms, smoothed
    this.ctxMinusPerf = NaN;   // context ms - performance ms (of what is heard), smoothed
    this.pipeMs = NaN;         // currentTime ahead of what is heard (output + base latency), smoothed
    this.runEndT = NaN;        // stream ms where the last scheduled packet ends
    this.runEnd = NaN;         // context s where it ends
    this._lastSeq = -1;
    this._cutSeq = -1;         // after VOICE_CUT: packets older than this are dropped
    this._playing = false;
    this._playEndLocal = -Infinity;
    this._lastTick = 0;
    /** @type {{local: number, t: number} | null} */
    this._pendingStart = null;
    this._runSeq = -1;         // seq of the last scheduled packet
    this._soundState = '';
    this.stats = { packets: 0, bytes: 0, scheduled: 0, late: 0, stale: 0, overflow: 0, lost: 0, concealedMs: 0, reanchors: 0, cuts: 0, decodeErrors: 0, errorMs: 0, maxErrorMs: 0 };
    context.addEventListener?.('statechange', () => this._soundChanged());
    this._soundChanged();
  }

  // ------------------------------------------------------------------ public API

  /** 'locked' until a gesture resumed the context, then 'unlocked' ('unavailable' once closed). */
  get soundState() {
    const s = this.context.state;
    return s === 'running' ? SoundState.UNLOCKED : s === 'closed' ? SoundState.UNAVAILABLE : SoundState.LOCKED;
  }

  /** Resume the context: call it from a user gesture (click, key) to satisfy the autoplay rule. */
  async unlock() {
    try {
      if (this.context.state !== 'running' && this.context.state !== 'closed') await this.context.resume();
    } catch { /* not allowed without a gesture: still locked */ }
    this._soundChanged();
    return this.soundState === SoundState.UNLOCKED;
  }

  get volume() { return this._volume; }
  set volume(v) {
    this._volume = Math.min(1, Math.max(0, Number(v) || 0));
    this._applyGain();
    this._emitSound();
  }

  get muted() { return this._muted; }
  set muted(m) {
    this._muted = Boolean(m);
    this._applyGain();
    this._emitSound();
  }

  /**
   * How long after now sound scheduled now is heard at the earliest (the context's output
   * latency as measured, plus `marginMs`); NaN until the context runs. The face must be shown
   * at least this late for its voice to keep up (the client sets it as the jitter buffer's
   * minimum delay).
   */
  get latencyMs() {
    return this.pipeMs + this.options.marginMs;
  }

  /** Whether the voice is playing now (between 'voicestart' and 'voicestop'). */
  get playing() { return this._playing; }

  /**
   * Whether sound is scheduled or playing (from the first packet scheduled until `hangoverMs`
   * after the last ends): the playout mapping it was scheduled on must not move under it.
   */
  get busy() { return this._playing || this.now() < this._playEndLocal + this.options.hangoverMs; }

  /**
   * The stream's voice, from its hello. Returns false if this player cannot decode `codec`
   * (Opus without WebCodecs, or a decoder that refused the configuration): ask for 'pcm'.
   * @param {'opus'|'pcm16'|null} codec
   * @param {number} rate
   */
  configure(codec, rate) {
    if (codec === this.codec && rate === this.rate && (codec !== 'opus' || this.decoder)) return true;
    this._closeDecoder();
    this.codec = codec;
    this.rate = rate;
    this._lastSeq = -1;
    if (codec !== 'opus') return true;
    if (typeof this.AudioDecoderImpl !== 'function' || typeof this.EncodedAudioChunkImpl !== 'function') return false;
    try {
      const decoder = new this.AudioDecoderImpl({
        output: (data) => this._decoded(decoder, data),
        error: () => {
          if (decoder !== this.decoder) return; // one failure closes it; later calls say nothing new
          this.stats.decodeErrors += 1;
          this._closeDecoder();
        },
      });
      decoder.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1 });
      this.decoder = decoder;
    } catch {
      this.stats.decodeErrors += 1;
      this.decoder = null;
      return false;
    }
    return true;
  }

  /**
   * One AUDIO result of the decoder (`{seq, t, codec, rate, payload}`).
   * @param {{seq: number, t: number, codec: string, rate: number, payload: Uint8Array}} r
   */
  push(r) {
    this.stats.packets += 1;
    this.stats.bytes += r.payload.length;
    if (this._cutSeq >= 0) {
      if (seqOlder(r.seq, this._cutSeq)) return;
      this._cutSeq = -1;
    }
    if (this._lastSeq >= 0) {
      const gap = (r.seq - this._lastSeq - 1) & 0xffff;
      if (gap < 0x8000) this.stats.lost += gap;
    }
    if (this._lastSeq < 0 || seqOlder(this._lastSeq, r.seq)) this._lastSeq = r.seq;
    if (r.codec === 'pcm16') {
      this._enqueue({ seq: r.seq, t: r.t, ms: (r.payload.length / 2 / r.rate) * 1000, rate: r.rate, samples: pcm16ToFloat(r.payload) });
    } else if (this.decoder) { // (without one, Opus is dropped: the client asks for PCM)
      const p = { seq: r.seq, t: r.t, ms: AUDIO_PACKET_MS, rate: 48000, samples: null };
      if (!this._enqueue(p)) return;
      this._decoding.push(p);
      try {
        this.decoder.decode(new this.EncodedAudioChunkImpl({ type: 'key', timestamp: Math.round(r.t * 1000), data: r.payload }));
      } catch {
        this.stats.decodeErrors += 1;
        this._decoding.pop();
        this.queue.splice(this.queue.indexOf(p), 1);
      }
    }
  }

  /**
   * VOICE_CUT (barge-in): drop every queued packet from stream time `t` on (or older than
   * `nextSeq`), stop what plays at `t`.
   * @param {number} t
   * @param {number} nextSeq
   */
  cut(t, nextSeq) {
    this.stats.cuts += 1;
    this._cutSeq = nextSeq;
    this.queue = this.queue.filter((p) => p.t < t && !seqOlder(p.seq, nextSeq));
    this._decoding.length = 0; // outputs still in flight are discarded (_decoded finds no packet)
    const at = this._ctxTimeOf(t);
    const nowCtx = this.context.currentTime;
    for (const s of this.sources) {
      if (s.t >= t || Number.isNaN(at) || at <= nowCtx) stopNode(s.node, nowCtx);
      else if (s.endT > t) stopNode(s.node, at);
    }
    this.sources = this.sources.filter((s) => s.t < t && !Number.isNaN(at) && at > nowCtx);
    this.runEndT = NaN;
    this.runEnd = NaN;
    this._emit('voicecut', { t, nextSeq });
    if (this._playing) {
      this._playing = false;
      this._emit('voicestop', { t, reason: 'cut' });
    }
  }

  /**
   * Schedule what is due. Call once per rendered frame (the client does, from update()) with
   * the jitter buffer's mapping of stream time to local time.
   * @param {number} nowMs local time (performance.now)
   * @param {number} mapMs local ms minus stream ms at which the face shows a frame (jitter offset + delay)
   */
  tick(nowMs, mapMs) {
    if (Number.isNaN(mapMs)) return;
    // Between utterances the mapping is taken as it is (a run re-anchors anyway); while one
    // plays it follows with a 0.5 s time constant, so arrival jitter does not shake the run.
    const idle = nowMs >= this._playEndLocal;
    const dt = Math.max(0, nowMs - this._lastTick);
    this._lastTick = nowMs;
    if (idle || Number.isNaN(this.map) || Math.abs(mapMs - this.map) > this.options.jumpMs) this.map = mapMs;
    else this.map += (mapMs - this.map) * (1 - Math.exp(-dt / 500));
    if (!this._syncContextClock(nowMs)) {
      this._dropPast(nowMs);
      return;
    }
    this._schedule(nowMs);
    this._trackPlaying(nowMs);
  }

  /** Forget queued audio and sequence state (a new stream); what already plays ends by itself. */
  reset() {
    this.queue.length = 0;
    this._decoding.length = 0;
    this._lastSeq = -1;
    this._cutSeq = -1;
    this.runEndT = NaN;
    this.runEnd = NaN;
    this.map = NaN;
  }

  /** Stop everything and release the decoder (the context stays the caller's). */
  close() {
    this.reset();
    const nowCtx = this.context.currentTime;
    for (const s of this.sources) stopNode(s.node, nowCtx);
    this.sources.length = 0;
    this._closeDecoder();
    this.output.disconnect();
    if (this._playing) {
      this._playing = false;
      this._emit('voicestop', { t: NaN, reason: 'reset' });
    }
  }

  // ------------------------------------------------------------------ internals

  _enqueue(p) {
    const q = this.queue;
    let i = q.length;
    while (i > 0 && q[i - 1].t > p.t) i--;
    if (i > 0 && q[i - 1].t === p.t) return false; // duplicate
    if (!Number.isNaN(this.runEndT) && p.t + p.ms <= this.runEndT - 1) {
      this.stats.stale += 1; // reordered or repeated: its place in the schedule has passed
      return false;
    }
    q.splice(i, 0, p);
    if (q.length > this.options.maxQueue) {
      q.shift();
      this.stats.overflow += 1;
    }
    return true;
  }

  _decoded(decoder, data) {
    try {
      if (decoder !== this.decoder) return;
      const p = this._decoding.shift();
      if (!p) return;
      const n = data.numberOfFrames;
      const samples = new Float32Array(n);
      data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
      p.samples = samples;
      p.rate = data.sampleRate || 48000;
      p.ms = (n / p.rate) * 1000;
    } finally {
      data.close?.();
    }
    this._kick();
  }

  /** Schedule what a decoder output made ready, on the mapping of the last tick. */
  _kick() {
    if (Number.isNaN(this.map)) return;
    const now = this.now();
    if (!this._syncContextClock(now)) return;
    this._schedule(now);
    this._trackPlaying(now);
  }

  _closeDecoder() {
    const d = this.decoder;
    this.decoder = null;
    this._decoding.length = 0;
    this.queue = this.queue.filter((p) => p.samples); // what waited for it cannot play
    try { if (d && d.state !== 'closed') d.close(); } catch { /* already closed */ }
  }

  /**
   * Measure context ms minus performance ms for the sound being heard; false while the
   * context is not running.
   */
  _syncContextClock(nowMs) {
    const ctx = this.context;
    if (ctx.state !== 'running') return false;
    let d;
    const ts = ctx.getOutputTimestamp?.();
    if (ts && ts.performanceTime > 0 && ts.contextTime > 0) d = ts.contextTime * 1000 - ts.performanceTime;
    else d = ctx.currentTime * 1000 - nowMs - ((ctx.outputLatency || 0) + (ctx.baseLatency || 0)) * 1000;
    if (Number.isNaN(this.ctxMinusPerf) || Math.abs(d - this.ctxMinusPerf) > this.options.jumpMs) this.ctxMinusPerf = d;
    else this.ctxMinusPerf += (d - this.ctxMinusPerf) * 0.05;
    const pipe = ctx.currentTime * 1000 - this.now() - this.ctxMinusPerf;
    this.pipeMs = Number.isNaN(this.pipeMs) ? pipe : this.pipeMs + (pipe - this.pipeMs) * 0.05;
    return true;
  }

  /** Context seconds at which stream time `t` must be heard (NaN before the clocks are known). */
  _ctxTimeOf(t) {
    return (t + this.map + this.ctxMinusPerf) / 1000;
  }

  _dropPast(nowMs) {
    if (Number.isNaN(this.map)) return;
    while (this.queue.length && this.queue[0].t + this.queue[0].ms + this.map < nowMs) {
      this.queue.shift();
      this.stats.late += 1;
    }
  }

  _schedule(nowMs) {
    const ctx = this.context;
    const horizon = nowMs + this.options.horizonMs;
    const tol = this.options.toleranceMs / 1000;
    while (this.queue.length) {
      const p = this.queue[0];
      if (p.t + this.map > horizon) break;
      if (!p.samples) {
        if (p.ms === 0 || p.t + p.ms + this.map < nowMs) { this.queue.shift(); this.stats.late += 1; continue; }
        break; // still decoding; keep the order
      }
      this.queue.shift();
      const mapped = this._ctxTimeOf(p.t);
      let when = mapped;
      const ahead = p.t - this.runEndT;
      if (ahead >= -0.5 && ahead <= 500) {
        const contiguous = this.runEnd + ahead / 1000;
        const err = contiguous - mapped;
        this.stats.errorMs = err * 1000;
        this.stats.maxErrorMs = Math.max(this.stats.maxErrorMs, Math.abs(err * 1000));
        if (Math.abs(err) <= tol) {
          when = contiguous;
          if (ahead > 0.5 && p.seq !== ((this._runSeq + 1) & 0xffff)) this.stats.concealedMs += ahead; // lost: silence, schedule kept
        } else this.stats.reanchors += 1;
      }
      const nowCtx = ctx.currentTime;
      let offset = 0;
      if (when < nowCtx) { // late: play the rest of it, or drop it
        offset = nowCtx - when;
        if (offset * 1000 >= p.ms) { this.stats.late += 1; this.runEndT = p.t + p.ms; this.runEnd = when + p.ms / 1000; continue; }
        when = nowCtx;
      }
      const buffer = ctx.createBuffer(1, p.samples.length, p.rate);
      buffer.copyToChannel(p.samples, 0);
      const node = ctx.createBufferSource();
      node.buffer = buffer;
      node.connect(this.output);
      node.start(when, offset);
      const start = when - offset;
      const end = start + p.samples.length / p.rate;
      this.sources.push({ node, start, end, t: p.t, endT: p.t + p.ms });
      this.runEndT = p.t + p.ms;
      this.runEnd = end;
      this._runSeq = p.seq;
      this.stats.scheduled += 1;
      if (!this._playing) this._pendingStart ??= { local: nowMs + (start - nowCtx) * 1000, t: p.t };
      this._playEndLocal = Math.max(this._playEndLocal, nowMs + (end - nowCtx) * 1000);
    }
  }

  _trackPlaying(nowMs) {
    const done = this.context.currentTime - 0.1;
    while (this.sources.length && this.sources[0].end < done) this.sources.shift(); // bounded
    const ps = this._pendingStart;
    if (ps && nowMs >= ps.local) {
      this._pendingStart = null;
      if (!this._playing) {
        this._playing = true;
        this._emit('voicestart', { t: ps.t });
      }
    }
    if (this._playing && !this.queue.length && nowMs > this._playEndLocal + this.options.hangoverMs) {
      this._playing = false;
      this._emit('voicestop', { t: this.runEndT, reason: 'end' });
    }
  }

  _applyGain() {
    const g = this._muted ? 0 : this._volume;
    const p = this.output.gain;
    if (typeof p.setTargetAtTime === 'function' && this.context.state === 'running') p.setTargetAtTime(g, this.context.currentTime, 0.015);
    else p.value = g;
  }

  _soundChanged() {
    const s = this.soundState;
    if (s === this._soundState) return;
    this._soundState = s;
    this._emitSound();
  }

  _emitSound() {
    this._emit('sound', { state: this.soundState, volume: this._volume, muted: this._muted });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function pcm16ToFloat(bytes) {
  const n = bytes.length >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = bytes[2 * i] | (bytes[2 * i + 1] << 8);
    if (v > 32767) v -= 65536;
    out[i] = v / 32768;
  }
  return out;
}

function stopNode(node, at) {
  try { node.stop(at); } catch { /* not started or already stopped */ }
}
