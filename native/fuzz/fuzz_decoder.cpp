// libFuzzer harness for the header-only protocol decoder (native/include/avatar_engine).
//
// An input is a sequence of messages, each prefixed by a u16 little-endian length, fed to one
// Decoder in order, so the fuzzer explores stream state (hello -> keyframe -> deltas) as well
// as the parser. Seeds come from tests/vectors (see make_corpus.py). Any crash, sanitizer
// report, hang or broken invariant below is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "avatar_engine/protocol.hpp"

namespace ap = avatar_engine::protocol;

static void check(bool ok) {
  if (!ok) std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ap::Decoder dec(8);
  std::size_t pos = 0;
  while (pos + 2 <= size) {
    std::size_t len = static_cast<std::size_t>(data[pos]) | (static_cast<std::size_t>(data[pos + 1]) << 8);
    pos += 2;
    if (len > size - pos) len = size - pos;
    const ap::Result r = dec.feed(data + pos, len);
    pos += len;
    if (r.kind == ap::Kind::Frame) {
      const ap::Stream* s = dec.stream(r.sid);
      check(s != nullptr);
      check(s->morphs.size() == s->hello.morph_names.size());
      check(s->channels.size() == s->hello.channel_names.size());
      check(r.lod < ap::kLodLevels && r.count <= s->hello.lods[r.lod].size());
    }
    if (r.kind == ap::Kind::Error) check(r.error != ap::ErrorCode::None);
  }
  return 0;
}
