// avatar-engine wire protocol v1.1: decoder (and the few messages a viewer sends).
//
// The normative text is docs/protocol.md; this file follows it section by section and passes
// the conformance vectors in tests/vectors/. No dependencies: a small strict msgpack reader
// lives here, because the protocol's error categories (malformed / type / limit / version /
// body / value) must come out the same in every decoder.
//
// Usage:
//   const dec = new Decoder();
//   socket.binaryType = 'arraybuffer';
//   socket.onmessage = (e) => {
//     const r = dec.feed(new Uint8Array(e.data));      // throws ProtocolError on bad input
//     if (r.kind === 'frame') apply(dec.stream(r.sid).morphs);   // Float32Array, rig order
//     else if (r.kind === 'need_keyframe') socket.send(encodeControl(Op.REQUEST_KEYFRAME, r.sid, r.lod));
//     else if (r.kind === 'audio') voice.push(r);   // {sid, seq, t, codec, rate, payload}
//   };
//
// Frame bodies are read byte by byte (16-bit values as b[i] | b[i+1] << 8): msgpack bin has no
// alignment, so no typed-array view is ever laid over the message.

export const PROTOCOL_VERSION = 1;
/** The minor version this decoder speaks (1.1: the voice, docs/protocol.md 3.8). */
export const PROTOCOL_MINOR = 1;

export const MsgType = Object.freeze({
  HELLO: 0, KEYFRAME: 1, DELTA: 2, EVENT: 3, CONTROL: 4, PING: 5, PONG: 6, ERROR: 7,
  PUBLISH_HELLO: 8, CAPTURE: 9, AUDIO: 10,
});
export const Op = Object.freeze({
  SUBSCRIBE: 0, UNSUBSCRIBE: 1, SET_LOD: 2, REQUEST_KEYFRAME: 3, ACK: 4, SET_AUDIO: 5,
});
export const Mode = Object.freeze({ CHAINED: 0, KEYFRAME: 1 });
export const EventKind = Object.freeze({ STATE: 0, SPEAKING: 1, EMOTION: 2, VOICE_CUT: 3 });
/** The voice a subscriber asks for (SUBSCRIBE's 7th element, SET_AUDIO). */
export const AudioCodec = Object.freeze({ OFF: 0, OPUS: 1, PCM16: 2 });
/** Every AUDIO message carries 20 ms (the last PCM16 one of an utterance may be shorter). */
export const AUDIO_PACKET_MS = 20;
const OPUS_RATE = 48000;
const PCM16_RATES = [8000, 48000]; // a hello's audio_rate for pcm16 must lie in this range
const AUDIO_DEFAULT_RATE = Object.freeze({ opus: OPUS_RATE, pcm16: 16000 });
export const SESSION_STATES = Object.freeze([
  'idle', 'connecting', 'ready', 'active', 'thinking', 'degraded', 'error', 'disconnected',
]);

export const Limits = Object.freeze({
  MAX_MESSAGE_BYTES: 65536, MAX_MORPHS: 1024, MAX_CHANNELS: 64, MAX_NAME_BYTES: 256,
  MAX_STREAMS: 256, MAX_DEPTH: 8, LOD_LEVELS: 4, MAX_EVENT_TEXT: 256,
});

const U16 = 0xffff;
const F32_MAX = 3.4028234663852886e38; // ranges must be float32 values (finite outputs)
const U32 = 0xffffffff;
const U64 = 18446744073709551615; // as a Number (rounded); only used as an upper bound

