// A small jitter buffer: frames go in as they arrive (irregularly), values come out at display
// rate, interpolated between the two received frames that bracket the render time.
//
// Time. Frames carry the server's stream time `t` (ms). Each arrival gives a sample of
//   offset = arrival (local ms) - t (server ms)
// The smallest offset seen is the least-delayed path; it only grows back slowly (`relax`), so a
// clock drift or a transport switch is followed within seconds. The render time is
//   renderT = now - offset - delayMs        (delayMs defaults to one frame interval)
// so a frame that arrived on the fastest path is shown at most one interval late.
//
// Layout. A ring of `capacity` slots; slot k holds times[k] and values[k*width .. k*width+width)
// (morphs then channels, rig order). `push` copies into the slot, nothing is allocated per frame.
//
//   slot:    0        1        2   ...   capacity-1
//   times:  [t0]     [t1]     [t2]
//   values: [m.. c..][m.. c..][m.. c..]
//
// Past the newest frame the values are extrapolated along the last segment for at most
// `maxExtrapolationMs`, then held. A morph weight is not extrapolated out of [0, 1] when both
// frames are inside it: a blink reopening fast would otherwise get a negative weight for a
// few frames, which opens the eye wider than at rest (a stare).
//
// Lateness. `lateMs` estimates the 95th percentile of how much later than the fastest path
// frames arrive (a quantile tracker: it climbs LATE_STEP_MS x 0.95 per later frame and falls
// LATE_STEP_MS x 0.05 per earlier one). A delay of one interval plus `lateMs` interpolates
// nearly every frame instead of extrapolating past the newest; a voice's playout uses it as the
// face's floor (playout.js).
//
// Gaps. A chained stream sends nothing while the face is still (docs/protocol.md 6.4), so two
// frames far apart mean "held, then changed": across a gap longer than 1.5 intervals the older
// value is held until one interval before the newer frame, then interpolated over that
// interval (not smeared over the whole gap).

/** Result of {@link JitterBuffer#sample}. */
/** The ring never grows past this many frames (about 2 s at 60 fps). */
const MAX_CAPACITY = 128;
/** The share of frames the lateness estimate covers. */
export const LATE_QUANTILE = 0.95;
/** Step of the lateness estimate per frame (ms): at 60 fps it climbs up to 114 ms/s, falls 6 ms/s. */
export const LATE_STEP_MS = 2;

export const SampleStatus = Object.freeze({
  EMPTY: 'empty',
  HOLD: 'hold',
  INTERPOLATE: 'interpolate',
  EXTRAPOLATE: 'extrapolate',
});

/**
 * @typedef {object} JitterBufferOptions
 * @property {number} [capacity=8]            frames kept
 * @property {number} [frameIntervalMs=1000/60] expected spacing of frames (from the LOD's fps)
 * @property {number} [delayMs]               playout delay; default one frame interval
 * @property {number} [maxExtrapolationMs]    cap on extrapolation; default min(interval, 50)
 * @property {number} [relax=0.02]            per-frame fraction by which the offset climbs back
 */

export class JitterBuffer {
  /**
   * @param {number} width values per frame (morphs + channels)
   * @param {JitterBufferOptions} [options]
   */
  constructor(width, { capacity = 8, frameIntervalMs = 1000 / 60, delayMs, maxExtrapolationMs, relax = 0.02 } = {}) {
    if (!(width > 0) || !(capacity >= 2)) throw new RangeError('need width > 0 and capacity >= 2');
    this.width = width;
    this.capacity = capacity;
    this.times = new Float64Array(capacity);
    this.values = new Float32Array(capacity * width);
    this.relax = relax;
    this._fixedDelay = delayMs;
    this._fixedExtra = maxExtrapolationMs;
    this.minDelayMs = 0;
    this.setFrameInterval(frameIntervalMs);
    this.reset();
  }

  /** Follow the stream's frame rate (call when the LOD changes). */
  setFrameInterval(ms) {
    this.frameIntervalMs = ms;
    this.delayMs = Math.max(this._fixedDelay ?? ms, this.minDelayMs);
    this.maxExtrapolationMs = this._fixedExtra ?? Math.min(ms, 50);
    // The ring must reach back past the render time (a long voice delay at 60 fps).
    this._grow(Math.min(MAX_CAPACITY, Math.ceil(this.delayMs / ms) + 2));
  }

  /** Enlarge the ring to `n` slots, keeping the frames held (oldest first). */
  _grow(n) {
    if (n <= this.capacity) return;
    const { width, count } = this;
    const times = new Float64Array(n);
    const values = new Float32Array(n * width);
    for (let i = 0; i < count; i++) {
      const k = (this.head - count + 1 + i + this.capacity) % this.capacity;
      times[i] = this.times[k];
      values.set(this.values.subarray(k * width, k * width + width), i * width);
    }
    this.times = times;
    this.values = values;
    this.capacity = n;
    if (count) this.head = count - 1;
  }

