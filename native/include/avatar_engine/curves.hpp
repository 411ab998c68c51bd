// Batched curve sampling: S sessions, each with its own keyframed timeline, sampled at once.
//
// Pure C++17, no Python. Semantics are defined by the numpy reference
// (avatar_engine/kernels/sampling.py); for row s sampled at time t[s]:
//
//   n == 0                   -> out = 0
//   t <  times[0]            -> out = values[0]
//   t >= times[n-1]          -> out = values[n-1]
//   else k = largest index with times[k] <= t,
//        w = float((t - times[k]) / (times[k+1] - times[k]))          (double division)
//        out[c] = values[k][c] + w * (values[k+1][c] - values[k][c])  (float)
//
// Buffer layout (row-major):
//
//   times : | s0: t0 .. t(K-1) | s1: ... |              double, S*K (first counts[s] used)
//   values: | s0: k0: c0..c(C-1) | k1: ... | s1: ... |  float,  S*K*C
//   counts: | n0 | n1 | ... |                           int32,  S (0 <= n <= K)
//   t     : | t0 | t1 | ... |                           double, S
//   out   : | s0: c0..c(C-1) | s1: ... |                float,  S*C
#pragma once

#include <cstddef>
#include <cstdint>

namespace avatar_engine {

namespace detail {

// out = a + w * (b - a) over one channel vector; restrict lets the compiler vectorise without
// run-time alias checks (out never overlaps the keyframe buffers).
inline void lerp_row(const float* __restrict a, const float* __restrict b, float w,
                     float* __restrict out, std::size_t channels) noexcept {
    for (std::size_t c = 0; c < channels; ++c) out[c] = a[c] + w * (b[c] - a[c]);
}

inline void copy_row(const float* __restrict a, float* __restrict out,
                     std::size_t channels) noexcept {
    for (std::size_t c = 0; c < channels; ++c) out[c] = a[c];
}

}  // namespace detail

inline void sample_curves(const double* times, const float* values, const std::int32_t* counts,
                          const double* t, std::size_t sessions, std::size_t capacity,
                          std::size_t channels, float* out) noexcept {
    for (std::size_t s = 0; s < sessions; ++s) {
        const std::size_t n = static_cast<std::size_t>(counts[s]);
        const double* ts = times + s * capacity;
        const float* vs = values + s * capacity * channels;
        float* o = out + s * channels;
        if (n == 0) {
            for (std::size_t c = 0; c < channels; ++c) o[c] = 0.0f;
            continue;
        }
        const double now = t[s];
        if (now < ts[0]) {
            detail::copy_row(vs, o, channels);
            continue;
        }
        if (now >= ts[n - 1]) {
            detail::copy_row(vs + (n - 1) * channels, o, channels);
            continue;
        }
        // Branchless search for the last key at or before `now` (ts[0] <= now < ts[n-1]):
        // the answer stays in [base, base + len); a conditional move instead of a branch,
        // because the comparison is unpredictable across sessions.
        const double* base = ts;
        std::size_t len = n;
        while (len > 1) {
            const std::size_t half = len / 2;
            base = (base[half] <= now) ? base + half : base;
            len -= half;
        }
        const std::size_t lo = static_cast<std::size_t>(base - ts);
        const float w = static_cast<float>((now - ts[lo]) / (ts[lo + 1] - ts[lo]));
        const float* a = vs + lo * channels;
        detail::lerp_row(a, a + channels, w, o, channels);
    }
}

}  // namespace avatar_engine