/** A message the decoder refuses; `code` is malformed | type | limit | version | body | value. */
export class ProtocolError extends Error {
  constructor(code, detail) {
    super(`${code}: ${detail}`);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

// ------------------------------------------------------------------ msgpack reader

/** A msgpack float: kept apart from integers, which the protocol distinguishes. */
class MpFloat {
  constructor(value) { this.value = value; }
}
/** A msgpack ext value: v1 defines none, so a field holding one is a type error. */
class MpExt {
  constructor(code, data) { this.code = code; this.data = data; }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.pos = 0;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(n) {
    if (this.pos + n > this.b.length) {
      throw new ProtocolError('malformed', `truncated: ${n} bytes needed at offset ${this.pos}`);
    }
  }

  count(n, minItemBytes) {
    if (n * minItemBytes > this.b.length - this.pos) {
      throw new ProtocolError('malformed', `a count of ${n} at offset ${this.pos} exceeds the remaining bytes`);
    }
    return n;
  }

  uint(size) {
    this.need(size);
    let v;
    if (size === 1) v = this.b[this.pos];
    else if (size === 2) v = this.view.getUint16(this.pos);
    else if (size === 4) v = this.view.getUint32(this.pos);
    else v = Number(this.view.getBigUint64(this.pos));
    this.pos += size;
    return v;
  }

  int(size) {
    this.need(size);
    let v;
    if (size === 1) v = this.view.getInt8(this.pos);
    else if (size === 2) v = this.view.getInt16(this.pos);
    else if (size === 4) v = this.view.getInt32(this.pos);
    else v = Number(this.view.getBigInt64(this.pos));
    this.pos += size;
    return v;
  }

  bytes(n) {
    this.count(n, 1);
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  str(n) {
    const raw = this.bytes(n);
    try {
      return utf8.decode(raw);
    } catch {
      throw new ProtocolError('malformed', 'a str is not valid UTF-8');
    }
  }

  array(n, depth) {
    this.count(n, 1);
    const out = []; // grown as items are parsed: a count only claims bytes
    for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
    return out;
  }

  map(n, depth) {
    this.count(n, 2);
    const out = new Map();
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      if (Array.isArray(key) || key instanceof Map) {
        throw new ProtocolError('malformed', 'a map key must not be an array or a map');
      }
      out.set(key instanceof MpFloat ? key.value : key, this.value(depth + 1));
    }
    return out;
  }

  ext(n) {
    this.need(1);
    const code = this.view.getInt8(this.pos);
    this.pos += 1;
    return new MpExt(code, this.bytes(n));
  }

  value(depth) {
    if (depth > Limits.MAX_DEPTH) throw new ProtocolError('limit', `nesting deeper than ${Limits.MAX_DEPTH}`);
    this.need(1);
    const b = this.b[this.pos++];
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b <= 0x8f) return this.map(b & 0x0f, depth);
    if (b <= 0x9f) return this.array(b & 0x0f, depth);
    if (b <= 0xbf) return this.str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: case 0xc5: case 0xc6: return this.bytes(this.uint(1 << (b - 0xc4)));
      case 0xc7: case 0xc8: case 0xc9: return this.ext(this.uint(1 << (b - 0xc7)));
      case 0xca: { this.need(4); const v = this.view.getFloat32(this.pos); this.pos += 4; return new MpFloat(v); }
      case 0xcb: { this.need(8); const v = this.view.getFloat64(this.pos); this.pos += 8; return new MpFloat(v); }
      case 0xcc: case 0xcd: case 0xce: case 0xcf: return this.uint(1 << (b - 0xcc));
      case 0xd0: case 0xd1: case 0xd2: case 0xd3: return this.int(1 << (b - 0xd0));
      case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return this.ext(1 << (b - 0xd4));
      case 0xd9: case 0xda: case 0xdb: return this.str(this.uint(1 << (b - 0xd9)));
      case 0xdc: case 0xdd: return this.array(this.uint(b === 0xdc ? 2 : 4), depth);
      case 0xde: case 0xdf: return this.map(this.uint(b === 0xde ? 2 : 4), depth);
      default:
        throw new ProtocolError('malformed', `byte 0x${b.toString(16)} at offset ${this.pos - 1} is not msgpack`);
    }
  }
}

/** The single msgpack object filling `bytes` (Uint8Array); floats come back as MpFloat. */
export function unpack(bytes) {
  const r = new Reader(bytes);
  const v = r.value(0);
  if (r.pos !== bytes.length) throw new ProtocolError('malformed', `${bytes.length - r.pos} trailing bytes`);
  return v;
}

// ------------------------------------------------------------------ field checks

const isInt = (v) => typeof v === 'number' && Number.isInteger(v);

function uintAt(msg, i, what, max = U64) {
  const v = msg[i];
  if (!isInt(v)) throw new ProtocolError('type', `${what} must be an integer`);
  if (v < 0 || v > max) throw new ProtocolError('value', `${what} ${v} is outside 0..${max}`);
  return v;
}
const uintOf = (v, what, max = U64) => uintAt([v], 0, what, max);

function need(msg, n, what) {
  if (msg.length < n) throw new ProtocolError('type', `${what} needs at least ${n} elements, got ${msg.length}`);
}

function str(v, what, limit = Limits.MAX_NAME_BYTES) {
  if (typeof v !== 'string') throw new ProtocolError('type', `${what} must be a str`);
  if (v.length > limit / 3 && utf8Encoder.encode(v).length > limit) {
    throw new ProtocolError('limit', `${what} is longer than ${limit} bytes`);
  }
  return v;
}

function num(v, what) {
  if (v instanceof MpFloat) return v.value;
  if (isInt(v)) return v;
  throw new ProtocolError('type', `${what} must be a number`);
}

function list(v, what, limit) {
  if (!Array.isArray(v)) throw new ProtocolError('type', `${what} must be an array`);
  if (v.length > limit) throw new ProtocolError('limit', `${what} has ${v.length} entries, the limit is ${limit}`);
  return v;
}

const names = (v, what, limit) => list(v, what, limit).map((x) => str(x, `${what} entry`));

function uints(v, what, limit) {
  return list(v, what, limit).map((x) => {
    if (!isInt(x)) throw new ProtocolError('type', `${what} entries must be integers`);
    return x;
  });
}

