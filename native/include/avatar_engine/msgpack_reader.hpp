// A small, strict msgpack reader for the avatar-engine protocol decoder (header-only, C++17,
// standard library only, no exceptions).
//
// It parses one message into a tree of Values that point into the caller's buffer (strings,
// bins and exts are views: keep the buffer alive while using the tree). Bad input is reported,
// never trusted:
//   - a length or count that claims more bytes than remain, a truncated value, the byte 0xc1,
//     invalid UTF-8 in a str, a map key that is an array or map, or trailing bytes -> Malformed;
//   - nesting deeper than kMaxDepth -> Limit.
// A count is checked against the remaining bytes before anything is allocated, so memory and
// time are bounded by the message size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace avatar_engine::msgpack {

inline constexpr int kMaxDepth = 8;

enum class Type : std::uint8_t { Nil, Bool, Int, Float, Str, Bin, Array, Map, Ext };

struct Value {
  Type type = Type::Nil;
  bool boolean = false;
  // Int: `negative` says whether the value is < 0; `u` holds it when non-negative, `i` always
  // holds it when it fits an int64.
  bool negative = false;
  std::uint64_t u = 0;
  std::int64_t i = 0;
  double f = 0.0;
  const std::uint8_t* data = nullptr;  // Str, Bin, Ext payload (a view)
  std::size_t size = 0;
  std::int8_t ext_code = 0;
  std::vector<Value> items;  // Array items; Map: key, value, key, value...

  bool is_uint() const { return type == Type::Int && !negative; }
  bool is_number() const { return type == Type::Int || type == Type::Float; }
  double number() const {
    if (type == Type::Float) return f;
    return negative ? static_cast<double>(i) : static_cast<double>(u);
  }
  std::string_view str() const {
    return {reinterpret_cast<const char*>(data), size};
  }
  std::size_t map_size() const { return items.size() / 2; }
  // Map lookup by string key; the last duplicate wins (as in Python and JS decoders).
  const Value* get(std::string_view key) const {
    const Value* found = nullptr;
    for (std::size_t k = 0; k + 1 < items.size(); k += 2) {
      if (items[k].type == Type::Str && items[k].str() == key) found = &items[k + 1];
    }
    return found;
  }
};

enum class ReadError { None, Malformed, Limit };

