// Batched retarget kernel: S sessions x N source weights -> S x M rig morphs.
//
// Pure C++17, no Python: an Unreal or Unity native plugin can include it as is.
// Semantics are defined by the numpy reference (avatar_engine/kernels/retarget.py):
//
//   acc[m]  = sum_k weights[k] * in[indices[k]]      k in [indptr[m], indptr[m+1])   (double)
//   y[m]    = clamp(acc[m] * gain[m] + offset[m], lower[m], upper[m])                (double)
//   out[m]  = float(y[m])
//   then, for each exclusive pair (d, s) in order:  out[s] *= clamp(1 - out[d], 0, 1)   (float)
//
// Buffer layout (row-major, one row per session):
//
//   in : | s0: w0 w1 ... w(N-1) | s1: ... |        float32, S*N
//   out: | s0: m0 m1 ... m(M-1) | s1: ... |        float32, S*M
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace avatar_engine {

struct RetargetTables {
    std::size_t n_inputs = 0;
    std::size_t n_outputs = 0;
    std::vector<std::int32_t> indptr;     // n_outputs + 1
    std::vector<std::int32_t> indices;    // nnz, each < n_inputs
    std::vector<float> weights;           // nnz
    std::vector<float> gain, offset;      // n_outputs
    std::vector<float> lower, upper;      // n_outputs
    std::vector<std::int32_t> exclusive;  // 2 * pairs: dominant, suppressed
};

// Index of the first non-finite value in in[0 .. count), or -1 when all are finite.
inline std::ptrdiff_t first_non_finite(const float* in, std::size_t count) noexcept {
    for (std::size_t i = 0; i < count; ++i) {
        if (!std::isfinite(in[i])) return static_cast<std::ptrdiff_t>(i);
    }
    return -1;
}

// Retargets `sessions` rows. Returns -1 on success; otherwise the flat index of the first
// non-finite input, in which case `out` is left untouched (all-or-nothing, like the reference).
inline std::ptrdiff_t retarget(const RetargetTables& t, const float* in, std::size_t sessions,
                               float* out) noexcept {
    const std::ptrdiff_t bad = first_non_finite(in, sessions * t.n_inputs);
    if (bad >= 0) return bad;
    // Local restrict pointers: `out` is float like the tables, so without them the compiler
    // must assume every store may change a table entry and reload it.
    const std::int32_t* __restrict indptr = t.indptr.data();
    const std::int32_t* __restrict indices = t.indices.data();
    const float* __restrict weights = t.weights.data();
    const float* __restrict gain = t.gain.data();
    const float* __restrict offset = t.offset.data();
    const float* __restrict lower = t.lower.data();
    const float* __restrict upper = t.upper.data();
    const std::int32_t* __restrict pairs = t.exclusive.data();
    const std::size_t n_pairs = t.exclusive.size() / 2;
    const std::size_t n_in = t.n_inputs;
    const std::size_t n_out = t.n_outputs;
    for (std::size_t s = 0; s < sessions; ++s) {
        const float* __restrict row_in = in + s * n_in;
        float* __restrict row_out = out + s * n_out;
        for (std::size_t m = 0; m < n_out; ++m) {
            double acc = 0.0;
            const std::int32_t end = indptr[m + 1];
            for (std::int32_t k = indptr[m]; k < end; ++k) {
                acc += static_cast<double>(weights[k]) * static_cast<double>(row_in[indices[k]]);
            }
            double y = acc * static_cast<double>(gain[m]) + static_cast<double>(offset[m]);
            const double lo = lower[m];
            const double hi = upper[m];
            y = y < lo ? lo : (y > hi ? hi : y);
            row_out[m] = static_cast<float>(y);
        }
        for (std::size_t p = 0; p < n_pairs; ++p) {
            float keep = 1.0f - row_out[pairs[2 * p]];
            keep = keep < 0.0f ? 0.0f : (keep > 1.0f ? 1.0f : keep);
            row_out[pairs[2 * p + 1]] *= keep;
        }
    }
    return -1;
}

}  // namespace avatar_engine
