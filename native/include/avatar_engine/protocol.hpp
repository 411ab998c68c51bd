// avatar-engine wire protocol v1.1: a header-only decoder for native clients (Unreal, Unity
// native plugins, tools). C++17, standard library only, no exceptions, no Python.
//
// The normative text is docs/protocol.md; this decoder passes the conformance vectors in
// tests/vectors/ like the Python, Cython and JS ones. Typical use:
//
//   avatar_engine::protocol::Decoder dec;
//   auto r = dec.feed(bytes, size);
//   if (r.kind == Kind::Frame) {
//     const Stream* s = dec.stream(r.sid);   // s->morphs, s->channels: float, rig order
//   } else if (r.kind == Kind::NeedKeyframe) {
//     auto msg = encode_control(Op::RequestKeyframe, r.sid, r.lod);  // send it back
//   } else if (r.kind == Kind::Audio) {
//     play(r.t, r.codec, r.rate, r.payload, r.payload_size);  // a view into `bytes`
//   } else if (r.kind == Kind::Error) { /* r.error, r.detail: drop the message */ }
//
// Bad input never crashes, hangs or allocates beyond the message size; it yields
// Kind::Error with a category (Malformed, Type, Limit, Version, Body, Value) and leaves every
// stream untouched. Frame bodies are read byte by byte (little-endian), so alignment of the
// message buffer does not matter.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "avatar_engine/msgpack_reader.hpp"

