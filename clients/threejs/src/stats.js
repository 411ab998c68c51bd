// StatsMeter: the client's `stats` object and the counting behind it. Counters are bumped as
// messages arrive and frames render; rates (render fps, received kbit/s) are measured over
// windows of at least STATS_WINDOW_MS, closed by tick() from the render loop.
//
// decodeUs / applyUs are moving averages of performance.now() differences: in a page that is
// not cross-origin isolated the browser coarsens that clock (100 us in Chromium), so they are
// rough; time many frames at once for a real figure (the demo's measure()).
// Pure bookkeeping with time as an argument.

import { SampleStatus } from './jitter.js';

/** Shortest span (ms) over which renderFps and kbps are measured. */
export const STATS_WINDOW_MS = 1000;
/** Weight of the newest sample in the decodeUs / applyUs averages. */
const US_WEIGHT = 0.05;
/** Weight of the newest sample in the latencyMs average. */
const LATENCY_WEIGHT = 0.1;

/**
 * @typedef {object} ClientStats the shape of `client.stats` (types/index.d.ts ClientStats)
 * @property {string} transport
 * @property {string} state
 * @property {number} lod
 * @property {number} renderFps
 * @property {number} kbps
 * @property {number} latencyMs
 * @property {number} rttMs
 * @property {number} framesReceived
 * @property {number} framesRendered
 * @property {number} framesSkipped
 * @property {number} framesStale
 * @property {number} keyframesRequested
 * @property {number} protocolErrors
 * @property {number} bytesReceived
 * @property {number} reconnects
 * @property {number} decodeUs
 * @property {number} applyUs
 * @property {string} sampleStatus
 */

export class StatsMeter {
  /**
   * @param {{state: string, lod: number}} initial the client's connection state and level
   */
  constructor({ state, lod }) {
    /** @type {ClientStats} the live object (callers may set state, transport, rttMs, counters) */
    this.stats = {
      transport: '', state, lod, renderFps: 0, kbps: 0, latencyMs: NaN, rttMs: NaN,
      framesReceived: 0, framesRendered: 0, framesSkipped: 0, framesStale: 0, keyframesRequested: 0,
      protocolErrors: 0, bytesReceived: 0, reconnects: 0, decodeUs: 0, applyUs: 0, sampleStatus: SampleStatus.EMPTY,
    };
    this._window = { start: NaN, renders: 0, bytes: 0 };
    this._lastSeq = -1;
    this._lastLod = -1;
  }

  /** A new transport carries the stream: sequence numbers start over. */
  newStream() {
    this._lastSeq = -1;
    this._lastLod = -1;
  }

  /**
   * A message of `n` bytes arrived.
   * @param {number} n
   */
  countBytes(n) {
    this.stats.bytesReceived += n;
    this._window.bytes += n;
  }

  /**
   * A frame of level `lod` with sequence number `seq` (u16) arrived: count the frames skipped
   * since the previous one of the same level. Returns whether the level differs from the
   * previous frame's (the frame rate changed with it).
   * @param {number} lod
   * @param {number} seq
   * @returns {boolean}
   */
  countFrame(lod, seq) {
    const lodChanged = lod !== this._lastLod;
    if (lodChanged) {
      this._lastLod = lod;
      this._lastSeq = -1;
      this.stats.lod = lod;
    }
    if (this._lastSeq >= 0) {
      const gap = (seq - this._lastSeq - 1) & 0xffff;
      if (gap < 0x8000) this.stats.framesSkipped += gap; // a reordered (older) frame is no gap
    }
    this._lastSeq = seq;
    return lodChanged;
  }

  /**
   * A frame was decoded and stored in `decodeUs`; `latencyMs` is its arrival against its stream
   * time (NaN while the clock offset is unknown: not averaged).
   * @param {number} decodeUs
   * @param {number} latencyMs
   */
  frameDecoded(decodeUs, latencyMs) {
    const s = this.stats;
    s.decodeUs += (decodeUs - s.decodeUs) * US_WEIGHT;
    s.framesReceived += 1;
    if (Number.isNaN(latencyMs)) return;
    s.latencyMs = Number.isNaN(s.latencyMs) ? latencyMs : s.latencyMs + (latencyMs - s.latencyMs) * LATENCY_WEIGHT;
  }

  /**
   * A rendered frame applied sampled values in `applyUs`.
   * @param {number} applyUs
   */
  frameRendered(applyUs) {
    this.stats.applyUs += (applyUs - this.stats.applyUs) * US_WEIGHT;
    this.stats.framesRendered += 1;
    this._window.renders += 1;
  }

  /**
   * Called once per rendered frame: closes the measuring window once it spans STATS_WINDOW_MS,
   * updating renderFps and kbps. Returns whether it did (time to report the stats).
   * @param {number} nowMs
   * @returns {boolean}
   */
  tick(nowMs) {
    const w = this._window;
    if (Number.isNaN(w.start)) {
      w.start = nowMs;
      return false;
    }
    const span = nowMs - w.start;
    if (span < STATS_WINDOW_MS) return false;
    this.stats.renderFps = (w.renders * 1000) / span;
    this.stats.kbps = (w.bytes * 8) / span;
    w.start = nowMs;
    w.renders = 0;
    w.bytes = 0;
    return true;
  }

  /** A copy of the stats (what a 'stats' event carries). */
  snapshot() {
    return { ...this.stats };
  }
}