function valueError(detail) { return new ProtocolError('value', `hello: ${detail}`); }

function parseHello(msg) {
  need(msg, 4, 'hello');
  if (!isInt(msg[1])) throw new ProtocolError('type', 'hello version must be an integer');
  const version = uintAt(msg, 1, 'hello version', 255);
  if (version !== PROTOCOL_VERSION) throw new ProtocolError('version', `protocol version ${version}; this decoder speaks 1`);
  const sid = uintAt(msg, 2, 'sid', U32);
  const info = msg[3];
  if (!(info instanceof Map)) throw new ProtocolError('type', 'hello info must be a map');
  const get = (key) => {
    if (!info.has(key)) throw new ProtocolError('type', `hello info lacks '${key}'`);
    return info.get(key);
  };
  const rig = str(get('rig'), 'rig');
  const morphs = names(get('morphs'), 'morphs', Limits.MAX_MORPHS);
  const channels = names(get('channels'), 'channels', Limits.MAX_CHANNELS);
  const lo = list(get('lo'), 'lo', Limits.MAX_MORPHS).map((x) => num(x, 'lo'));
  const hi = list(get('hi'), 'hi', Limits.MAX_MORPHS).map((x) => num(x, 'hi'));
  const rotScale = num(get('rot_scale'), 'rot_scale');
  const lods = list(get('lods'), 'lods', Limits.LOD_LEVELS).map((entry) => {
    const item = list(entry, 'lods entry', 16);
    if (item.length < 4) throw new ProtocolError('type', 'a lods entry is [level, fps, morphs, channels]');
    return {
      level: uintAt(item, 0, 'lod level', Limits.LOD_LEVELS - 1),
      fps: uintAt(item, 1, 'lod fps', 240),
      morphs: uints(item[2], 'lod morphs', Limits.MAX_MORPHS),
      channels: uints(item[3], 'lod channels', Limits.MAX_CHANNELS),
    };
  });
  const bits = uintOf(get('bits'), 'bits', 255);
  const mode = uintOf(get('mode'), 'mode', 1);
  let keyframeMs = uintOf(info.has('keyframe_ms') ? info.get('keyframe_ms') : 500, 'keyframe_ms');
  const deadBand = num(info.has('dead_band') ? info.get('dead_band') : 1.0, 'dead_band');
  let hold = uintOf(info.has('hold') ? info.get('hold') : 6, 'hold', 255);
  const minor = uintOf(info.has('minor') ? info.get('minor') : 0, 'minor');
  const { audio, audioRate } = helloAudio(info); // before the schema checks, as in Python
  keyframeMs = Math.max(1, keyframeMs);
  hold = Math.max(1, hold);
  // The same checks, in the same spirit, as StreamSchema / StreamParams in Python.
  const m = morphs.length;
  const c = channels.length;
  if (!(m > 0 && m <= Limits.MAX_MORPHS)) throw valueError(`a stream has 1..${Limits.MAX_MORPHS} morphs`);
  if (lo.length !== m || hi.length !== m) throw valueError('lo and hi need one value per morph');
  for (let i = 0; i < m; i++) {
    if (!(Math.abs(lo[i]) <= F32_MAX && Math.abs(hi[i]) <= F32_MAX)) throw valueError('morph ranges must be finite float32 values');
  }
  for (let i = 0; i < m; i++) if (!(hi[i] > lo[i])) throw valueError('every morph range needs hi > lo');
  if (!(rotScale > 0 && rotScale <= F32_MAX)) throw valueError('rot_scale must be a positive float32 value');
  if (lods.length !== Limits.LOD_LEVELS) throw valueError('a stream has exactly 4 LOD levels');
  lods.forEach((lod, i) => {
    if (lod.level !== i) throw valueError('LOD tables must be listed in level order');
    if (lod.fps < 1) throw valueError(`LOD ${i}: fps must be 1..240`);
    for (const [seq, n] of [[lod.morphs, m], [lod.channels, c]]) {
      for (let j = 0; j < seq.length; j++) {
        if (seq[j] < 0 || seq[j] >= n || (j > 0 && seq[j] <= seq[j - 1])) {
          throw valueError(`LOD ${i}: indices must be ascending, unique and in range`);
        }
      }
    }
    if (lod.morphs.length + lod.channels.length === 0) throw valueError(`LOD ${i}: empty level`);
  });
  // Decoder state is sized by level 0, so it must hold every element (no level can be larger).
  if (lods[0].morphs.length !== m || lods[0].channels.length !== c) throw valueError('LOD 0 must list every morph and every channel');
  if (bits !== 8 && bits !== 16) throw valueError('bits must be 8 or 16');
  if (!(Number.isFinite(deadBand) && deadBand >= 0)) throw valueError('dead_band must be >= 0');
  return { kind: 'hello', sid, rig, morphNames: morphs, channelNames: channels, lo, hi, rotScale, lods, bits, mode, keyframeMs, deadBand, hold, minor, audio, audioRate };
}