namespace avatar_engine::protocol {

inline constexpr std::uint64_t kVersion = 1;
inline constexpr std::uint64_t kMinor = 1;  // 1.1: the voice (docs/protocol.md 3.8)
inline constexpr std::uint32_t kAudioPacketMs = 20;
inline constexpr std::uint64_t kOpusRate = 48000;
inline constexpr std::uint64_t kPcm16DefaultRate = 16000;
inline constexpr std::uint64_t kPcm16MinRate = 8000, kPcm16MaxRate = 48000;
inline constexpr std::size_t kMaxMessageBytes = 65536;
inline constexpr std::size_t kMaxMorphs = 1024;
inline constexpr std::size_t kMaxChannels = 64;
inline constexpr std::size_t kMaxNameBytes = 256;
inline constexpr std::size_t kMaxStreams = 256;
inline constexpr std::size_t kLodLevels = 4;
inline constexpr std::size_t kMaxEventText = 256;
inline constexpr std::uint64_t kU16 = 0xFFFF;
inline constexpr std::uint64_t kU32 = 0xFFFFFFFFu;
inline constexpr std::uint64_t kU64 = ~std::uint64_t{0};
// Ranges must be float32 values: every decoded float is then finite, and the double -> float
// conversions below are defined behaviour.
inline constexpr double kF32Max = 3.4028234663852886e38;

enum class MsgType : std::uint8_t {
  Hello = 0, Keyframe = 1, Delta = 2, Event = 3, Control = 4, Ping = 5, Pong = 6, Error = 7,
  PublishHello = 8, Capture = 9, Audio = 10,
};
enum class Op : std::uint8_t { Subscribe = 0, Unsubscribe = 1, SetLod = 2, RequestKeyframe = 3, Ack = 4, SetAudio = 5 };
enum class EventKind : std::uint8_t { State = 0, Speaking = 1, Emotion = 2, VoiceCut = 3 };
// The voice of a subscription: SUBSCRIBE's 7th element and SET_AUDIO send the code; a hello
// names it ("opus" / "pcm16"; no key: Off).
enum class AudioCodec : std::uint8_t { Off = 0, Opus = 1, Pcm16 = 2 };

inline const char* audio_codec_name(AudioCodec c) {
  switch (c) {
    case AudioCodec::Opus: return "opus";
    case AudioCodec::Pcm16: return "pcm16";
    default: return "off";
  }
}

inline const char* const kSessionStates[] = {
    "idle", "connecting", "ready", "active", "thinking", "degraded", "error", "disconnected"};

enum class Kind {
  Hello, Frame, NeedKeyframe, Stale, UnknownStream, Event, Control, Ping, Pong, ErrorMessage,
  PublishHello, Capture, Ignored, Error, Audio,
};
enum class ErrorCode { None, Malformed, Type, Limit, Version, Body, Value };

inline const char* error_name(ErrorCode e) {
  switch (e) {
    case ErrorCode::Malformed: return "malformed";
    case ErrorCode::Type: return "type";
    case ErrorCode::Limit: return "limit";
    case ErrorCode::Version: return "version";
    case ErrorCode::Body: return "body";
    case ErrorCode::Value: return "value";
    default: return "none";
  }
}

struct LodTable {
  std::uint32_t level = 0;
  std::uint32_t fps = 0;
  std::vector<std::uint32_t> morphs;
  std::vector<std::uint32_t> channels;
  std::size_t size() const { return morphs.size() + channels.size(); }
};

struct HelloInfo {
  std::uint32_t sid = 0;
  std::string rig;
  std::vector<std::string> morph_names;
  std::vector<std::string> channel_names;
  std::vector<double> lo, hi;
  double rot_scale = 1.0;
  std::vector<LodTable> lods;
  std::uint32_t bits = 8;
  std::uint32_t mode = 0;
  std::uint64_t keyframe_ms = 500;
  double dead_band = 1.0;
  std::uint32_t hold = 6;
  std::uint64_t minor = 0;                // the sender's minor version (0: absent, v1.0)
  AudioCodec audio = AudioCodec::Off;     // the stream's voice (v1.1)
  std::uint32_t audio_rate = 0;           // Hz; 0 without a voice
};

// One stream as a renderer holds it: `morphs` has every rig morph (rig order), `channels`
// every rotation channel. Elements outside the current LOD rest at code 0.
struct Stream {
  HelloInfo hello;
  std::vector<float> morphs;
  std::vector<float> channels;
  std::vector<std::int32_t> codes, kf_codes, idx, scratch;
  int lod = -1;
  int want_lod = -1;
  bool has_kf = false;
  std::uint32_t last_seq = 0, kf_seq = 0;
  std::uint64_t t = 0, kf_t = 0;
};

struct Result {
  Kind kind = Kind::Ignored;
  ErrorCode error = ErrorCode::None;
  std::string detail;
  std::uint32_t sid = 0, lod = 0, seq = 0, count = 0, type = 0;  // seq: also VOICE_CUT's next_seq
  std::uint64_t t = 0;
  bool keyframe = false;
  // Event
  std::uint32_t event = 0;
  std::string text;  // state name or emotion name
  bool flag = false;  // speaking
  double number = 0.0;  // emotion intensity
  // Control
  std::uint32_t op = 0, mode = 0, bits = 8;
  std::string session;
  bool has_audio = false;  // SET_AUDIO, or a SUBSCRIBE with its v1.1 seventh element
  AudioCodec audio = AudioCodec::Off;
  // Audio: the codec and rate its stream's hello named; the payload is a view into the
  // buffer passed to feed() (valid while that buffer is).
  AudioCodec codec = AudioCodec::Off;
  std::uint32_t rate = 0;
  const std::uint8_t* payload = nullptr;
  std::size_t payload_size = 0;
  // Ping / Pong / ErrorMessage
  std::uint64_t nonce = 0;
  std::uint32_t code = 0;
  // Hello / PublishHello / Capture
  const HelloInfo* hello = nullptr;
  std::uint32_t pid = 0, fps = 0;
  std::vector<std::string> names, channel_names;
  std::string source;
  bool positional = false;
  std::vector<float> values;
  std::vector<std::pair<std::string, double>> named;
};

namespace detail {

using msgpack::Type;
using msgpack::Value;

struct Fail {
  ErrorCode code = ErrorCode::None;
  std::string detail;
  bool failed() const { return code != ErrorCode::None; }
};

inline bool set(Fail& f, ErrorCode c, std::string d) {
  if (!f.failed()) {
    f.code = c;
    f.detail = std::move(d);
  }
  return false;
}

inline bool uint_of(const Value& v, const char* what, std::uint64_t max, std::uint64_t& out, Fail& f) {
  if (v.type != Type::Int) return set(f, ErrorCode::Type, std::string(what) + " must be an integer");
  if (v.negative || v.u > max) return set(f, ErrorCode::Value, std::string(what) + " is out of range");
  out = v.u;
  return true;
}

inline bool need(const Value& msg, std::size_t n, const char* what, Fail& f) {
  if (msg.items.size() < n) {
    return set(f, ErrorCode::Type, std::string(what) + " needs at least " + std::to_string(n) + " elements");
  }
  return true;
}

inline bool str_of(const Value& v, const char* what, std::size_t limit, std::string& out, Fail& f) {
  if (v.type != Type::Str) return set(f, ErrorCode::Type, std::string(what) + " must be a str");
  if (v.size > limit) return set(f, ErrorCode::Limit, std::string(what) + " is too long");
  out.assign(reinterpret_cast<const char*>(v.data), v.size);
  return true;
}

inline bool num_of(const Value& v, const char* what, double& out, Fail& f) {
  if (!v.is_number()) return set(f, ErrorCode::Type, std::string(what) + " must be a number");
  out = v.number();
  return true;
}

inline bool list_of(const Value& v, const char* what, std::size_t limit, Fail& f) {
  if (v.type != Type::Array) return set(f, ErrorCode::Type, std::string(what) + " must be an array");
  if (v.items.size() > limit) return set(f, ErrorCode::Limit, std::string(what) + " has too many entries");
  return true;
}

inline bool names_of(const Value& v, const char* what, std::size_t limit, std::vector<std::string>& out, Fail& f) {
  if (!list_of(v, what, limit, f)) return false;
  out.resize(v.items.size());
  for (std::size_t k = 0; k < v.items.size(); ++k) {
    if (!str_of(v.items[k], what, kMaxNameBytes, out[k], f)) return false;
  }
  return true;
}

inline bool uints_of(const Value& v, const char* what, std::size_t limit, std::vector<std::int64_t>& out, Fail& f) {
  if (!list_of(v, what, limit, f)) return false;
  out.resize(v.items.size());
  for (std::size_t k = 0; k < v.items.size(); ++k) {
    const Value& x = v.items[k];
    if (x.type != Type::Int) return set(f, ErrorCode::Type, std::string(what) + " entries must be integers");
    out[k] = x.negative ? -1 : (x.u > kU32 ? static_cast<std::int64_t>(kU32) + 1 : static_cast<std::int64_t>(x.u));
  }
  return true;
}

inline bool seq_newer(std::uint32_t a, std::uint32_t b) {
  std::uint32_t d = (a - b) & 0xFFFFu;
  return d > 0 && d < 0x8000u;
}

// The voice a hello names (v1.1 keys audio, audio_rate); no `audio` key: Off.
inline bool hello_audio(const Value& info, HelloInfo& h, Fail& f) {
  const Value* v = info.get("audio");
  if (v == nullptr) return true;
  std::string name;
  if (!str_of(*v, "audio", kMaxNameBytes, name, f)) return false;
  if (name == "opus") h.audio = AudioCodec::Opus;
  else if (name == "pcm16") h.audio = AudioCodec::Pcm16;
  else return set(f, ErrorCode::Value, "audio is not opus or pcm16");
  const bool opus = h.audio == AudioCodec::Opus;
  std::uint64_t rate = opus ? kOpusRate : kPcm16DefaultRate;
  if ((v = info.get("audio_rate")) && !uint_of(*v, "audio_rate", kU64, rate, f)) return false;
  if (opus ? rate != kOpusRate : (rate < kPcm16MinRate || rate > kPcm16MaxRate)) {
    return set(f, ErrorCode::Value, "audio_rate is not allowed for this codec");
  }
  h.audio_rate = static_cast<std::uint32_t>(rate);
  return true;
}

inline bool parse_hello(const Value& msg, HelloInfo& h, Fail& f) {
  if (!need(msg, 4, "hello", f)) return false;
  std::uint64_t version = 0, u = 0;
  if (msg.items[1].type != Type::Int) return set(f, ErrorCode::Type, "hello version must be an integer");
  if (!uint_of(msg.items[1], "hello version", 255, version, f)) return false;
  if (version != kVersion) return set(f, ErrorCode::Version, "protocol version " + std::to_string(version));
  if (!uint_of(msg.items[2], "sid", kU32, u, f)) return false;
  h.sid = static_cast<std::uint32_t>(u);
  const Value& info = msg.items[3];
  if (info.type != Type::Map) return set(f, ErrorCode::Type, "hello info must be a map");
  auto get = [&](const char* key) -> const Value* {
    const Value* v = info.get(key);
    if (v == nullptr) set(f, ErrorCode::Type, std::string("hello info lacks ") + key);
    return v;
  };
  const Value* v;
  if (!(v = get("rig")) || !str_of(*v, "rig", kMaxNameBytes, h.rig, f)) return false;
  if (!(v = get("morphs")) || !names_of(*v, "morphs", kMaxMorphs, h.morph_names, f)) return false;
  if (!(v = get("channels")) || !names_of(*v, "channels", kMaxChannels, h.channel_names, f)) return false;
  for (auto [key, dst] : {std::pair<const char*, std::vector<double>*>{"lo", &h.lo}, {"hi", &h.hi}}) {
    if (!(v = get(key)) || !list_of(*v, key, kMaxMorphs, f)) return false;
    dst->resize(v->items.size());
    for (std::size_t k = 0; k < v->items.size(); ++k) {
      if (!num_of(v->items[k], key, (*dst)[k], f)) return false;
    }
  }
  if (!(v = get("rot_scale")) || !num_of(*v, "rot_scale", h.rot_scale, f)) return false;
  if (!(v = get("lods")) || !list_of(*v, "lods", kLodLevels, f)) return false;
  std::vector<std::vector<std::int64_t>> lod_m(v->items.size()), lod_c(v->items.size());
  h.lods.resize(v->items.size());
  for (std::size_t k = 0; k < v->items.size(); ++k) {
    const Value& item = v->items[k];
    if (!list_of(item, "lods entry", 16, f)) return false;
    if (item.items.size() < 4) return set(f, ErrorCode::Type, "a lods entry is [level, fps, morphs, channels]");
    if (!uint_of(item.items[0], "lod level", kLodLevels - 1, u, f)) return false;
    h.lods[k].level = static_cast<std::uint32_t>(u);
    if (!uint_of(item.items[1], "lod fps", 240, u, f)) return false;
    h.lods[k].fps = static_cast<std::uint32_t>(u);
    if (!uints_of(item.items[2], "lod morphs", kMaxMorphs, lod_m[k], f)) return false;
    if (!uints_of(item.items[3], "lod channels", kMaxChannels, lod_c[k], f)) return false;
  }
  if (!(v = get("bits")) || !uint_of(*v, "bits", 255, u, f)) return false;
  h.bits = static_cast<std::uint32_t>(u);
  if (!(v = get("mode")) || !uint_of(*v, "mode", 1, u, f)) return false;
  h.mode = static_cast<std::uint32_t>(u);
  h.keyframe_ms = 500;
  if ((v = info.get("keyframe_ms")) && !uint_of(*v, "keyframe_ms", kU64, h.keyframe_ms, f)) return false;
  h.dead_band = 1.0;
  if ((v = info.get("dead_band")) && !num_of(*v, "dead_band", h.dead_band, f)) return false;
  u = 6;
  if ((v = info.get("hold")) && !uint_of(*v, "hold", 255, u, f)) return false;
  h.hold = static_cast<std::uint32_t>(std::max<std::uint64_t>(1, u));
  h.keyframe_ms = std::max<std::uint64_t>(1, h.keyframe_ms);
  if ((v = info.get("minor")) && !uint_of(*v, "minor", kU64, h.minor, f)) return false;
  if (!hello_audio(info, h, f)) return false;
  // Schema checks (the same as StreamSchema / StreamParams in Python) -> Value errors.
  const std::size_t m = h.morph_names.size(), c = h.channel_names.size();
  if (m == 0 || m > kMaxMorphs) return set(f, ErrorCode::Value, "a stream has 1..1024 morphs");
  if (h.lo.size() != m || h.hi.size() != m) return set(f, ErrorCode::Value, "lo and hi need one value per morph");
  for (std::size_t k = 0; k < m; ++k) {
    if (!(std::fabs(h.lo[k]) <= kF32Max && std::fabs(h.hi[k]) <= kF32Max)) {
      return set(f, ErrorCode::Value, "morph ranges must be finite float32 values");
    }
  }
  for (std::size_t k = 0; k < m; ++k) {
    if (!(h.hi[k] > h.lo[k])) return set(f, ErrorCode::Value, "every morph range needs hi > lo");
  }
  if (!(h.rot_scale > 0 && h.rot_scale <= kF32Max)) return set(f, ErrorCode::Value, "rot_scale must be a positive float32 value");
  if (h.lods.size() != kLodLevels) return set(f, ErrorCode::Value, "a stream has exactly 4 LOD levels");
  for (std::size_t k = 0; k < kLodLevels; ++k) {
    LodTable& t = h.lods[k];
    if (t.level != k) return set(f, ErrorCode::Value, "LOD tables must be listed in level order");
    if (t.fps < 1) return set(f, ErrorCode::Value, "LOD fps must be 1..240");
    for (int which = 0; which < 2; ++which) {
      const auto& src = which == 0 ? lod_m[k] : lod_c[k];
      const std::int64_t n = static_cast<std::int64_t>(which == 0 ? m : c);
      auto& dst = which == 0 ? t.morphs : t.channels;
      dst.resize(src.size());
      for (std::size_t j = 0; j < src.size(); ++j) {
        if (src[j] < 0 || src[j] >= n || (j > 0 && src[j] <= src[j - 1])) {
          return set(f, ErrorCode::Value, "LOD indices must be ascending, unique and in range");
        }
        dst[j] = static_cast<std::uint32_t>(src[j]);
      }
    }
    if (t.size() == 0) return set(f, ErrorCode::Value, "a LOD level needs at least one element");
  }
  // Stream state is sized by level 0, so it must hold every element (no level can be larger).
  if (h.lods[0].morphs.size() != m || h.lods[0].channels.size() != c) {
    return set(f, ErrorCode::Value, "LOD 0 must list every morph and every channel");
  }
  if (h.bits != 8 && h.bits != 16) return set(f, ErrorCode::Value, "bits must be 8 or 16");
  if (!(std::isfinite(h.dead_band) && h.dead_band >= 0)) return set(f, ErrorCode::Value, "dead_band must be >= 0");
  return true;
}

// Body layout: group mask, element masks, values (docs/protocol.md, "Frame body").
inline bool unpack_body(const std::uint8_t* body, std::size_t size, std::size_t n, std::size_t nm,
                        std::uint32_t bits, std::int32_t* idx, std::int32_t* codes,
                        std::size_t& count, Fail& f) {
  const std::size_t groups = (n + 7) / 8;
  const std::size_t gm = (groups + 7) / 8;
  if (size < gm) return set(f, ErrorCode::Body, "body is shorter than its group mask");
  std::size_t pos = gm;
  count = 0;
  for (std::size_t g = 0; g < gm * 8; ++g) {
    if (!((body[g >> 3] >> (g & 7)) & 1)) continue;
    if (g >= groups) return set(f, ErrorCode::Body, "a group beyond the level is set");
    if (pos >= size) return set(f, ErrorCode::Body, "body ends inside the element masks");
    const std::uint8_t mask = body[pos++];
    if (mask == 0) return set(f, ErrorCode::Body, "a flagged group has an empty element mask");
    for (std::size_t j = 0; j < 8; ++j) {
      if ((mask >> j) & 1) {
        const std::size_t i = g * 8 + j;
        if (i >= n) return set(f, ErrorCode::Body, "an element beyond the level is set");
        idx[count++] = static_cast<std::int32_t>(i);
      }
    }
  }
  const std::size_t width = bits / 8;
  if (size - pos != width * count) return set(f, ErrorCode::Body, "value bytes do not match the element count");
  for (std::size_t k = 0; k < count; ++k) {
    std::int32_t c;
    if (width == 1) {
      c = body[pos + k];
      if (static_cast<std::size_t>(idx[k]) >= nm && c > 127) c -= 256;
    } else {
      c = body[pos + 2 * k] | (body[pos + 2 * k + 1] << 8);
      if (static_cast<std::size_t>(idx[k]) >= nm && c > 32767) c -= 65536;
    }
    codes[k] = c;
  }
  return true;
}

inline void refresh(Stream& s) {
  const HelloInfo& h = s.hello;
  const LodTable& lod = h.lods[static_cast<std::size_t>(s.lod)];
  const double q = h.bits == 8 ? 255.0 : 65535.0;
  const double r = h.bits == 8 ? 127.0 : 32767.0;
  const std::size_t nm = lod.morphs.size();
  for (std::size_t i = 0; i < s.morphs.size(); ++i) s.morphs[i] = static_cast<float>(h.lo[i]);
  std::fill(s.channels.begin(), s.channels.end(), 0.0f);
  for (std::size_t j = 0; j < nm; ++j) {
    const std::size_t i = lod.morphs[j];
    const double lo = h.lo[i];
    s.morphs[i] = static_cast<float>(lo + ((h.hi[i] - lo) * s.codes[j]) / q);
  }
  for (std::size_t j = 0; j < lod.channels.size(); ++j) {
    s.channels[lod.channels[j]] = static_cast<float>((h.rot_scale * s.codes[nm + j]) / r);
  }
}

}  // namespace detail

class Decoder {
 public:
  explicit Decoder(std::size_t max_streams = kMaxStreams) : max_streams_(max_streams) {}

