// Subscribe to a live avatar-engine session over WebSocket and print each decoded frame: a
// minimal RFC 6455 client over POSIX sockets plus the header-only decoder
// (avatar_engine/protocol.hpp). It is the shape a native plugin (Unreal, a Unity native
// plugin, a tool) takes: connect, read binary messages, feed them to the Decoder, answer
// need_keyframe with REQUEST_KEYFRAME and PING with PONG.
//
//   g++ -std=c++17 -O2 -fno-exceptions -fno-rtti -I native/include
//       native/examples/subscribe_ws.cpp -o subscribe_ws
//   ./subscribe_ws ws://127.0.0.1:8766/sessions/demo/stream [--count N] [--lod L] [--values]
//
// Output, one JSON line per message: {"hello": ...} naming the rig and counts, then one
// {"frame": ...} per applied frame with its three strongest morphs by name (--values: every
// morph and channel, in rig order), {"event": ...} and {"audio": ...} lines, and {"closed": code}
// at the end. --lod L sends SET_LOD after the first 10 frames. Exit code 0 after N frames,
// 1 on a connection or handshake failure, 2 on a bad command line.
//
// Scope: ws:// only (no TLS: put a TLS terminator in front, or use your engine's WebSocket
// client, e.g. Unreal's WebSockets module); one connection, blocking reads; messages over
// 64 KiB close the connection (1009) as the protocol allows no larger.
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "avatar_engine/protocol.hpp"

namespace ap = avatar_engine::protocol;

namespace {

// ---------------------------------------------------------------- SHA-1 and base64 (handshake)

std::array<std::uint8_t, 20> sha1(const std::string& text) {
  std::uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  std::vector<std::uint8_t> m(text.begin(), text.end());
  const std::uint64_t bits = static_cast<std::uint64_t>(m.size()) * 8;
  m.push_back(0x80);
  while (m.size() % 64 != 56) m.push_back(0);
  for (int i = 7; i >= 0; --i) m.push_back(static_cast<std::uint8_t>(bits >> (8 * i)));
  auto rol = [](std::uint32_t v, int s) { return (v << s) | (v >> (32 - s)); };
  for (std::size_t off = 0; off < m.size(); off += 64) {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      const std::uint8_t* p = &m[off + 4 * static_cast<std::size_t>(i)];
      w[i] = (static_cast<std::uint32_t>(p[0]) << 24) | (static_cast<std::uint32_t>(p[1]) << 16) |
             (static_cast<std::uint32_t>(p[2]) << 8) | p[3];
    }
    for (int i = 16; i < 80; ++i) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999u; }
      else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1u; }
      else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDCu; }
      else { f = b ^ c ^ d; k = 0xCA62C1D6u; }
      const std::uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d; d = c; c = rol(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
  }
  std::array<std::uint8_t, 20> out{};
  for (std::size_t i = 0; i < 20; ++i) out[i] = static_cast<std::uint8_t>(h[i / 4] >> (24 - 8 * (i % 4)));
  return out;
}

std::string base64(const std::uint8_t* p, std::size_t n) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < n; i += 3) {
    const std::uint32_t v = (static_cast<std::uint32_t>(p[i]) << 16) |
                            (i + 1 < n ? static_cast<std::uint32_t>(p[i + 1]) << 8 : 0u) |
                            (i + 2 < n ? static_cast<std::uint32_t>(p[i + 2]) : 0u);
    out += abc[(v >> 18) & 63];
    out += abc[(v >> 12) & 63];
    out += i + 1 < n ? abc[(v >> 6) & 63] : '=';
    out += i + 2 < n ? abc[v & 63] : '=';
  }
  return out;
}

// ---------------------------------------------------------------- the socket

struct Url {
  std::string host, port = "80", path = "/";
};

bool parse_url(const std::string& url, Url& out) {
  const std::string scheme = "ws://";
  if (url.compare(0, scheme.size(), scheme) != 0) return false;
  const std::string rest = url.substr(scheme.size());
  const std::size_t slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  out.path = slash == std::string::npos ? "/" : rest.substr(slash);
  const std::size_t colon = authority.rfind(':');
  out.host = authority.substr(0, colon);
  if (colon != std::string::npos) out.port = authority.substr(colon + 1);
  return !out.host.empty();
}

class WebSocket {
 public:
  ~WebSocket() {
    if (fd_ >= 0) ::close(fd_);
  }