/** The voice a hello names (v1.1 keys audio, audio_rate): {audio: null, audioRate: 0} for none. */
function helloAudio(info) {
  if (!info.has('audio')) return { audio: null, audioRate: 0 };
  const audio = str(info.get('audio'), 'audio');
  if (audio !== 'opus' && audio !== 'pcm16') throw new ProtocolError('value', `audio '${audio}' is not opus or pcm16`);
  const audioRate = uintOf(info.has('audio_rate') ? info.get('audio_rate') : AUDIO_DEFAULT_RATE[audio], 'audio_rate');
  const ok = audio === 'opus' ? audioRate === OPUS_RATE : audioRate >= PCM16_RATES[0] && audioRate <= PCM16_RATES[1];
  if (!ok) throw new ProtocolError('value', `audio_rate ${audioRate} is not allowed for ${audio}`);
  return { audio, audioRate };
}

function parseEvent(msg) {
  need(msg, 5, 'event');
  const sid = uintAt(msg, 1, 'sid', U32);
  const t = uintAt(msg, 2, 't');
  const kind = uintAt(msg, 3, 'event kind', 255);
  const v = msg[4];
  if (kind === EventKind.STATE) {
    const code = uintAt(msg, 4, 'state', 255);
    if (code >= SESSION_STATES.length) throw new ProtocolError('value', `state ${code} is not defined`);
    return { kind: 'event', sid, t, event: kind, value: SESSION_STATES[code] };
  }
  if (kind === EventKind.SPEAKING) {
    if (typeof v !== 'boolean') throw new ProtocolError('type', 'speaking must be a bool');
    return { kind: 'event', sid, t, event: kind, value: v };
  }
  if (kind === EventKind.EMOTION) {
    const pair = list(v, 'emotion', 2);
    if (pair.length !== 2) throw new ProtocolError('type', 'emotion is [name, intensity]');
    return { kind: 'event', sid, t, event: kind, value: [str(pair[0], 'emotion name'), num(pair[1], 'intensity')] };
  }
  if (kind === EventKind.VOICE_CUT) {
    return { kind: 'event', sid, t, event: kind, value: uintAt(msg, 4, 'voice cut next_seq', U16) };
  }
  return { kind: 'ignored', type: MsgType.EVENT };
}

function parseControl(msg) {
  need(msg, 3, 'control');
  const op = uintAt(msg, 1, 'control op', 255);
  const out = { kind: 'control', op, sid: 0, lod: 0, seq: 0, session: '', mode: 0, bits: 8 };
  if (op === Op.SUBSCRIBE) {
    need(msg, 6, 'subscribe');
    out.session = str(msg[2], 'session');
    out.lod = uintAt(msg, 3, 'lod', 3);
    out.mode = uintAt(msg, 4, 'mode', 1);
    out.bits = uintAt(msg, 5, 'bits', 255);
    if (out.bits !== 8 && out.bits !== 16) throw new ProtocolError('value', `bits ${out.bits} is not 8 or 16`);
    if (msg.length > 6) out.audio = uintAt(msg, 6, 'audio', AudioCodec.PCM16); // v1.1
    return out;
  }
  if (op > Op.SET_AUDIO) return { kind: 'ignored', type: MsgType.CONTROL };
  out.sid = uintAt(msg, 2, 'sid', U32);
  if (op === Op.UNSUBSCRIBE) return out;
  need(msg, 4, 'control');
  if (op === Op.SET_AUDIO) {
    out.audio = uintAt(msg, 3, 'audio', AudioCodec.PCM16);
    return out;
  }
  out.lod = uintAt(msg, 3, 'lod', 3);
  if (op === Op.ACK) {
    need(msg, 5, 'ack');
    out.seq = uintAt(msg, 4, 'seq', U16);
  }
  return out;
}

function parsePublishHello(msg) {
  need(msg, 4, 'publish hello');
  const version = uintAt(msg, 1, 'version', 255);
  if (version !== PROTOCOL_VERSION) throw new ProtocolError('version', `protocol version ${version}; this decoder speaks 1`);
  const pid = uintAt(msg, 2, 'pid', U32);
  const info = msg[3];
  if (!(info instanceof Map)) throw new ProtocolError('type', 'publish hello info must be a map');
  const get = (k, d) => (info.has(k) ? info.get(k) : d);
  return {
    kind: 'publish_hello',
    pid,
    morphs: names(get('morphs', []), 'morphs', Limits.MAX_MORPHS),
    channels: names(get('channels', []), 'channels', Limits.MAX_CHANNELS),
    fps: uintOf(get('fps', 60), 'fps', 240),
    source: str(get('source', 'arkit52'), 'source'),
  };
}