  const Stream* stream(std::uint32_t sid) const {
    auto it = streams_.find(sid);
    return it == streams_.end() ? nullptr : &it->second;
  }

  // Call when sending SET_LOD: late frames of the level being left become Stale.
  void expect_lod(std::uint32_t sid, int lod) {
    auto it = streams_.find(sid);
    if (it != streams_.end()) it->second.want_lod = lod;
  }

  Result feed(const std::uint8_t* data, std::size_t size) {
    Result r;
    detail::Fail f;
    if (size > kMaxMessageBytes) return error(ErrorCode::Limit, "message exceeds 65536 bytes");
    msgpack::Value msg;
    std::string why;
    msgpack::Reader reader(data, size);
    switch (reader.parse(msg, why)) {
      case msgpack::ReadError::Malformed: return error(ErrorCode::Malformed, why);
      case msgpack::ReadError::Limit: return error(ErrorCode::Limit, why);
      default: break;
    }
    if (msg.type != msgpack::Type::Array || msg.items.empty()) {
      return error(ErrorCode::Type, "a message is a non-empty msgpack array");
    }
    std::uint64_t kind = 0;
    if (!detail::uint_of(msg.items[0], "message type", 255, kind, f)) return error(f);
    switch (static_cast<MsgType>(kind)) {
      case MsgType::Hello: {
        HelloInfo h;
        if (!detail::parse_hello(msg, h, f)) return error(f);
        if (streams_.find(h.sid) == streams_.end() && streams_.size() >= max_streams_) {
          return error(ErrorCode::Limit, "too many streams");
        }
        Stream s;
        const std::size_t n0 = h.lods[0].size();
        s.morphs.assign(h.lo.begin(), h.lo.end());
        s.channels.assign(h.channel_names.size(), 0.0f);
        s.codes.assign(n0, 0);
        s.kf_codes.assign(n0, 0);
        s.idx.assign(n0, 0);
        s.scratch.assign(n0, 0);
        s.hello = std::move(h);
        const std::uint32_t sid = s.hello.sid;
        streams_[sid] = std::move(s);
        r.kind = Kind::Hello;
        r.sid = sid;
        r.hello = &streams_[sid].hello;
        return r;
      }
      case MsgType::Keyframe:
      case MsgType::Delta:
        return frame(msg, kind == static_cast<std::uint64_t>(MsgType::Keyframe));
      case MsgType::Event:
        return event(msg);
      case MsgType::Audio:
        return audio(msg);
      case MsgType::Control:
        return control(msg);
      case MsgType::Ping:
      case MsgType::Pong: {
        if (!detail::need(msg, 3, "ping", f) || !detail::uint_of(msg.items[1], "nonce", kU64, r.nonce, f) ||
            !detail::uint_of(msg.items[2], "t", kU64, r.t, f)) {
          return error(f);
        }
        r.kind = kind == static_cast<std::uint64_t>(MsgType::Ping) ? Kind::Ping : Kind::Pong;
        return r;
      }
      case MsgType::Error: {
        std::uint64_t code = 0;
        if (!detail::need(msg, 3, "error", f) || !detail::uint_of(msg.items[1], "error code", kU16, code, f) ||
            !detail::str_of(msg.items[2], "message", kMaxEventText, r.text, f)) {
          return error(f);
        }
        r.kind = Kind::ErrorMessage;
        r.code = static_cast<std::uint32_t>(code);
        return r;
      }
      case MsgType::PublishHello:
        return publish_hello(msg);
      case MsgType::Capture:
        return capture(msg);
      default:
        r.kind = Kind::Ignored;
        r.type = static_cast<std::uint32_t>(kind);
        return r;
    }
  }

