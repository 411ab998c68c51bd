// Timers: the client's pending timeouts and intervals, kept together so that a disconnect (or a
// fatal close) cancels every one of them at once: reconnects, WebRTC retries and the ping.

export class Timers {
  constructor() {
    /** @type {Set<ReturnType<typeof setTimeout>>} */
    this._ids = new Set();
  }

  /**
   * Run `fn` once after `ms`.
   * @param {number} ms
   * @param {() => void} fn
   */
  after(ms, fn) {
    const id = setTimeout(() => { this._ids.delete(id); fn(); }, ms);
    this._ids.add(id);
  }

  /**
   * Run `fn` every `ms` until clear().
   * @param {number} ms
   * @param {() => void} fn
   */
  every(ms, fn) {
    this._ids.add(setInterval(fn, ms));
  }

  /** Cancel everything pending. */
  clear() {
    for (const id of this._ids) {
      clearTimeout(id);
      clearInterval(id);
    }
    this._ids.clear();
  }

  /** How many timers are pending. */
  get size() {
    return this._ids.size;
  }
}