function parseCapture(msg, publishers) {
  need(msg, 5, 'capture');
  const pid = uintAt(msg, 1, 'pid', U32);
  const seq = uintAt(msg, 2, 'seq', U16);
  const t = uintAt(msg, 3, 't');
  const payload = msg[4];
  if (payload instanceof Map) {
    if (payload.size > Limits.MAX_MORPHS + Limits.MAX_CHANNELS) throw new ProtocolError('limit', 'too many named values');
    const named = Object.create(null); // a name like '__proto__' is just a name
    for (const [k, v] of payload) named[str(k, 'name')] = num(v, 'value');
    return { kind: 'capture', pid, seq, t, values: null, named };
  }
  if (payload instanceof Uint8Array) {
    const hello = publishers.get(pid);
    if (hello === undefined) throw new ProtocolError('value', `positional capture for pid ${pid} without a publish hello`);
    const n = hello.morphs.length + hello.channels.length;
    if (payload.length !== 4 * n) throw new ProtocolError('body', `capture carries ${payload.length} bytes, expected ${4 * n}`);
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) values[i] = view.getFloat32(4 * i, true);
    return { kind: 'capture', pid, seq, t, values, named: {} };
  }
  throw new ProtocolError('type', 'capture values must be bin (positional) or map (by name)');
}

/**
 * AUDIO [10, sid, seq, t, payload] against its stream's hello (undefined: an unknown sid).
 * The payload is a copy, so a client may queue it past the next feed.
 */
function parseAudio(msg, stream) {
  need(msg, 5, 'audio');
  const sid = uintAt(msg, 1, 'sid', U32);
  const seq = uintAt(msg, 2, 'seq', U16);
  const t = uintAt(msg, 3, 't');
  const payload = msg[4];
  if (!(payload instanceof Uint8Array)) throw new ProtocolError('type', 'an audio payload must be bin');
  if (stream === undefined) return { kind: 'unknown_stream', sid };
  const { audio: codec, audioRate: rate } = stream.hello;
  if (codec === null) throw new ProtocolError('value', `audio for stream ${sid}, whose hello named no voice`);
  if (payload.length === 0) throw new ProtocolError('body', 'an empty audio payload');
  if (codec === 'pcm16') {
    const limit = 2 * Math.floor((rate * AUDIO_PACKET_MS) / 1000);
    if (payload.length % 2 !== 0 || payload.length > limit) {
      throw new ProtocolError('body', `pcm16 payload of ${payload.length} bytes (even, at most ${limit})`);
    }
  }
  return { kind: 'audio', sid, seq, t, codec, rate, payload: payload.slice() };
}

// ------------------------------------------------------------------ frames

function seqNewer(a, b) {
  const d = (a - b) & U16;
  return d > 0 && d < 0x8000;
}

/** Fast path for an ordinary keyframe/delta: [type, sid, lod, seq, a, (dt,) bin]. null if unusual. */
function fastFrame(b) {
  const size = b.length;
  const head = b[0];
  if (size < 2 || (head !== 0x96 && head !== 0x97)) return null;
  let pos = 1;
  const out = [0, 0, 0, 0, 0, 0];
  const fields = head === 0x96 ? 5 : 6;
  for (let f = 0; f < fields; f++) {
    if (pos >= size) return null;
    const c = b[pos];
    if (c <= 0x7f) { out[f] = c; pos += 1; }
    else if (c === 0xcc && pos + 2 <= size) { out[f] = b[pos + 1]; pos += 2; }
    else if (c === 0xcd && pos + 3 <= size) { out[f] = (b[pos + 1] << 8) | b[pos + 2]; pos += 3; }
    else if (c === 0xce && pos + 5 <= size) { out[f] = ((b[pos + 1] << 24) >>> 0) + ((b[pos + 2] << 16) | (b[pos + 3] << 8) | b[pos + 4]); pos += 5; }
    else return null;
  }
  const kind = out[0];
  if (!((kind === 1 && head === 0x96) || (kind === 2 && head === 0x97))) return null;
  if (out[2] > 3 || out[3] > U16) return null;
  if (kind === 2 && (out[4] < 1 || out[4] >= 0x8000)) return null;
  if (pos >= size) return null;
  let len;
  const c = b[pos];
  if (c === 0xc4 && pos + 2 <= size) { len = b[pos + 1]; pos += 2; }
  else if (c === 0xc5 && pos + 3 <= size) { len = (b[pos + 1] << 8) | b[pos + 2]; pos += 3; }
  else return null;
  if (pos + len !== size) return null;
  return { keyframe: kind === 1, sid: out[1], lod: out[2], seq: out[3], a: out[4], dt: out[5], body: b.subarray(pos) };
}