 private:
  std::map<std::uint32_t, Stream> streams_;
  struct Publisher {
    std::size_t count = 0;
  };
  std::map<std::uint32_t, Publisher> publishers_;
  std::size_t max_streams_;

  static Result error(ErrorCode code, std::string detail) {
    Result r;
    r.kind = Kind::Error;
    r.error = code;
    r.detail = std::move(detail);
    return r;
  }
  static Result error(const detail::Fail& f) { return error(f.code, f.detail); }

  Result frame(const msgpack::Value& msg, bool keyframe) {
    detail::Fail f;
    const std::size_t n_fields = keyframe ? 6 : 7;
    if (msg.items.size() < n_fields) return error(ErrorCode::Type, "a frame has too few elements");
    std::uint64_t sid, lod, seq, t, back = 0;
    if (!detail::uint_of(msg.items[1], "sid", kU32, sid, f) || !detail::uint_of(msg.items[2], "lod", 255, lod, f) ||
        !detail::uint_of(msg.items[3], "seq", kU16, seq, f)) {
      return error(f);
    }
    if (keyframe) {
      if (!detail::uint_of(msg.items[4], "t", kU64, t, f)) return error(f);
    } else if (!detail::uint_of(msg.items[4], "back", kU16, back, f) || !detail::uint_of(msg.items[5], "dt", kU64, t, f)) {
      return error(f);
    }
    const msgpack::Value& body = msg.items[n_fields - 1];
    if (body.type != msgpack::Type::Bin) return error(ErrorCode::Type, "a frame body must be bin");
    if (lod >= kLodLevels) return error(ErrorCode::Value, "lod is not 0..3");
    if (!keyframe && !(back >= 1 && back < 0x8000)) return error(ErrorCode::Value, "back is not 1..32767");
    return apply(static_cast<std::uint32_t>(sid), static_cast<std::uint32_t>(lod), static_cast<std::uint32_t>(seq), t,
                 static_cast<std::uint32_t>(back), keyframe, body.data, body.size);
  }

