// Print, as hex lines, the viewer -> server messages the C++ header encodes; the test suite
// checks them against the same messages in tests/vectors/messages.json (Python encoder).
#include <cstdint>
#include <cstdio>
#include <vector>

#include "avatar_engine/protocol.hpp"

namespace ap = avatar_engine::protocol;

static void print(const std::vector<std::uint8_t>& bytes) {
  for (const std::uint8_t b : bytes) std::printf("%02x", b);
  std::printf("\n");
}

int main() {
  print(ap::encode_subscribe("alice", 1, 1, 16));
  print(ap::encode_control(ap::Op::Unsubscribe, 7));
  print(ap::encode_control(ap::Op::SetLod, 7, 2));
  print(ap::encode_control(ap::Op::RequestKeyframe, 7, 2));
  print(ap::encode_control(ap::Op::Ack, 7, 2, 65535));
  print(ap::encode_ping(123456789, 1000));
  print(ap::encode_ping(123456789, 1003, true));
  return 0;
}