/** Read a frame body into idx/codes (scratch Int32Arrays); returns the element count. */
function unpackBody(body, n, nm, bits, idx, codes) {
  const groups = (n + 7) >> 3;
  const gm = (groups + 7) >> 3;
  if (body.length < gm) throw new ProtocolError('body', `body of ${body.length} bytes is shorter than its group mask`);
  let pos = gm;
  let count = 0;
  for (let g = 0; g < gm * 8; g++) {
    if (!((body[g >> 3] >> (g & 7)) & 1)) continue;
    if (g >= groups) throw new ProtocolError('body', `group ${g} is set but the level has ${groups} groups`);
    if (pos >= body.length) throw new ProtocolError('body', 'body ends inside the element masks');
    const mask = body[pos++];
    if (mask === 0) throw new ProtocolError('body', `group ${g} is flagged but its element mask is empty`);
    for (let j = 0; j < 8; j++) {
      if ((mask >> j) & 1) {
        const i = g * 8 + j;
        if (i >= n) throw new ProtocolError('body', `element ${i} is set but the level has ${n}`);
        idx[count++] = i;
      }
    }
  }
  const width = bits >> 3;
  if (body.length - pos !== width * count) {
    throw new ProtocolError('body', `${count} elements need ${width * count} value bytes, the body has ${body.length - pos}`);
  }
  for (let i = 0; i < count; i++) {
    let c;
    if (width === 1) {
      c = body[pos + i];
      if (idx[i] >= nm && c > 127) c -= 256;
    } else {
      c = body[pos + 2 * i] | (body[pos + 2 * i + 1] << 8);
      if (idx[i] >= nm && c > 32767) c -= 65536;
    }
    codes[i] = c;
  }
  return count;
}

/**
 * One stream as a viewer holds it: `morphs` (every rig morph, rig order) and `channels`
 * (the rig's rotation channels) are Float32Arrays updated in place by each applied frame.
 * Morphs outside the current LOD rest at their range start (0 for 0..1 morphs).
 */
export class Stream {
  constructor(hello) {
    this.hello = hello;
    const n0 = hello.lods[0].morphs.length + hello.lods[0].channels.length;
    this.morphs = Float32Array.from(hello.lo);
    this.channels = new Float32Array(hello.channelNames.length);
    this.codes = new Int32Array(n0);
    this.kfCodes = new Int32Array(n0);
    this.idx = new Int32Array(n0);
    this.scratch = new Int32Array(n0);
    this.lod = -1;
    this.wantLod = -1;
    this.hasKf = false;
    this.lastSeq = 0;
    this.kfSeq = 0;
    this.t = 0;
    this.kfT = 0;
    this.q = hello.bits === 8 ? 255 : 65535;
    this.r = hello.bits === 8 ? 127 : 32767;
  }

  refresh() {
    const h = this.hello;
    const lod = h.lods[this.lod];
    const nm = lod.morphs.length;
    const { morphs, channels, codes, q, r } = this;
    for (let i = 0; i < morphs.length; i++) morphs[i] = h.lo[i];
    channels.fill(0);
    for (let j = 0; j < nm; j++) {
      const i = lod.morphs[j];
      const lo = h.lo[i];
      morphs[i] = lo + ((h.hi[i] - lo) * codes[j]) / q;
    }
    for (let j = 0; j < lod.channels.length; j++) {
      channels[lod.channels[j]] = (h.rotScale * codes[nm + j]) / r;
    }
  }
}

/** Decodes every v1.1 message; keeps the streams announced by hello (audio is checked against its hello). */
export class Decoder {
  constructor({ maxStreams = Limits.MAX_STREAMS } = {}) {
    this.maxStreams = maxStreams;
    this.streams = new Map();
    this.publishers = new Map();
  }

  stream(sid) { return this.streams.get(sid); }

  /** Call when sending SET_LOD: late frames of the level being left become 'stale'. */
  expectLod(sid, lod) {
    const st = this.streams.get(sid);
    if (st) st.wantLod = lod;
  }