// True when [p, p+n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
inline bool valid_utf8(const std::uint8_t* p, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    std::uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}

  // Parse the single object that must fill the buffer exactly.
  ReadError parse(Value& out, std::string& detail) {
    pos_ = 0;
    ReadError e = value(out, 0, detail);
    if (e != ReadError::None) return e;
    if (pos_ != n_) {
      detail = std::to_string(n_ - pos_) + " trailing bytes";
      return ReadError::Malformed;
    }
    return ReadError::None;
  }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;

  ReadError truncated(std::size_t need, std::string& detail) const {
    detail = "truncated: " + std::to_string(need) + " bytes needed at offset " + std::to_string(pos_);
    return ReadError::Malformed;
  }
  bool have(std::size_t k) const { return k <= n_ - pos_; }

  ReadError be_uint(std::size_t width, std::uint64_t& v, std::string& detail) {
    if (!have(width)) return truncated(width, detail);
    v = 0;
    for (std::size_t k = 0; k < width; ++k) v = (v << 8) | p_[pos_ + k];
    pos_ += width;
    return ReadError::None;
  }

  ReadError count(std::uint64_t c, std::uint64_t min_item_bytes, std::string& detail) const {
    if (c > (n_ - pos_) / min_item_bytes) {
      detail = "a count of " + std::to_string(c) + " at offset " + std::to_string(pos_) +
               " exceeds the remaining bytes";
      return ReadError::Malformed;
    }
    return ReadError::None;
  }

  ReadError bytes(Value& out, Type t, std::uint64_t len, std::string& detail) {
    ReadError e = count(len, 1, detail);
    if (e != ReadError::None) return e;
    out.type = t;
    out.data = p_ + pos_;
    out.size = static_cast<std::size_t>(len);
    pos_ += out.size;
    if (t == Type::Str && !valid_utf8(out.data, out.size)) {
      detail = "a str is not valid UTF-8";
      return ReadError::Malformed;
    }
    return ReadError::None;
  }

  ReadError ext(Value& out, std::uint64_t len, std::string& detail) {
    if (!have(1)) return truncated(1, detail);
    out.ext_code = static_cast<std::int8_t>(p_[pos_]);
    ++pos_;
    return bytes(out, Type::Ext, len, detail);
  }

  ReadError seq(Value& out, Type t, std::uint64_t c, int depth, std::string& detail) {
    std::uint64_t per = t == Type::Map ? 2 : 1;
    ReadError e = count(c, per, detail);
    if (e != ReadError::None) return e;
    out.type = t;
    // Grow as items are actually parsed: a count only claims bytes, so reserving it up front
    // would let a 64 KiB message of nested arrays allocate megabytes before failing.
    const std::size_t total = static_cast<std::size_t>(c * per);
    out.items.reserve(total < 16 ? total : 16);
    for (std::size_t k = 0; k < total; ++k) {
      out.items.emplace_back();
      e = value(out.items.back(), depth + 1, detail);
      if (e != ReadError::None) return e;
      if (t == Type::Map && k % 2 == 0 &&
          (out.items[k].type == Type::Array || out.items[k].type == Type::Map)) {
        detail = "a map key must not be an array or a map";
        return ReadError::Malformed;
      }
    }
    return ReadError::None;
  }

  void set_int(Value& out, std::int64_t v) {
    out.type = Type::Int;
    out.i = v;
    out.negative = v < 0;
    out.u = v < 0 ? 0 : static_cast<std::uint64_t>(v);
  }

  ReadError value(Value& out, int depth, std::string& detail) {
    if (depth > kMaxDepth) {
      detail = "nesting deeper than " + std::to_string(kMaxDepth);
      return ReadError::Limit;
    }
    if (!have(1)) return truncated(1, detail);
    std::uint8_t b = p_[pos_++];
    std::uint64_t v = 0;
    ReadError e;
    if (b <= 0x7F) {
      set_int(out, b);
      return ReadError::None;
    }
    if (b >= 0xE0) {
      set_int(out, static_cast<std::int64_t>(b) - 0x100);
      return ReadError::None;
    }
    if (b <= 0x8F) return seq(out, Type::Map, b & 0x0F, depth, detail);
    if (b <= 0x9F) return seq(out, Type::Array, b & 0x0F, depth, detail);
    if (b <= 0xBF) return bytes(out, Type::Str, b & 0x1F, detail);
    switch (b) {
      case 0xC0:
        out.type = Type::Nil;
        return ReadError::None;
      case 0xC2:
      case 0xC3:
        out.type = Type::Bool;
        out.boolean = b == 0xC3;
        return ReadError::None;
      case 0xC4:
      case 0xC5:
      case 0xC6:
        if ((e = be_uint(std::size_t{1} << (b - 0xC4), v, detail)) != ReadError::None) return e;
        return bytes(out, Type::Bin, v, detail);
      case 0xC7:
      case 0xC8:
      case 0xC9:
        if ((e = be_uint(std::size_t{1} << (b - 0xC7), v, detail)) != ReadError::None) return e;
        return ext(out, v, detail);
      case 0xCA: {
        if ((e = be_uint(4, v, detail)) != ReadError::None) return e;
        std::uint32_t bits = static_cast<std::uint32_t>(v);
        float f;
        std::memcpy(&f, &bits, 4);
        out.type = Type::Float;
        out.f = f;
        return ReadError::None;
      }
      case 0xCB: {
        if ((e = be_uint(8, v, detail)) != ReadError::None) return e;
        double d;
        std::memcpy(&d, &v, 8);
        out.type = Type::Float;
        out.f = d;
        return ReadError::None;
      }
      case 0xCC:
      case 0xCD:
      case 0xCE:
      case 0xCF:
        if ((e = be_uint(std::size_t{1} << (b - 0xCC), v, detail)) != ReadError::None) return e;
        out.type = Type::Int;
        out.negative = false;
        out.u = v;
        out.i = static_cast<std::int64_t>(v);
        return ReadError::None;
      case 0xD0:
      case 0xD1:
      case 0xD2:
      case 0xD3: {
        std::size_t width = std::size_t{1} << (b - 0xD0);
        if ((e = be_uint(width, v, detail)) != ReadError::None) return e;
        if (width < 8) {  // sign-extend
          std::uint64_t sign = std::uint64_t{1} << (8 * width - 1);
          if (v & sign) v |= ~((sign << 1) - 1);
        }
        std::int64_t sv;
        std::memcpy(&sv, &v, 8);
        set_int(out, sv);
        return ReadError::None;
      }
      case 0xD4:
      case 0xD5:
      case 0xD6:
      case 0xD7:
      case 0xD8:
        return ext(out, std::uint64_t{1} << (b - 0xD4), detail);
      case 0xD9:
      case 0xDA:
      case 0xDB:
        if ((e = be_uint(std::size_t{1} << (b - 0xD9), v, detail)) != ReadError::None) return e;
        return bytes(out, Type::Str, v, detail);
      case 0xDC:
      case 0xDD:
        if ((e = be_uint(b == 0xDC ? 2 : 4, v, detail)) != ReadError::None) return e;
        return seq(out, Type::Array, v, depth, detail);
      case 0xDE:
      case 0xDF:
        if ((e = be_uint(b == 0xDE ? 2 : 4, v, detail)) != ReadError::None) return e;
        return seq(out, Type::Map, v, depth, detail);
      default:
        detail = "byte 0xc1 is not msgpack";
        return ReadError::Malformed;
    }
  }
};

}  // namespace avatar_engine::msgpack