  Result apply(std::uint32_t sid, std::uint32_t lod, std::uint32_t seq, std::uint64_t t, std::uint32_t back,
               bool keyframe, const std::uint8_t* body, std::size_t body_size) {
    Result r;
    r.sid = sid;
    r.lod = lod;
    r.seq = seq;
    auto it = streams_.find(sid);
    if (it == streams_.end()) {
      r.kind = Kind::UnknownStream;
      return r;
    }
    Stream& st = it->second;
    const LodTable& table = st.hello.lods[lod];
    std::size_t count = 0;
    detail::Fail f;
    if (!detail::unpack_body(body, body_size, table.size(), table.morphs.size(), st.hello.bits, st.idx.data(),
                             st.scratch.data(), count, f)) {
      return error(f);
    }
    r.count = static_cast<std::uint32_t>(count);
    const int ilod = static_cast<int>(lod);
    if (keyframe) {
      if ((st.want_lod >= 0 && ilod != st.want_lod) || (st.has_kf && ilod == st.lod && detail::seq_newer(st.last_seq, seq))) {
        r.kind = Kind::Stale;
        return r;
      }
      std::fill(st.codes.begin(), st.codes.end(), 0);
      for (std::size_t k = 0; k < count; ++k) st.codes[static_cast<std::size_t>(st.idx[k])] = st.scratch[k];
      st.kf_codes = st.codes;
      st.lod = ilod;
      st.has_kf = true;
      st.last_seq = st.kf_seq = seq;
      st.t = st.kf_t = t;
      detail::refresh(st);
      r.kind = Kind::Frame;
      r.keyframe = true;
      r.t = t;
      return r;
    }
    if (st.want_lod >= 0 && ilod != st.want_lod) {
      r.kind = Kind::Stale;
      return r;
    }
    if (!st.has_kf || ilod != st.lod) {
      r.kind = Kind::NeedKeyframe;
      return r;
    }
    if (!detail::seq_newer(seq, st.last_seq)) {
      r.kind = Kind::Stale;
      return r;
    }
    const std::uint32_t ref = (seq - back) & 0xFFFFu;
    std::uint64_t ref_t;
    if (ref == st.kf_seq) {
      st.codes = st.kf_codes;
      ref_t = st.kf_t;
    } else if (ref == st.last_seq) {
      ref_t = st.t;
    } else {
      r.kind = Kind::NeedKeyframe;
      return r;
    }
    for (std::size_t k = 0; k < count; ++k) st.codes[static_cast<std::size_t>(st.idx[k])] = st.scratch[k];
    st.last_seq = seq;
    st.t = ref_t + t;
    detail::refresh(st);
    r.kind = Kind::Frame;
    r.t = st.t;
    return r;
  }

