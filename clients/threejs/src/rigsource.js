// RigSource: the bone data of a rig by name, for RigBinding. In order: the client's `rigs`
// option, what this source fetched before, GET {base}/rigs/{name}, the `rigFallback` option,
// else null (only morphs are driven). Each name is looked up once; a failed fetch is cached as
// its fallback too.

import { httpUrl } from './transports.js';

/**
 * @typedef {object} RigSourceOptions read live, at each lookup
 * @property {Record<string, import('./binding.js').RigBones>} rigs
 * @property {Record<string, import('./binding.js').RigBones>} [rigFallback]
 * @property {string} [token]  JWT sent as a bearer token
 */

export class RigSource {
  /**
   * @param {RigSourceOptions} options
   * @param {typeof fetch | undefined} fetchImpl
   */
  constructor(options, fetchImpl) {
    this.options = options;
    this.fetch = fetchImpl;
    /** @type {Map<string, import('./binding.js').RigBones | null>} */
    this._cache = new Map();
  }

  /**
   * The bone data of rig `name` on the server at `base` ('' for none: no fetch).
   * @param {string} name
   * @param {string} base
   * @returns {Promise<import('./binding.js').RigBones | null>}
   */
  async get(name, base) {
    if (this.options.rigs[name]) return this.options.rigs[name];
    if (this._cache.has(name)) return this._cache.get(name) ?? null;
    let rig = null;
    if (this.fetch && base) {
      try {
        const headers = this.options.token ? { authorization: `Bearer ${this.options.token}` } : {};
        const res = await this.fetch(httpUrl(base, `rigs/${encodeURIComponent(name)}`), { headers });
        if (res.ok) rig = await res.json();
      } catch { /* no rig endpoint: fall back */ }
    }
    rig ??= this.options.rigFallback?.[name] ?? null;
    this._cache.set(name, rig);
    return rig;
  }
}
