#!/usr/bin/env bash
# Build and run the libFuzzer harness: native/fuzz/run.sh [RUNS] [SECONDS]
# Needs clang with libFuzzer (Debian: apt-get install -y clang). Defaults: 1,000,000 inputs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs="${1:-1000000}"
seconds="${2:-1800}"
work="${FUZZ_WORK:-$root/build/fuzz}"
mkdir -p "$work/corpus"
clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I "$root/native/include" "$here/fuzz_decoder.cpp" -o "$work/fuzz_decoder"
python3 "$here/make_corpus.py" "$root/tests/vectors" "$work/seeds"
"$work/fuzz_decoder" -runs="$runs" -max_total_time="$seconds" -max_len=4096 -timeout=5 \
  -rss_limit_mb=1024 -print_final_stats=1 "$work/corpus" "$work/seeds"