  Result event(const msgpack::Value& msg) {
    Result r;
    detail::Fail f;
    std::uint64_t sid, t, kind, code;
    if (!detail::need(msg, 5, "event", f) || !detail::uint_of(msg.items[1], "sid", kU32, sid, f) ||
        !detail::uint_of(msg.items[2], "t", kU64, t, f) || !detail::uint_of(msg.items[3], "event kind", 255, kind, f)) {
      return error(f);
    }
    r.kind = Kind::Event;
    r.sid = static_cast<std::uint32_t>(sid);
    r.t = t;
    r.event = static_cast<std::uint32_t>(kind);
    const msgpack::Value& v = msg.items[4];
    if (kind == static_cast<std::uint64_t>(EventKind::State)) {
      if (!detail::uint_of(v, "state", 255, code, f)) return error(f);
      if (code >= 8) return error(ErrorCode::Value, "state is not defined");
      r.text = kSessionStates[code];
      return r;
    }
    if (kind == static_cast<std::uint64_t>(EventKind::Speaking)) {
      if (v.type != msgpack::Type::Bool) return error(ErrorCode::Type, "speaking must be a bool");
      r.flag = v.boolean;
      return r;
    }
    if (kind == static_cast<std::uint64_t>(EventKind::Emotion)) {
      if (!detail::list_of(v, "emotion", 2, f)) return error(f);
      if (v.items.size() != 2) return error(ErrorCode::Type, "emotion is [name, intensity]");
      if (!detail::str_of(v.items[0], "emotion name", kMaxNameBytes, r.text, f) ||
          !detail::num_of(v.items[1], "intensity", r.number, f)) {
        return error(f);
      }
      return r;
    }
    if (kind == static_cast<std::uint64_t>(EventKind::VoiceCut)) {
      if (!detail::uint_of(v, "voice cut next_seq", kU16, code, f)) return error(f);
      r.seq = static_cast<std::uint32_t>(code);
      return r;
    }
    Result ignored;
    ignored.kind = Kind::Ignored;
    ignored.type = static_cast<std::uint32_t>(MsgType::Event);
    return ignored;
  }

  // AUDIO [10, sid, seq, t, payload], checked against its stream's hello (docs/protocol.md 3.8).
  Result audio(const msgpack::Value& msg) const {
    Result r;
    detail::Fail f;
    std::uint64_t sid, seq, t;
    if (!detail::need(msg, 5, "audio", f) || !detail::uint_of(msg.items[1], "sid", kU32, sid, f) ||
        !detail::uint_of(msg.items[2], "seq", kU16, seq, f) || !detail::uint_of(msg.items[3], "t", kU64, t, f)) {
      return error(f);
    }
    const msgpack::Value& payload = msg.items[4];
    if (payload.type != msgpack::Type::Bin) return error(ErrorCode::Type, "an audio payload must be bin");
    r.sid = static_cast<std::uint32_t>(sid);
    auto it = streams_.find(r.sid);
    if (it == streams_.end()) {
      r.kind = Kind::UnknownStream;
      return r;
    }
    const HelloInfo& h = it->second.hello;
    if (h.audio == AudioCodec::Off) return error(ErrorCode::Value, "audio for a stream whose hello named no voice");
    if (payload.size == 0) return error(ErrorCode::Body, "an empty audio payload");
    if (h.audio == AudioCodec::Pcm16) {
      const std::size_t limit = 2 * (static_cast<std::size_t>(h.audio_rate) * kAudioPacketMs / 1000);
      if (payload.size % 2 != 0 || payload.size > limit) {
        return error(ErrorCode::Body, "a pcm16 payload must be an even number of bytes, at most 20 ms");
      }
    }
    r.kind = Kind::Audio;
    r.seq = static_cast<std::uint32_t>(seq);
    r.t = t;
    r.codec = h.audio;
    r.rate = h.audio_rate;
    r.payload = payload.data;
    r.payload_size = payload.size;
    return r;
  }

