// The client-side performance budget: watch render fps and received bandwidth, ask the server
// for a coarser LOD (higher number: fewer morphs, lower fps) when over budget, and a finer one
// when there is headroom. Hysteresis keeps it from flapping:
//   - over budget must last `downAfterMs` before stepping down, headroom `upAfterMs` (longer);
//   - "headroom" needs fps above minFps * (1 + fpsMargin) and kbps below maxKbps * kbpsHeadroom,
//     so the band between "over" and "headroom" changes nothing;
//   - after any change, `cooldownMs` passes before the next one (the new level needs time to
//     show its own fps and bandwidth).
// Pure logic with time as an argument: the client feeds it once per stats interval.

/**
 * @typedef {object} BudgetOptions
 * @property {number} [minFps=45]          render fps below this is over budget
 * @property {number} [maxKbps=512]        received kbit/s above this is over budget
 * @property {number} [fpsMargin=0.15]     headroom needs fps >= minFps * (1 + fpsMargin)
 * @property {number} [kbpsHeadroom=0.5]   headroom needs kbps <= maxKbps * kbpsHeadroom
 * @property {number} [downAfterMs=2000]   how long over budget before stepping down
 * @property {number} [upAfterMs=8000]     how long with headroom before stepping up
 * @property {number} [cooldownMs=5000]    quiet time after any change
 * @property {number} [finestLod=0]        never ask for more detail than this
 * @property {number} [coarsestLod=3]      never ask for less detail than this
 */

export class LodBudget {
  /**
   * @param {number} lod the level in use now
   * @param {BudgetOptions} [options]
   */
  constructor(lod, {
    minFps = 45, maxKbps = 512, fpsMargin = 0.15, kbpsHeadroom = 0.5,
    downAfterMs = 2000, upAfterMs = 8000, cooldownMs = 5000, finestLod = 0, coarsestLod = 3,
  } = {}) {
    Object.assign(this, { minFps, maxKbps, fpsMargin, kbpsHeadroom, downAfterMs, upAfterMs, cooldownMs, finestLod, coarsestLod });
    this.lod = Math.min(coarsestLod, Math.max(finestLod, lod));
    this.overSince = NaN;
    this.roomSince = NaN;
    this.changedAt = -Infinity;
  }

  /** Tell the controller about a level set from elsewhere (the user's selector). */
  setLod(lod, nowMs) {
    this.lod = lod;
    this.changedAt = nowMs;
    this.overSince = NaN;
    this.roomSince = NaN;
  }

  /**
   * Feed one measurement. Returns the new LOD to ask for, or null to stay.
   * @param {number} nowMs
   * @param {{fps: number, kbps: number}} m render fps and received kbit/s over the last interval
   * @returns {number | null}
   */
  update(nowMs, { fps, kbps }) {
    const over = fps < this.minFps || kbps > this.maxKbps;
    const room = fps >= this.minFps * (1 + this.fpsMargin) && kbps <= this.maxKbps * this.kbpsHeadroom;
    if (over) {
      if (Number.isNaN(this.overSince)) this.overSince = nowMs;
    } else this.overSince = NaN;
    if (room) {
      if (Number.isNaN(this.roomSince)) this.roomSince = nowMs;
    } else this.roomSince = NaN;
    if (nowMs - this.changedAt < this.cooldownMs) return null;
    let next = null;
    if (over && nowMs - this.overSince >= this.downAfterMs && this.lod < this.coarsestLod) next = this.lod + 1;
    else if (room && nowMs - this.roomSince >= this.upAfterMs && this.lod > this.finestLod) next = this.lod - 1;
    if (next !== null) this.setLod(next, nowMs);
    return next;
  }
}
