// Time the header-only decoder on a recorded stream (a .msgs vector-format file):
//   bench_decode FILE.msgs [REPEATS]  ->  prints "ns_per_message <value> messages <n>"
// Each repeat replays the whole stream into a fresh Decoder, as a client joining would.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

#include "avatar_engine/protocol.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE.msgs [REPEATS]\n", argv[0]);
    return 2;
  }
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 200;
  std::ifstream in(argv[1], std::ios::binary);
  const std::vector<std::uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::pair<std::size_t, std::size_t>> msgs;
  for (std::size_t pos = 0; pos + 5 <= file.size();) {
    const std::uint32_t len = file[pos + 1] | (file[pos + 2] << 8) | (file[pos + 3] << 16) |
                              (static_cast<std::uint32_t>(file[pos + 4]) << 24);
    if (file[pos] == 0) msgs.emplace_back(pos + 5, len);
    pos += 5 + len;
  }
  double best = 1e300;
  std::size_t frames = 0;
  for (int r = 0; r < repeats; ++r) {
    avatar_engine::protocol::Decoder dec;
    frames = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& [off, len] : msgs) {
      frames += dec.feed(file.data() + off, len).kind == avatar_engine::protocol::Kind::Frame;
    }
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  std::printf("ns_per_message %.1f messages %zu frames %zu\n", best / static_cast<double>(msgs.size()), msgs.size(), frames);
  return 0;
}
