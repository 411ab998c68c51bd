// ClockSync: the server's stream clock as seen from here, from PING/PONG round trips.
//
// The client sends PING {nonce, t: local ms}; the server answers PONG {nonce, t: its stream ms}.
// Assuming the two legs of a round trip take equal time, the server read its clock halfway:
//   offset = server t - (sent + received) / 2           (server ms minus local ms)
// The round trip with the least delay gives the best guess, so the offset of the fastest one seen
// lately is kept; the bar it sets rises 5 % (+0.1 ms) per pong, so a changed route is followed.
// Pure bookkeeping with time as an argument.

/** Pings remembered while awaiting their pong (older ones are forgotten). */
export const MAX_PENDING_PINGS = 16;

export class ClockSync {
  constructor() {
    /** Server stream ms minus local ms (NaN until the first pong). */
    this.offset = NaN;
    /** The last round trip, ms (NaN until the first pong). */
    this.rttMs = NaN;
    this._bestRtt = Infinity;
    this._nonce = 1;
    /** @type {Map<number, number>} nonce -> local ms sent */
    this._pings = new Map();
  }

  /**
   * A PING is sent at local `sentMs`: returns the nonce to send with it.
   * @param {number} sentMs
   * @returns {number}
   */
  ping(sentMs) {
    const nonce = this._nonce++ & 0xffffffff;
    this._pings.set(nonce, sentMs);
    if (this._pings.size > MAX_PENDING_PINGS) this._pings.delete(this._pings.keys().next().value);
    return nonce;
  }

  /**
   * A PONG for `nonce` carrying server time `serverMs` arrived at local `recvMs`. Returns the
   * round trip (ms), or NaN for a nonce not awaited (unknown, answered, or forgotten).
   * @param {number} nonce
   * @param {number} serverMs
   * @param {number} recvMs
   * @returns {number}
   */
  pong(nonce, serverMs, recvMs) {
    const sent = this._pings.get(nonce);
    if (sent === undefined) return NaN;
    this._pings.delete(nonce);
    const rtt = recvMs - sent;
    this.rttMs = rtt;
    this._bestRtt = this._bestRtt * 1.05 + 0.1;
    if (rtt <= this._bestRtt || Number.isNaN(this.offset)) {
      this._bestRtt = rtt;
      this.offset = serverMs - (sent + recvMs) / 2;
    }
    return rtt;
  }

  /**
   * How long after its stream time `t` a message arriving at local `arrivalMs` came (NaN until
   * the first pong).
   * @param {number} arrivalMs
   * @param {number} t
   * @returns {number}
   */
  latencyMs(arrivalMs, t) {
    return arrivalMs + this.offset - t;
  }
}