  Result control(const msgpack::Value& msg) {
    Result r;
    detail::Fail f;
    std::uint64_t op, u;
    if (!detail::need(msg, 3, "control", f) || !detail::uint_of(msg.items[1], "control op", 255, op, f)) return error(f);
    r.kind = Kind::Control;
    r.op = static_cast<std::uint32_t>(op);
    if (op == static_cast<std::uint64_t>(Op::Subscribe)) {
      if (!detail::need(msg, 6, "subscribe", f) || !detail::str_of(msg.items[2], "session", kMaxNameBytes, r.session, f)) {
        return error(f);
      }
      if (!detail::uint_of(msg.items[3], "lod", 3, u, f)) return error(f);
      r.lod = static_cast<std::uint32_t>(u);
      if (!detail::uint_of(msg.items[4], "mode", 1, u, f)) return error(f);
      r.mode = static_cast<std::uint32_t>(u);
      if (!detail::uint_of(msg.items[5], "bits", 255, u, f)) return error(f);
      r.bits = static_cast<std::uint32_t>(u);
      if (r.bits != 8 && r.bits != 16) return error(ErrorCode::Value, "bits is not 8 or 16");
      if (msg.items.size() > 6 && !audio_code(msg.items[6], r, f)) return error(f);  // v1.1
      return r;
    }
    if (op > static_cast<std::uint64_t>(Op::SetAudio)) {
      Result ignored;
      ignored.kind = Kind::Ignored;
      ignored.type = static_cast<std::uint32_t>(MsgType::Control);
      return ignored;
    }
    if (!detail::uint_of(msg.items[2], "sid", kU32, u, f)) return error(f);
    r.sid = static_cast<std::uint32_t>(u);
    if (op == static_cast<std::uint64_t>(Op::Unsubscribe)) return r;
    if (!detail::need(msg, 4, "control", f)) return error(f);
    if (op == static_cast<std::uint64_t>(Op::SetAudio)) {
      if (!audio_code(msg.items[3], r, f)) return error(f);
      return r;
    }
    if (!detail::uint_of(msg.items[3], "lod", 3, u, f)) return error(f);
    r.lod = static_cast<std::uint32_t>(u);
    if (op == static_cast<std::uint64_t>(Op::Ack)) {
      if (!detail::need(msg, 5, "ack", f) || !detail::uint_of(msg.items[4], "seq", kU16, u, f)) return error(f);
      r.seq = static_cast<std::uint32_t>(u);
    }
    return r;
  }

  // SUBSCRIBE's and SET_AUDIO's voice: 0 off, 1 opus, 2 pcm16 (others: Value).
  static bool audio_code(const msgpack::Value& v, Result& r, detail::Fail& f) {
    std::uint64_t code = 0;
    if (!detail::uint_of(v, "audio", static_cast<std::uint64_t>(AudioCodec::Pcm16), code, f)) return false;
    r.has_audio = true;
    r.audio = static_cast<AudioCodec>(code);
    return true;
  }

  Result publish_hello(const msgpack::Value& msg) {
    Result r;
    detail::Fail f;
    std::uint64_t version, pid, fps = 60;
    if (!detail::need(msg, 4, "publish hello", f) || !detail::uint_of(msg.items[1], "version", 255, version, f)) {
      return error(f);
    }
    if (version != kVersion) return error(ErrorCode::Version, "protocol version " + std::to_string(version));
    if (!detail::uint_of(msg.items[2], "pid", kU32, pid, f)) return error(f);
    const msgpack::Value& info = msg.items[3];
    if (info.type != msgpack::Type::Map) return error(ErrorCode::Type, "publish hello info must be a map");
    const msgpack::Value* v;
    if ((v = info.get("morphs")) && !detail::names_of(*v, "morphs", kMaxMorphs, r.names, f)) return error(f);
    if ((v = info.get("channels")) && !detail::names_of(*v, "channels", kMaxChannels, r.channel_names, f)) return error(f);
    if ((v = info.get("fps")) && !detail::uint_of(*v, "fps", 240, fps, f)) return error(f);
    r.source = "arkit52";
    if ((v = info.get("source")) && !detail::str_of(*v, "source", kMaxNameBytes, r.source, f)) return error(f);
    if (publishers_.find(static_cast<std::uint32_t>(pid)) == publishers_.end() && publishers_.size() >= max_streams_) {
      return error(ErrorCode::Limit, "too many publishers");
    }
    publishers_[static_cast<std::uint32_t>(pid)].count = r.names.size() + r.channel_names.size();
    r.kind = Kind::PublishHello;
    r.pid = static_cast<std::uint32_t>(pid);
    r.fps = static_cast<std::uint32_t>(fps);
    return r;
  }

