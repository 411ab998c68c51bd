// Reconnect delays: exponential growth with random jitter, so that many clients that lost the
// same server do not all come back in the same millisecond ("thundering herd").
//
//   delay(n) = min(maxMs, initialMs * factor^n) * (1 - jitter + jitter * random())
//
// With the defaults (500 ms, x2, cap 15 s, jitter 0.5) the first retry waits 250..500 ms, the
// fifth 4..8 s, and from the seventh on 7.5..15 s. `random` is injectable for tests.

/**
 * @typedef {object} BackoffOptions
 * @property {number} [initialMs=500]  delay before the first retry, before jitter
 * @property {number} [maxMs=15000]    cap on the delay, before jitter
 * @property {number} [factor=2]       growth per failed attempt
 * @property {number} [jitter=0.5]     fraction of the delay that is random (0 = none, 1 = "full jitter")
 * @property {() => number} [random=Math.random]  uniform [0, 1) source
 */

export class Backoff {
  /** @param {BackoffOptions} [options] */
  constructor({ initialMs = 500, maxMs = 15000, factor = 2, jitter = 0.5, random = Math.random } = {}) {
    if (!(initialMs > 0) || !(maxMs >= initialMs)) throw new RangeError('need 0 < initialMs <= maxMs');
    if (!(factor >= 1)) throw new RangeError('factor must be >= 1');
    if (!(jitter >= 0 && jitter <= 1)) throw new RangeError('jitter must be in 0..1');
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.factor = factor;
    this.jitter = jitter;
    this.random = random;
    /** Failed attempts since the last reset. */
    this.attempts = 0;
  }

  /** The un-jittered delay for the next attempt. */
  peek() {
    return Math.min(this.maxMs, this.initialMs * this.factor ** this.attempts);
  }

  /** The delay (ms) to wait before the next attempt; counts the attempt. */
  next() {
    const base = this.peek();
    this.attempts += 1;
    return base * (1 - this.jitter + this.jitter * this.random());
  }

  /** Call after a connection proved healthy: the next failure starts from `initialMs` again. */
  reset() {
    this.attempts = 0;
  }
}