  // TCP connect and the opening handshake (RFC 6455 4.1): false with a reason on failure.
  bool open(const Url& url, std::string& why) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &found) != 0 || found == nullptr) {
      why = "cannot resolve " + url.host;
      return false;
    }
    for (addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) {
      fd_ = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd_ >= 0 && ::connect(fd_, a->ai_addr, a->ai_addrlen) != 0) {
        ::close(fd_);
        fd_ = -1;
      }
    }
    freeaddrinfo(found);
    if (fd_ < 0) {
      why = "cannot connect to " + url.host + ":" + url.port;
      return false;
    }
    timeval tv{10, 0};  // a silent server for 10 s ends the example
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::uint8_t nonce[16];
    for (auto& b : nonce) b = static_cast<std::uint8_t>(rng_());
    const std::string key = base64(nonce, sizeof nonce);
    const std::string request = "GET " + url.path + " HTTP/1.1\r\nHost: " + url.host + ":" + url.port +
                                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                                "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (!write_all(reinterpret_cast<const std::uint8_t*>(request.data()), request.size())) {
      why = "cannot send the handshake";
      return false;
    }
    std::string head;
    while (head.size() < 8192 && head.find("\r\n\r\n") == std::string::npos) {
      std::uint8_t c;
      if (!read_all(&c, 1)) {
        why = "the server closed during the handshake";
        return false;
      }
      head += static_cast<char>(c);
    }
    if (head.compare(0, 12, "HTTP/1.1 101") != 0) {
      why = "handshake refused: " + head.substr(0, head.find("\r\n"));
      return false;
    }
    const auto digest = sha1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    const std::string accept = base64(digest.data(), digest.size());
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
    const std::size_t at = lower.find("sec-websocket-accept:");
    if (at == std::string::npos || head.find(accept, at) == std::string::npos) {
      why = "the server's Sec-WebSocket-Accept does not match";
      return false;
    }
    return true;
  }

  // One client frame (always masked, RFC 6455 5.3).
  bool send(std::uint8_t opcode, const std::uint8_t* data, std::size_t n) {
    std::vector<std::uint8_t> f{static_cast<std::uint8_t>(0x80 | opcode)};
    if (n < 126) {
      f.push_back(static_cast<std::uint8_t>(0x80 | n));
    } else if (n < 65536) {
      f.push_back(0x80 | 126);
      f.push_back(static_cast<std::uint8_t>(n >> 8));
      f.push_back(static_cast<std::uint8_t>(n));
    } else {
      f.push_back(0x80 | 127);
      for (int i = 7; i >= 0; --i) f.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(n) >> (8 * i)));
    }
    std::uint8_t mask[4];
    for (auto& b : mask) b = static_cast<std::uint8_t>(rng_());
    f.insert(f.end(), mask, mask + 4);
    for (std::size_t i = 0; i < n; ++i) f.push_back(static_cast<std::uint8_t>(data[i] ^ mask[i % 4]));
    return write_all(f.data(), f.size());
  }

  bool send_binary(const std::vector<std::uint8_t>& m) { return send(0x2, m.data(), m.size()); }

  void close(std::uint16_t code) {
    const std::uint8_t body[2] = {static_cast<std::uint8_t>(code >> 8), static_cast<std::uint8_t>(code)};
    send(0x8, body, 2);
  }

  // The next binary message into `out`. Answers pings, skips text, reassembles fragments.
  // Returns false when the connection ended (close_code set when the server sent a close).
  bool next_binary(std::vector<std::uint8_t>& out, int& close_code) {
    out.clear();
    bool binary = false;
    for (;;) {
      std::uint8_t h[2];
      if (!read_all(h, 2)) return false;
      const bool fin = (h[0] & 0x80) != 0;
      const std::uint8_t opcode = h[0] & 0x0F;
      std::uint64_t len = h[1] & 0x7F;
      if (h[1] & 0x80) return fail(1002, close_code);  // servers never mask
      if (len == 126 || len == 127) {
        std::uint8_t ext[8];
        const std::size_t k = len == 126 ? 2 : 8;
        if (!read_all(ext, k)) return false;
        len = 0;
        for (std::size_t i = 0; i < k; ++i) len = (len << 8) | ext[i];
      }
      if (len > ap::kMaxMessageBytes || out.size() + len > ap::kMaxMessageBytes) return fail(1009, close_code);
      std::vector<std::uint8_t> payload(static_cast<std::size_t>(len));
      if (len && !read_all(payload.data(), payload.size())) return false;
      if (opcode == 0x8) {  // close: echo it, report its code
        close_code = payload.size() >= 2 ? (payload[0] << 8) | payload[1] : 1005;
        send(0x8, payload.data(), std::min<std::size_t>(payload.size(), 2));
        return false;
      }
      if (opcode == 0x9) {
        send(0xA, payload.data(), payload.size());
        continue;
      }
      if (opcode == 0xA) continue;
      if (opcode == 0x1 || opcode == 0x2) binary = opcode == 0x2;
      out.insert(out.end(), payload.begin(), payload.end());
      if (!fin) continue;
      if (binary) return true;
      out.clear();  // text: not part of the protocol
    }
  }

 private:
  int fd_ = -1;
  std::mt19937 rng_{std::random_device{}()};

  bool fail(std::uint16_t code, int& close_code) {
    close(code);
    close_code = code;
    return false;
  }

  bool write_all(const std::uint8_t* p, std::size_t n) {
    while (n > 0) {
      const ssize_t k = ::send(fd_, p, n, MSG_NOSIGNAL);
      if (k <= 0) return false;
      p += k;
      n -= static_cast<std::size_t>(k);
    }
    return true;
  }

  bool read_all(std::uint8_t* p, std::size_t n) {
    while (n > 0) {
      const ssize_t k = ::recv(fd_, p, n, 0);
      if (k <= 0) return false;
      p += k;
      n -= static_cast<std::size_t>(k);
    }
    return true;
  }
};

