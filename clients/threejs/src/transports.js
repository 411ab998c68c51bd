// The two ways bytes reach the client. Both expose the same small surface:
//   kind, connect() -> Promise (resolves when messages can flow), send(bytes), close(),
//   and the callbacks onmessage(Uint8Array, arrivalMs) and onclose({code, reason}).
//
// WebSocket: one reliable ordered socket; the server sends chained deltas.
// WebRTC: the browser makes the offer with two data channels and POSTs it to /rtc/offer:
//   "frames"  unordered, maxRetransmits 0: keyframes and keyframe-relative deltas; a lost
//             packet costs one frame, a late one is dropped by the decoder as stale;
//   "control" reliable, ordered: hello, events, pong one way; CONTROL and PING the other.
// aiortc does not trickle ICE, so the offer is sent once gathering completes (or times out).

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** Turn `http://host:port` (or ws://, or a relative base) into the stream URL of a session. */
export function streamUrl(base, session, { lod = 0, mode = 'chained', bits = 8, token = '', audio = '' } = {}) {
  const u = new URL(`sessions/${encodeURIComponent(session)}/stream`, base.endsWith('/') ? base : `${base}/`);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  u.searchParams.set('lod', String(lod));
  u.searchParams.set('mode', mode);
  u.searchParams.set('bits', String(bits));
  if (audio) u.searchParams.set('audio', audio); // opus | pcm | off (the server's default: opus)
  if (token) u.searchParams.set('token', token);
  return u.toString();
}

/** `http://host:port` + path, for REST calls (ws:// bases are turned back into http://). */
export function httpUrl(base, path) {
  const u = new URL(path.replace(/^\//, ''), base.endsWith('/') ? base : `${base}/`);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  return u.toString();
}

class BaseTransport {
  constructor() {
    /** @type {(bytes: Uint8Array, arrivalMs: number) => void} */
    this.onmessage = () => {};
    /** @type {(info: {code: number, reason: string}) => void} */
    this.onclose = () => {};
    this.closed = false;
  }

  _closed(code, reason) {
    if (this.closed) return;
    this.closed = true;
    this.onclose({ code, reason });
  }
}

export class WebSocketTransport extends BaseTransport {
  /**
   * @param {string} url full ws:// stream URL
   * @param {{WebSocketImpl?: typeof WebSocket, timeoutMs?: number}} [options]
   */
  constructor(url, { WebSocketImpl = globalThis.WebSocket, timeoutMs = 5000 } = {}) {
    super();
    this.kind = 'websocket';
    this.url = url;
    this.WebSocketImpl = WebSocketImpl;
    this.timeoutMs = timeoutMs;
    this.ws = null;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new this.WebSocketImpl(this.url);
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      let open = false;
      const timer = setTimeout(() => { if (!open) { ws.close(); reject(new Error('WebSocket open timed out')); } }, this.timeoutMs);
      ws.onopen = () => { open = true; clearTimeout(timer); resolve(); };
      ws.onmessage = (e) => {
        if (typeof e.data !== 'string') this.onmessage(new Uint8Array(e.data), now());
      };
      ws.onerror = () => { if (!open) { clearTimeout(timer); reject(new Error('WebSocket failed to open')); } };
      ws.onclose = (e) => {
        clearTimeout(timer);
        if (!open) reject(new Error(`WebSocket closed before opening (${e.code})`));
        else this._closed(e.code, e.reason);
      };
    });
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(bytes);
  }

  close() {
    this.closed = true;
    this.ws?.close(1000, 'client closed');
  }
}

export class WebRTCTransport extends BaseTransport {
  /**
   * @param {string} offerUrl the server's POST /rtc/offer URL
   * @param {{session: string, lod?: number, bits?: number, token?: string, audio?: string,
   *   iceServers?: RTCIceServer[], timeoutMs?: number, fetchImpl?: typeof fetch}} params
   */
  constructor(offerUrl, { session, lod = 0, bits = 8, token = '', audio = '', iceServers = [], timeoutMs = 6000, fetchImpl = globalThis.fetch?.bind(globalThis) }) {
    super();
    this.kind = 'webrtc';
    this.offerUrl = offerUrl;
    Object.assign(this, { session, lod, bits, token, audio, iceServers, timeoutMs, fetchImpl });
    this.pc = null;
    this.frames = null;
    this.control = null;
  }

  static get supported() {
    return typeof globalThis.RTCPeerConnection === 'function';
  }

  async connect() {
    if (!WebRTCTransport.supported) throw new Error('this browser has no RTCPeerConnection');
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const frames = pc.createDataChannel('frames', { ordered: false, maxRetransmits: 0 });
    const control = pc.createDataChannel('control', { ordered: true });
    this.frames = frames;
    this.control = control;
    for (const ch of [frames, control]) {
      ch.binaryType = 'arraybuffer';
      ch.onmessage = (e) => {
        if (typeof e.data !== 'string') this.onmessage(new Uint8Array(e.data), now());
      };
    }
    const deadline = now() + this.timeoutMs;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, Math.min(2000, this.timeoutMs));
      const headers = { 'content-type': 'application/json' };
      if (this.token) headers.authorization = `Bearer ${this.token}`;
      const res = await this.fetchImpl(this.offerUrl, {
        method: 'POST',
        headers,
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type, session: this.session, lod: this.lod, ...(this.audio ? { audio: this.audio } : {}) }),
      });
      if (!res.ok) {
        let detail = '';
        try { detail = (await res.json()).detail ?? ''; } catch { /* not JSON */ }
        const err = new Error(`POST /rtc/offer: ${res.status} ${detail}`);
        /** @type {any} */ (err).status = res.status;
        throw err;
      }
      const answer = await res.json();
      await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
      await Promise.all([opened(frames, deadline), opened(control, deadline)]);
    } catch (err) {
      pc.close();
      throw err;
    }
    const lost = (why) => () => this._closed(1006, why);
    frames.onclose = lost('frames channel closed');
    control.onclose = lost('control channel closed');
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') this._closed(1006, `peer connection ${pc.connectionState}`);
    };
  }

  send(bytes) {
    if (this.control && this.control.readyState === 'open') this.control.send(bytes);
  }

  close() {
    this.closed = true;
    try { this.frames?.close(); this.control?.close(); } catch { /* already closed */ }
    this.pc?.close();
  }
}

function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() { if (pc.iceGatheringState === 'complete') done(); }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

function opened(channel, deadline) {
  if (channel.readyState === 'open') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`data channel '${channel.label}' did not open in time`)), Math.max(0, deadline - now()));
    channel.addEventListener('open', () => { clearTimeout(timer); resolve(); }, { once: true });
    channel.addEventListener('close', () => { clearTimeout(timer); reject(new Error(`data channel '${channel.label}' closed`)); }, { once: true });
  });
}