  /**
   * Decode one message (Uint8Array or ArrayBuffer). Returns a result object whose `kind` is
   * hello | frame | need_keyframe | stale | unknown_stream | event | audio | control | ping |
   * pong | error_message | publish_hello | capture | ignored. Throws ProtocolError on bad input,
   * leaving every stream unchanged.
   */
  feed(data) {
    const b = data instanceof Uint8Array ? data : new Uint8Array(data);
    if (b.length > Limits.MAX_MESSAGE_BYTES) {
      throw new ProtocolError('limit', `message of ${b.length} bytes exceeds ${Limits.MAX_MESSAGE_BYTES}`);
    }
    const fast = fastFrame(b);
    if (fast !== null) return this.apply(fast.sid, fast.lod, fast.seq, fast.keyframe ? fast.a : fast.dt, fast.keyframe ? 0 : fast.a, fast.keyframe, fast.body);
    const msg = unpack(b);
    if (!Array.isArray(msg) || msg.length === 0) throw new ProtocolError('type', 'a message is a non-empty msgpack array');
    const kind = uintAt(msg, 0, 'message type', 255);
    switch (kind) {
      case MsgType.HELLO: {
        const hello = parseHello(msg);
        if (!this.streams.has(hello.sid) && this.streams.size >= this.maxStreams) {
          throw new ProtocolError('limit', `more than ${this.maxStreams} streams`);
        }
        this.streams.set(hello.sid, new Stream(hello));
        return hello;
      }
      case MsgType.KEYFRAME:
      case MsgType.DELTA: return this.frame(msg, kind === MsgType.KEYFRAME);
      case MsgType.EVENT: return parseEvent(msg);
      case MsgType.AUDIO: return parseAudio(msg, isInt(msg[1]) ? this.streams.get(msg[1]) : undefined);
      case MsgType.CONTROL: return parseControl(msg);
      case MsgType.PING:
      case MsgType.PONG: {
        need(msg, 3, 'ping');
        return { kind: kind === MsgType.PING ? 'ping' : 'pong', nonce: uintAt(msg, 1, 'nonce'), t: uintAt(msg, 2, 't') };
      }
      case MsgType.ERROR:
        need(msg, 3, 'error');
        return { kind: 'error_message', code: uintAt(msg, 1, 'error code', U16), message: str(msg[2], 'message', Limits.MAX_EVENT_TEXT) };
      case MsgType.PUBLISH_HELLO: {
        const pub = parsePublishHello(msg);
        if (!this.publishers.has(pub.pid) && this.publishers.size >= this.maxStreams) {
          throw new ProtocolError('limit', `more than ${this.maxStreams} publishers`);
        }
        this.publishers.set(pub.pid, pub);
        return pub;
      }
      case MsgType.CAPTURE: return parseCapture(msg, this.publishers);
      default: return { kind: 'ignored', type: kind };
    }
  }

  frame(msg, keyframe) {
    const nFields = keyframe ? 6 : 7;
    if (msg.length < nFields) throw new ProtocolError('type', `a frame needs ${nFields} elements, got ${msg.length}`);
    const sid = uintAt(msg, 1, 'sid', U32);
    const lod = uintAt(msg, 2, 'lod', 255);
    const seq = uintAt(msg, 3, 'seq', U16);
    let t; let back;
    if (keyframe) { t = uintAt(msg, 4, 't'); back = 0; }
    else { back = uintAt(msg, 4, 'back', U16); t = uintAt(msg, 5, 'dt'); }
    const body = msg[nFields - 1];
    if (!(body instanceof Uint8Array)) throw new ProtocolError('type', 'a frame body must be bin');
    if (lod >= Limits.LOD_LEVELS) throw new ProtocolError('value', `lod ${lod} is not 0..3`);
    if (!keyframe && !(back >= 1 && back < 0x8000)) throw new ProtocolError('value', `back ${back} is not 1..32767`);
    return this.apply(sid, lod, seq, t, back, keyframe, body);
  }

  apply(sid, lod, seq, t, back, keyframe, body) {
    const st = this.streams.get(sid);
    if (st === undefined) return { kind: 'unknown_stream', sid };
    const table = st.hello.lods[lod];
    const n = table.morphs.length + table.channels.length;
    const count = unpackBody(body, n, table.morphs.length, st.hello.bits, st.idx, st.scratch);
    const { idx, scratch, codes } = st;
    if (keyframe) {
      if (st.wantLod >= 0 && lod !== st.wantLod) return { kind: 'stale', sid, lod, seq };
      if (st.hasKf && lod === st.lod && seqNewer(st.lastSeq, seq)) return { kind: 'stale', sid, lod, seq };
      codes.fill(0);
      for (let i = 0; i < count; i++) codes[idx[i]] = scratch[i];
      st.kfCodes.set(codes);
      st.lod = lod;
      st.hasKf = true;
      st.lastSeq = seq; st.kfSeq = seq;
      st.t = t; st.kfT = t;
      st.refresh();
      return { kind: 'frame', sid, lod, seq, t, keyframe: true, count };
    }
    if (st.wantLod >= 0 && lod !== st.wantLod) return { kind: 'stale', sid, lod, seq };
    if (!st.hasKf || lod !== st.lod) return { kind: 'need_keyframe', sid, lod };
    if (!seqNewer(seq, st.lastSeq)) return { kind: 'stale', sid, lod, seq };
    const ref = (seq - back) & U16;
    let refT;
    if (ref === st.kfSeq) { codes.set(st.kfCodes); refT = st.kfT; }
    else if (ref === st.lastSeq) refT = st.t;
    else return { kind: 'need_keyframe', sid, lod };
    for (let i = 0; i < count; i++) codes[idx[i]] = scratch[i];
    st.lastSeq = seq;
    st.t = refT + t;
    st.refresh();
    return { kind: 'frame', sid, lod, seq, t: st.t, keyframe: false, count };
  }
}

