// The JS decoder's results in the JSON shape of the conformance vectors
// (avatar_engine.codec.conformance.describe), shared by protocol.test.js and
// differential.test.js. v1.1 keys (a hello's voice) appear only when the message carries them.

export const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

export function describe(r, dec) {
  switch (r.kind) {
    case 'hello': {
      const out = { kind: 'hello', sid: r.sid, rig: r.rig, morphs: r.morphNames.length, channels: r.channelNames.length, bits: r.bits, mode: r.mode };
      if (r.minor !== 0) out.minor = r.minor;
      if (r.audio !== null) Object.assign(out, { audio: r.audio, audio_rate: r.audioRate });
      return out;
    }
    case 'frame': {
      const st = dec.stream(r.sid);
      return { ...r, morphs: Array.from(st.morphs), channels: Array.from(st.channels) };
    }
    case 'capture':
      return { ...r, values: r.values === null ? null : Array.from(r.values) };
    case 'audio':
      return { ...r, payload: toHex(r.payload) };
    default:
      return r;
  }
}