  /**
   * Never show frames sooner than `ms` after their fastest arrival: a voice played with the
   * face needs its audio output latency here (sound scheduled now is heard that much later).
   */
  setMinDelay(ms) {
    this.minDelayMs = ms;
    this.setFrameInterval(this.frameIntervalMs);
  }

  /** Forget every frame and the clock offset (a new stream, or a server restart). */
  reset() {
    this.count = 0;      // frames held (<= capacity)
    this.head = -1;      // slot of the newest frame
    this.offset = NaN;   // local - server ms; NaN until the first frame
    this.pushed = 0;
    this.dropped = 0;    // frames refused as older than the newest
    this.lateMs = 0;     // ~95th percentile of arrival after the fastest path (ms)
    this.morphCount = 0; // leading values that are morph weights (the rest: channels)
  }

  /** Newest frame's server time, or NaN. */
  get newestT() {
    return this.count ? this.times[this.head] : NaN;
  }

  /**
   * Store a frame. Frames older than (or as old as) the newest are refused and counted.
   * @param {number} t server stream time, ms
   * @param {ArrayLike<number>} morphs
   * @param {ArrayLike<number>} channels
   * @param {number} arrivalMs local time of arrival (same clock as `sample`'s `nowMs`)
   * @returns {boolean} whether the frame was stored
   */
  push(t, morphs, channels, arrivalMs) {
    if (this.count && t <= this.times[this.head]) {
      this.dropped += 1;
      return false;
    }
    if (this.count && t - this.times[this.head] > 10000) this.reset(); // the stream restarted
    const s = arrivalMs - t;
    if (Number.isNaN(this.offset) || s < this.offset) this.offset = s;
    else this.offset += (s - this.offset) * this.relax;
    const late = s - this.offset;
    this.lateMs = Math.max(0, this.lateMs + LATE_STEP_MS * (late > this.lateMs ? LATE_QUANTILE : LATE_QUANTILE - 1));
    this.head = (this.head + 1) % this.capacity;
    if (this.count < this.capacity) this.count += 1;
    this.times[this.head] = t;
    const base = this.head * this.width;
    const nm = morphs.length;
    this.morphCount = nm;
    const v = this.values;
    for (let i = 0; i < nm; i++) v[base + i] = morphs[i];
    for (let i = 0, n = Math.min(channels.length, this.width - nm); i < n; i++) v[base + nm + i] = channels[i];
    this.pushed += 1;
    return true;
  }

  /** The server time shown at local time `nowMs`. */
  renderTime(nowMs) {
    return nowMs - this.offset - this.delayMs;
  }

  /**
   * Write the values for local time `nowMs` into `out` (length >= width).
   * @param {number} nowMs
   * @param {Float32Array} out
   * @returns {string} a {@link SampleStatus}
   */
  sample(nowMs, out) {
    const { count, capacity, width, times, values } = this;
    if (count === 0) return SampleStatus.EMPTY;
    const rt = this.renderTime(nowMs);
    const newest = this.head;
    if (count === 1 || rt <= times[(newest - count + 1 + capacity) % capacity]) {
      // Too early for anything but the oldest frame we have (or only one frame): hold it.
      const k = count === 1 ? newest : (newest - count + 1 + capacity) % capacity;
      out.set(values.subarray(k * width, k * width + width));
      return SampleStatus.HOLD;
    }
    const prev = (newest - 1 + capacity) % capacity;
    if (rt >= times[newest]) {
      const span = Math.min(times[newest] - times[prev], this.frameIntervalMs);
      const ahead = Math.min(rt - times[newest], this.maxExtrapolationMs);
      const a = newest * width;
      const b = prev * width;
      if (ahead <= 0 || span <= 0) {
        out.set(values.subarray(a, a + width));
        return SampleStatus.HOLD;
      }
      const f = ahead / span;
      const nm = this.morphCount;
      for (let i = 0; i < width; i++) {
        const va = values[a + i];
        const vb = values[b + i];
        let x = va + (va - vb) * f;
        if (i < nm) {
          if (x < 0 && va >= 0 && vb >= 0) x = 0;
          else if (x > 1 && va <= 1 && vb <= 1) x = 1;
        }
        out[i] = x;
      }
      return SampleStatus.EXTRAPOLATE;
    }
    // Walk back from the newest to the segment [k0, k1] that holds rt.
    let k1 = newest;
    let k0 = prev;
    for (let n = 1; n < count - 1 && times[k0] > rt; n++) {
      k1 = k0;
      k0 = (k0 - 1 + capacity) % capacity;
    }
    const t1 = times[k1];
    const t0 = t1 - times[k0] > 1.5 * this.frameIntervalMs ? t1 - this.frameIntervalMs : times[k0];
    const f = rt <= t0 ? 0 : (rt - t0) / (t1 - t0);
    const a = k0 * width;
    const b = k1 * width;
    for (let i = 0; i < width; i++) out[i] = values[a + i] + (values[b + i] - values[a + i]) * f;
    return SampleStatus.INTERPOLATE;
  }
}