// ------------------------------------------------------------------ what a viewer sends

function packUint(out, v) {
  if (v < 0x80) out.push(v);
  else if (v < 0x100) out.push(0xcc, v);
  else if (v < 0x10000) out.push(0xcd, v >> 8, v & 0xff);
  else if (v <= U32) out.push(0xce, (v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  else {
    out.push(0xcf);
    const big = BigInt(v);
    for (let i = 7; i >= 0; i--) out.push(Number((big >> BigInt(8 * i)) & 0xffn));
  }
}

function packStr(out, s) {
  const b = utf8Encoder.encode(s);
  if (b.length < 32) out.push(0xa0 | b.length);
  else if (b.length < 256) out.push(0xd9, b.length);
  else out.push(0xda, b.length >> 8, b.length & 0xff);
  for (const x of b) out.push(x);
}

/** [4, 0, session, lod, mode, bits] or, asking for a voice (v1.1), [4, 0, session, lod, mode, bits, audio] */
export function encodeSubscribe(session, lod = 0, mode = Mode.CHAINED, bits = 8, audio = null) {
  const out = [audio === null ? 0x96 : 0x97, MsgType.CONTROL, Op.SUBSCRIBE];
  packStr(out, session);
  packUint(out, lod); packUint(out, mode); packUint(out, bits);
  if (audio !== null) packUint(out, audio);
  return Uint8Array.from(out);
}

/**
 * UNSUBSCRIBE [4,1,sid] | SET_LOD [4,2,sid,lod] | REQUEST_KEYFRAME [4,3,sid,lod] |
 * ACK [4,4,sid,lod,seq] | SET_AUDIO [4,5,sid,audio] (pass the AudioCodec code as `lod`, or
 * use encodeSetAudio).
 */
export function encodeControl(op, sid, lod = 0, seq = 0) {
  const fields = [op, sid];
  if (op !== Op.UNSUBSCRIBE) fields.push(lod);
  if (op === Op.ACK) fields.push(seq);
  const out = [0x90 | (fields.length + 1), MsgType.CONTROL];
  for (const f of fields) packUint(out, f);
  return Uint8Array.from(out);
}

/** SET_AUDIO [4, 5, sid, audio]: the server answers with a new hello naming the voice. */
export function encodeSetAudio(sid, audio) {
  return encodeControl(Op.SET_AUDIO, sid, audio);
}

export function encodePing(nonce, t) {
  const out = [0x93, MsgType.PING];
  packUint(out, nonce); packUint(out, t);
  return Uint8Array.from(out);
}

export function encodePong(nonce, t) {
  const out = [0x93, MsgType.PONG];
  packUint(out, nonce); packUint(out, t);
  return Uint8Array.from(out);
}

// ------------------------------------------------------------------ publishing (capture apps)

function packHeader(out, n, fix, h16, h32) {
  if (n < 16) out.push(fix | n);
  else if (n < 0x10000) out.push(h16, n >> 8, n & 0xff);
  else out.push(h32, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

function packF64(out, v) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, v);
  out.push(0xcb, ...b);
}

/** [8, 1, pid, {morphs, channels, fps, source}]: names once, then positional CAPTURE frames. */
export function encodePublishHello(pid, morphs, channels = [], fps = 60, source = 'arkit52') {
  const out = [0x94, MsgType.PUBLISH_HELLO, PROTOCOL_VERSION];
  packUint(out, pid);
  out.push(0x84);
  packStr(out, 'morphs');
  packHeader(out, morphs.length, 0x90, 0xdc, 0xdd);
  for (const m of morphs) packStr(out, m);
  packStr(out, 'channels');
  packHeader(out, channels.length, 0x90, 0xdc, 0xdd);
  for (const c of channels) packStr(out, c);
  packStr(out, 'fps');
  packUint(out, fps);
  packStr(out, 'source');
  packStr(out, source);
  return Uint8Array.from(out);
}

/**
 * [9, pid, seq, t, values]: `values` is a Float32Array / number array in the publish hello's
 * order (sent as float32 little-endian bin) or an object {name: value} (sent by name).
 */
export function encodeCapture(pid, seq, t, values) {
  const out = [0x95, MsgType.CAPTURE];
  packUint(out, pid); packUint(out, seq & U16); packUint(out, t);
  if (ArrayBuffer.isView(values) || Array.isArray(values)) {
    const n = values.length * 4;
    if (n < 0x100) out.push(0xc4, n);
    else out.push(0xc5, n >> 8, n & 0xff);
    const b = new Uint8Array(n);
    const view = new DataView(b.buffer);
    for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i], true);
    for (const x of b) out.push(x);
  } else {
    const entries = Object.entries(values);
    packHeader(out, entries.length, 0x80, 0xde, 0xdf);
    for (const [k, v] of entries) { packStr(out, k); packF64(out, v); }
  }
  return Uint8Array.from(out);
}
