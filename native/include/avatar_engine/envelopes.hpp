// The animate step's per-session gates (speaking, capture presence, thinking envelopes) and
// the effective (n, L, R) compositor weights, for S sessions in one pass.
//
// Pure C++17, no Python. Semantics are defined by the numpy reference
// (avatar_engine/kernels/envelopes.py, module docstring); the parity tests hold every backend
// to it. Times and the capture interval are double; envelopes and weights are float, each
// operation rounded as numpy rounds it (the dt quotients are computed in double and then
// rounded to float, as numpy casts a Python float to a float32 array's dtype).
//
// Buffer layout: one row per session; (n) = S values, (n, k) = S*k values row-major.
#pragma once

#include <cstddef>
#include <cstdint>

namespace avatar_engine {

struct EnvelopeConsts {
    double speak_attack, speak_release, capture_timeout;
    double capture_fade_in, capture_fade_out, thinking_fade;
    std::size_t n_layers, n_regions, capture_layer, speech_layer;
};

struct EnvelopeBuffers {
    const float* speaking;                           // (n)
    float* speak_env;                                // (n) in/out
    const bool* capture_new;                         // (n)
    double* last_capture;                            // (n) in/out
    float* capture_env;                              // (n) in/out
    float* capture_dt;                               // (n) out
    std::uint8_t *filter_primed_m, *filter_primed_c;  // (n) in/out (restart -> 0)
    const float* thinking_on;                        // (n)
    float* thinking_env;                             // (n) in/out
    float* thinking;                                 // (n) out
    const float* weight;                             // (n, L)
    const float *mask, *duck_speech, *duck_capture;  // (n, L, R)
    float* weights;                                  // (n, L, R) out
};

namespace detail {
// np.minimum / np.maximum: NaN if either operand is NaN.
template <typename T>
inline T np_min(T a, T b) noexcept {
    return (a <= b || a != a) ? a : b;
}
template <typename T>
inline T np_max(T a, T b) noexcept {
    return (a >= b || a != a) ? a : b;
}
inline float ramp(float env, float target, float up, float down) noexcept {
    return target > env ? np_min(env + up, target) : np_max(env - down, target);
}
inline float smooth(float x) noexcept { return x * x * (3.0f - 2.0f * x); }
}  // namespace detail

inline void envelopes_step(const EnvelopeConsts& c, double t, double dt, const EnvelopeBuffers& b,
                           std::size_t n) noexcept {
    using detail::np_max;
    using detail::np_min;
    using detail::ramp;
    using detail::smooth;
    const float speak_up = static_cast<float>(dt / c.speak_attack);
    const float speak_down = static_cast<float>(dt / c.speak_release);
    const float cap_up = static_cast<float>(dt / c.capture_fade_in);
    const float cap_down = static_cast<float>(dt / c.capture_fade_out);
    const float fade = static_cast<float>(dt / c.thinking_fade);
    const std::size_t nl = c.n_layers, nr = c.n_regions;
    for (std::size_t s = 0; s < n; ++s) {
        // 1. speaking
        const float sp = ramp(b.speak_env[s], np_min(np_max(b.speaking[s], 0.0f), 1.0f),
                              speak_up, speak_down);
        b.speak_env[s] = sp;
        // 2. capture presence
        const double gap = t - b.last_capture[s];
        const bool absent = gap > c.capture_timeout;
        if (b.capture_new[s]) {
            b.capture_dt[s] = static_cast<float>(
                absent ? 1.0 / 60.0 : np_min(np_max(gap, 1.0 / 240.0), 0.25));
            if (absent && b.capture_env[s] == 0.0f) {  // a new run starts from its first sample
                b.filter_primed_m[s] = 0;
                b.filter_primed_c[s] = 0;
            }
            b.last_capture[s] = t;
        } else {
            b.capture_dt[s] = 0.0f;
        }
        const float present = (t - b.last_capture[s]) <= c.capture_timeout ? 1.0f : 0.0f;
        const float ce = ramp(b.capture_env[s], present, cap_up, cap_down);
        b.capture_env[s] = ce;
        // 3. thinking
        const float te = ramp(b.thinking_env[s], b.thinking_on[s], fade, fade);
        b.thinking_env[s] = te;
        const float th = smooth(te);
        b.thinking[s] = th;
        // 4. effective weights (float, grouped as the reference)
        const float cg = smooth(ce);
        const float speech_gate = sp * (1.0f - th);
        for (std::size_t l = 0; l < nl; ++l) {
            float g = b.weight[s * nl + l];
            if (l == c.capture_layer) g = g * cg;
            if (l == c.speech_layer) g = g * speech_gate;
            const std::size_t at = (s * nl + l) * nr;
            for (std::size_t r = 0; r < nr; ++r) {
                const float w = b.mask[at + r] * g;
                const float ws = w * (1.0f - b.duck_speech[at + r] * sp);
                b.weights[at + r] = ws * (1.0f - b.duck_capture[at + r] * cg);
            }
        }
    }
}

}  // namespace avatar_engine