// ---------------------------------------------------------------- printing

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) >= 0x20) out += ch;
  }
  return out + "\"";
}

std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string floats(const std::vector<float>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + num(v[i]);
  return out + "]";
}

std::string strongest(const ap::Stream& s, std::size_t k) {
  std::vector<std::size_t> order(s.morphs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  k = std::min(k, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](std::size_t a, std::size_t b) { return s.morphs[a] > s.morphs[b]; });
  std::string out = "{";
  for (std::size_t j = 0; j < k; ++j) {
    out += (j ? "," : "") + quote(s.hello.morph_names[order[j]]) + ":" + num(s.morphs[order[j]]);
  }
  return out + "}";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ws://HOST:PORT/sessions/ID/stream [--count N] [--lod L] [--values]\n", argv[0]);
    return 2;
  }
  long count = 60;
  int want_lod = -1;
  bool values = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--count" && i + 1 < argc) count = std::strtol(argv[++i], nullptr, 10);
    else if (a == "--lod" && i + 1 < argc) want_lod = static_cast<int>(std::strtol(argv[++i], nullptr, 10));
    else if (a == "--values") values = true;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  Url url;
  if (!parse_url(argv[1], url) || count < 1 || want_lod > 3) {
    std::fprintf(stderr, "expected ws://HOST:PORT/PATH, --count >= 1, --lod 0..3\n");
    return 2;
  }
  WebSocket ws;
  std::string why;
  if (!ws.open(url, why)) {
    std::fprintf(stderr, "%s\n", why.c_str());
    return 1;
  }
  ap::Decoder dec;
  std::vector<std::uint8_t> msg;
  long frames = 0;
  int close_code = 0;
  while (frames < count && ws.next_binary(msg, close_code)) {
    const ap::Result r = dec.feed(msg.data(), msg.size());
    switch (r.kind) {
      case ap::Kind::Hello:
        std::printf("{\"hello\":{\"sid\":%u,\"rig\":%s,\"morphs\":%zu,\"channels\":%zu,\"bits\":%u,\"audio\":\"%s\"}}\n", r.sid,
                    quote(r.hello->rig).c_str(), r.hello->morph_names.size(), r.hello->channel_names.size(), r.hello->bits,
                    r.hello->audio == ap::AudioCodec::Off ? "" : ap::audio_codec_name(r.hello->audio));
        break;
      case ap::Kind::Frame: {
        const ap::Stream* s = dec.stream(r.sid);
        std::printf("{\"frame\":{\"lod\":%u,\"seq\":%u,\"t\":%llu,\"keyframe\":%s,\"count\":%u,%s}}\n", r.lod, r.seq,
                    static_cast<unsigned long long>(r.t), r.keyframe ? "true" : "false", r.count,
                    values ? ("\"morphs\":" + floats(s->morphs) + ",\"channels\":" + floats(s->channels)).c_str()
                           : ("\"strongest\":" + strongest(*s, 3)).c_str());
        if (++frames == 10 && want_lod >= 0) {
          dec.expect_lod(r.sid, want_lod);
          ws.send_binary(ap::encode_control(ap::Op::SetLod, r.sid, static_cast<std::uint32_t>(want_lod)));
        }
        break;
      }
      case ap::Kind::NeedKeyframe:
        ws.send_binary(ap::encode_control(ap::Op::RequestKeyframe, r.sid, r.lod));
        std::printf("{\"need_keyframe\":{\"lod\":%u}}\n", r.lod);
        break;
      case ap::Kind::Ping:
        ws.send_binary(ap::encode_ping(r.nonce, 0, true));
        break;
      case ap::Kind::Event:
        std::printf("{\"event\":{\"kind\":%u,\"t\":%llu,\"text\":%s}}\n", r.event, static_cast<unsigned long long>(r.t),
                    quote(r.text).c_str());
        break;
      case ap::Kind::Audio:
        std::printf("{\"audio\":{\"seq\":%u,\"t\":%llu,\"codec\":\"%s\",\"bytes\":%zu}}\n", r.seq,
                    static_cast<unsigned long long>(r.t), ap::audio_codec_name(r.codec), r.payload_size);
        break;
      case ap::Kind::Error:
        std::printf("{\"error\":{\"code\":\"%s\",\"detail\":%s}}\n", ap::error_name(r.error), quote(r.detail).c_str());
        break;
      default:
        break;
    }
    std::fflush(stdout);
  }
  if (frames >= count) {
    ws.close(1000);
    close_code = 1000;
  }
  std::printf("{\"closed\":%d,\"frames\":%ld}\n", close_code, frames);
  return frames >= count ? 0 : 1;
}