  Result capture(const msgpack::Value& msg) {
    Result r;
    detail::Fail f;
    std::uint64_t pid, seq, t;
    if (!detail::need(msg, 5, "capture", f) || !detail::uint_of(msg.items[1], "pid", kU32, pid, f) ||
        !detail::uint_of(msg.items[2], "seq", kU16, seq, f) || !detail::uint_of(msg.items[3], "t", kU64, t, f)) {
      return error(f);
    }
    r.kind = Kind::Capture;
    r.pid = static_cast<std::uint32_t>(pid);
    r.seq = static_cast<std::uint32_t>(seq);
    r.t = t;
    const msgpack::Value& payload = msg.items[4];
    if (payload.type == msgpack::Type::Map) {
      if (payload.map_size() > kMaxMorphs + kMaxChannels) return error(ErrorCode::Limit, "too many named values");
      for (std::size_t k = 0; k + 1 < payload.items.size(); k += 2) {
        std::string name;
        double value;
        if (!detail::str_of(payload.items[k], "name", kMaxNameBytes, name, f) ||
            !detail::num_of(payload.items[k + 1], "value", value, f)) {
          return error(f);
        }
        auto same = std::find_if(r.named.begin(), r.named.end(), [&](const auto& p) { return p.first == name; });
        if (same != r.named.end()) same->second = value;
        else r.named.emplace_back(std::move(name), value);
      }
      return r;
    }
    if (payload.type == msgpack::Type::Bin) {
      auto it = publishers_.find(r.pid);
      if (it == publishers_.end()) return error(ErrorCode::Value, "positional capture without a publish hello");
      if (payload.size != 4 * it->second.count) return error(ErrorCode::Body, "capture size does not match the hello");
      r.positional = true;
      r.values.resize(it->second.count);
      for (std::size_t k = 0; k < r.values.size(); ++k) {
        const std::uint8_t* p = payload.data + 4 * k;
        const std::uint32_t bits = static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
                                   (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
        std::memcpy(&r.values[k], &bits, 4);
      }
      return r;
    }
    return error(ErrorCode::Type, "capture values must be bin or map");
  }
};

// ---------------------------------------------------------------- what a viewer sends

namespace detail {
inline void pack_uint(std::vector<std::uint8_t>& out, std::uint64_t v) {
  if (v < 0x80) {
    out.push_back(static_cast<std::uint8_t>(v));
  } else if (v < 0x100) {
    out.push_back(0xCC);
    out.push_back(static_cast<std::uint8_t>(v));
  } else if (v < 0x10000) {
    out.push_back(0xCD);
    for (int s = 8; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
  } else if (v <= kU32) {
    out.push_back(0xCE);
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
  } else {
    out.push_back(0xCF);
    for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
  }
}
}  // namespace detail

// SUBSCRIBE [4, 0, session, lod, mode, bits]; the server answers HELLO, then a keyframe.
inline std::vector<std::uint8_t> encode_subscribe(const std::string& session, std::uint32_t lod = 0,
                                                  std::uint32_t mode = 0, std::uint32_t bits = 8) {
  std::vector<std::uint8_t> out{0x96, static_cast<std::uint8_t>(MsgType::Control),
                                static_cast<std::uint8_t>(Op::Subscribe)};
  const std::size_t n = session.size();
  if (n < 32) {
    out.push_back(static_cast<std::uint8_t>(0xA0 | n));
  } else if (n < 256) {
    out.push_back(0xD9);
    out.push_back(static_cast<std::uint8_t>(n));
  } else {
    out.push_back(0xDA);
    out.push_back(static_cast<std::uint8_t>(n >> 8));
    out.push_back(static_cast<std::uint8_t>(n));
  }
  out.insert(out.end(), session.begin(), session.end());
  detail::pack_uint(out, lod);
  detail::pack_uint(out, mode);
  detail::pack_uint(out, bits);
  return out;
}

// SUBSCRIBE asking for a voice (v1.1): [4, 0, session, lod, mode, bits, audio].
inline std::vector<std::uint8_t> encode_subscribe(const std::string& session, std::uint32_t lod, std::uint32_t mode,
                                                  std::uint32_t bits, AudioCodec audio) {
  std::vector<std::uint8_t> out = encode_subscribe(session, lod, mode, bits);
  out[0] = 0x97;
  out.push_back(static_cast<std::uint8_t>(audio));
  return out;
}

// PING / PONG [5|6, nonce, t]
inline std::vector<std::uint8_t> encode_ping(std::uint64_t nonce, std::uint64_t t, bool pong = false) {
  std::vector<std::uint8_t> out{0x93, static_cast<std::uint8_t>(pong ? MsgType::Pong : MsgType::Ping)};
  detail::pack_uint(out, nonce);
  detail::pack_uint(out, t);
  return out;
}

// UNSUBSCRIBE [4,1,sid] | SET_LOD [4,2,sid,lod] | REQUEST_KEYFRAME [4,3,sid,lod] | ACK [4,4,sid,lod,seq]
// | SET_AUDIO [4,5,sid,audio] (the AudioCodec code in `lod`'s place; or use encode_set_audio)
inline std::vector<std::uint8_t> encode_control(Op op, std::uint32_t sid, std::uint32_t lod = 0, std::uint32_t seq = 0) {
  std::vector<std::uint8_t> out;
  const std::size_t n = op == Op::Unsubscribe ? 3 : (op == Op::Ack ? 5 : 4);
  out.push_back(static_cast<std::uint8_t>(0x90 | n));
  out.push_back(static_cast<std::uint8_t>(MsgType::Control));
  out.push_back(static_cast<std::uint8_t>(op));
  detail::pack_uint(out, sid);
  if (n >= 4) detail::pack_uint(out, lod);
  if (n == 5) detail::pack_uint(out, seq);
  return out;
}

// SET_AUDIO [4, 5, sid, audio]: the server answers with a new hello naming the voice.
inline std::vector<std::uint8_t> encode_set_audio(std::uint32_t sid, AudioCodec audio) {
  return encode_control(Op::SetAudio, sid, static_cast<std::uint32_t>(audio));
}

}  // namespace avatar_engine::protocol
