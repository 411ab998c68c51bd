// Decode a conformance vector file (tests/vectors/*.msgs) and print one JSON line per message,
// in the same shape as the vectors' "expect" entries. pytest compares the output.
//
//   g++ -std=c++17 -O2 -I native/include native/examples/decode_vectors.cpp -o decode_vectors
//   ./decode_vectors tests/vectors/chained_8bit.msgs
//
// Record format: u8 tag (0 = message, 1 = expect_lod, 2 = reset) | u32 LE length | payload;
// an expect_lod payload is u32 LE sid | u8 lod; reset (used by the differential tests) starts
// a fresh Decoder.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "avatar_engine/protocol.hpp"

namespace ap = avatar_engine::protocol;

namespace {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string num(double v) {
  if (std::isnan(v)) return "\"NaN\"";
  if (std::isinf(v)) return v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string floats(const std::vector<float>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + num(v[i]);
  return out + "]";
}

std::string strings(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + quote(v[i]);
  return out + "]";
}

std::string hex(const std::uint8_t* p, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

std::string describe(const ap::Result& r, const ap::Decoder& dec) {
  using K = ap::Kind;
  switch (r.kind) {
    case K::Hello: {
      // v1.1 keys appear only when the hello carries them (as in conformance.describe).
      const ap::HelloInfo& h = *r.hello;
      std::string voice;
      if (h.minor != 0) voice += ",\"minor\":" + std::to_string(h.minor);
      if (h.audio != ap::AudioCodec::Off) {
        voice += std::string(",\"audio\":\"") + ap::audio_codec_name(h.audio) +
                 "\",\"audio_rate\":" + std::to_string(h.audio_rate);
      }
      return "{\"kind\":\"hello\",\"sid\":" + std::to_string(r.sid) + ",\"rig\":" + quote(h.rig) +
             ",\"morphs\":" + std::to_string(h.morph_names.size()) +
             ",\"channels\":" + std::to_string(h.channel_names.size()) + ",\"bits\":" + std::to_string(h.bits) +
             ",\"mode\":" + std::to_string(h.mode) + voice + "}";
    }
    case K::Audio:
      return "{\"kind\":\"audio\",\"sid\":" + std::to_string(r.sid) + ",\"seq\":" + std::to_string(r.seq) +
             ",\"t\":" + std::to_string(r.t) + ",\"codec\":\"" + ap::audio_codec_name(r.codec) +
             "\",\"rate\":" + std::to_string(r.rate) + ",\"payload\":\"" + hex(r.payload, r.payload_size) + "\"}";
    case K::Frame: {
      const ap::Stream* s = dec.stream(r.sid);
      return "{\"kind\":\"frame\",\"sid\":" + std::to_string(r.sid) + ",\"lod\":" + std::to_string(r.lod) +
             ",\"seq\":" + std::to_string(r.seq) + ",\"t\":" + std::to_string(r.t) +
             ",\"keyframe\":" + (r.keyframe ? "true" : "false") + ",\"count\":" + std::to_string(r.count) +
             ",\"morphs\":" + floats(s->morphs) + ",\"channels\":" + floats(s->channels) + "}";
    }
    case K::NeedKeyframe:
      return "{\"kind\":\"need_keyframe\",\"sid\":" + std::to_string(r.sid) + ",\"lod\":" + std::to_string(r.lod) + "}";
    case K::Stale:
      return "{\"kind\":\"stale\",\"sid\":" + std::to_string(r.sid) + ",\"lod\":" + std::to_string(r.lod) +
             ",\"seq\":" + std::to_string(r.seq) + "}";
    case K::UnknownStream:
      return "{\"kind\":\"unknown_stream\",\"sid\":" + std::to_string(r.sid) + "}";
    case K::Event: {
      std::string value;
      if (r.event == 0) value = quote(r.text);
      else if (r.event == 1) value = r.flag ? "true" : "false";
      else if (r.event == 3) value = std::to_string(r.seq);  // VOICE_CUT: the next audio seq
      else value = "[" + quote(r.text) + "," + num(r.number) + "]";
      return "{\"kind\":\"event\",\"sid\":" + std::to_string(r.sid) + ",\"t\":" + std::to_string(r.t) +
             ",\"event\":" + std::to_string(r.event) + ",\"value\":" + value + "}";
    }
    case K::Control:
      return "{\"kind\":\"control\",\"op\":" + std::to_string(r.op) + ",\"sid\":" + std::to_string(r.sid) +
             ",\"lod\":" + std::to_string(r.lod) + ",\"seq\":" + std::to_string(r.seq) +
             ",\"session\":" + quote(r.session) + ",\"mode\":" + std::to_string(r.mode) +
             ",\"bits\":" + std::to_string(r.bits) +
             (r.has_audio ? ",\"audio\":" + std::to_string(static_cast<int>(r.audio)) : std::string()) + "}";
    case K::Ping:
    case K::Pong:
      return std::string("{\"kind\":\"") + (r.kind == K::Ping ? "ping" : "pong") +
             "\",\"nonce\":" + std::to_string(r.nonce) + ",\"t\":" + std::to_string(r.t) + "}";
    case K::ErrorMessage:
      return "{\"kind\":\"error_message\",\"code\":" + std::to_string(r.code) + ",\"message\":" + quote(r.text) + "}";
    case K::PublishHello:
      return "{\"kind\":\"publish_hello\",\"pid\":" + std::to_string(r.pid) + ",\"morphs\":" + strings(r.names) +
             ",\"channels\":" + strings(r.channel_names) + ",\"fps\":" + std::to_string(r.fps) +
             ",\"source\":" + quote(r.source) + "}";
    case K::Capture: {
      std::string named = "{";
      for (std::size_t i = 0; i < r.named.size(); ++i) {
        named += (i ? "," : "") + quote(r.named[i].first) + ":" + num(r.named[i].second);
      }
      named += "}";
      return "{\"kind\":\"capture\",\"pid\":" + std::to_string(r.pid) + ",\"seq\":" + std::to_string(r.seq) +
             ",\"t\":" + std::to_string(r.t) + ",\"values\":" + (r.positional ? floats(r.values) : "null") +
             ",\"named\":" + named + "}";
    }
    case K::Error:
      return std::string("{\"kind\":\"error\",\"code\":\"") + ap::error_name(r.error) + "\"}";
    case K::Ignored:
    default:
      return "{\"kind\":\"ignored\",\"type\":" + std::to_string(r.type) + "}";
  }
}

std::uint32_t le32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s VECTOR.msgs\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot open %s\n", argv[1]);
    return 2;
  }
  const std::vector<std::uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ap::Decoder dec;
  std::size_t pos = 0;
  while (pos < file.size()) {
    if (file.size() - pos < 5) {
      std::fprintf(stderr, "truncated record at %zu\n", pos);
      return 1;
    }
    const std::uint8_t tag = file[pos];
    const std::uint32_t len = le32(&file[pos + 1]);
    pos += 5;
    if (file.size() - pos < len) {
      std::fprintf(stderr, "truncated payload at %zu\n", pos);
      return 1;
    }
    if (tag == 1 && len == 5) {
      dec.expect_lod(le32(&file[pos]), file[pos + 4]);
    } else if (tag == 2) {
      dec = ap::Decoder();  // start over: the next records are an independent case
    } else {
      // Copy into an exactly sized buffer so a decoder overread is visible to sanitizers.
      std::vector<std::uint8_t> msg(file.begin() + static_cast<std::ptrdiff_t>(pos),
                                    file.begin() + static_cast<std::ptrdiff_t>(pos + len));
      const ap::Result r = dec.feed(msg.data(), msg.size());
      std::printf("%s\n", describe(r, dec).c_str());
    }
    pos += len;
  }
  return 0;
}
