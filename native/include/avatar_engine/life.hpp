// Procedural-life tick: lids, breath, gaze and head springs and outputs for S sessions.
//
// Pure C++17, no Python. Semantics are defined by the numpy reference
// (avatar_engine/kernels/life.py, module docstring); the parity tests hold every backend to
// it. Random events (blinks falling due, fixations, stress beats, breath lengths) are drawn by
// the event kernel (avatar_engine/kernels/life_events.py; natively LifeEventsPlan in
// native/src/register_life.cpp) for the few rows they concern; this is the continuous
// per-tick math.
//
// Buffer layout: one row per session; (n) = S values, (n, k) = S*k values row-major.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace avatar_engine {

struct LifeConsts {
    double blink_amplitude, inhale_fraction, breath_speaking_scale, breath_head_pitch;
    double amp[3];
    double speaking_gain, follow, brow_decay, eye_morph_range;
};

struct LifeBuffers {
    const double *blink_t0, *blink_close, *blink_open;  // (n)
    float* blink_value;                                 // (n) out
    double* breath_phase;                               // (n) in/out
    const double* breath_cycle;                         // (n)
    float* breath;                                      // (n) out
    std::uint8_t* wrapped;                              // (n) out
    const float *speaking, *thinking;                   // (n)
    const float *look, *fixation, *micro, *avert;       // (n, 2)
    float *gaze_goal, *gaze, *gaze_vel;                 // (n, 2) out, in/out, in/out
    const float* gaze_omega;                            // (n)
    const double *head_freq, *head_phase;               // (n, 6)
    float *head_goal, *head, *head_vel;                 // (n, 3) out, in/out, in/out
    const float* head_omega;                            // (n)
    float* brow;                                        // (n) in/out
    float* channels;                                    // (n, 9) out
    float* features;                                    // (n, 7) out
};

namespace detail {
constexpr double kPi = 3.14159265358979323846264338327950288;

// One critically damped spring step of `k` components (same arithmetic as spring_step).
inline void spring_row(float* pos, float* vel, const float* goal, std::size_t k, double w,
                       double dt) noexcept {
    const double e = std::exp(-w * dt);
    for (std::size_t c = 0; c < k; ++c) {
        const double tgt = goal[c];
        const double y = static_cast<double>(pos[c]) - tgt;
        const double j = (static_cast<double>(vel[c]) + w * y) * dt;
        pos[c] = static_cast<float>(tgt + (y + j) * e);
        vel[c] = static_cast<float>((static_cast<double>(vel[c]) - w * j) * e);
    }
}
}  // namespace detail

inline void life_step(const LifeConsts& p, double t, double dt, const LifeBuffers& b,
                      std::size_t n) noexcept {
    using detail::kPi;
    const double fi = p.inhale_fraction;
    const double decay = std::exp(-dt / p.brow_decay);
    const float k = static_cast<float>(1.0 / p.eye_morph_range);
    for (std::size_t s = 0; s < n; ++s) {
        // lid
        const double el = t - b.blink_t0[s];
        const double cl = b.blink_close[s];
        const double op = b.blink_open[s];
        double v = 0.0;
        if (el >= 0.0 && el < cl + op) {
            v = el < cl ? 0.5 - 0.5 * std::cos(kPi * (el / cl))
                        : 0.5 + 0.5 * std::cos(kPi * ((el - cl) / op));
            v = v * p.blink_amplitude;
        }
        b.blink_value[s] = static_cast<float>(v);
        // breath
        double ph = b.breath_phase[s] + dt / b.breath_cycle[s];
        if (ph >= 1.0) {
            ph = ph - std::floor(ph);
            b.wrapped[s] = 1;
        } else {
            b.wrapped[s] = 0;
        }
        b.breath_phase[s] = ph;
        double br = ph < fi ? 0.5 - 0.5 * std::cos(kPi * (ph / fi))
                            : 0.5 + 0.5 * std::cos(kPi * ((ph - fi) / (1.0 - fi)));
        const double sp = b.speaking[s];
        br = br * (1.0 - (1.0 - p.breath_speaking_scale) * sp);
        b.breath[s] = static_cast<float>(br);
        // gaze (float arithmetic, in the reference's order)
        const float th = b.thinking[s];
        const float* lk = b.look + 2 * s;
        const float* fx = b.fixation + 2 * s;
        const float* av = b.avert + 2 * s;
        const float* mc = b.micro + 2 * s;
        const float aim0 = (lk[0] + fx[0]) + th * av[0];
        const float aim1 = (lk[1] + fx[1]) + th * av[1];
        float* gg = b.gaze_goal + 2 * s;
        gg[0] = aim0 + mc[0];
        gg[1] = aim1 + mc[1];
        detail::spring_row(b.gaze + 2 * s, b.gaze_vel + 2 * s, gg, 2, b.gaze_omega[s], dt);
        // head
        const double gain = 1.0 + p.speaking_gain * sp;
        const double* hf = b.head_freq + 6 * s;
        const double* hp = b.head_phase + 6 * s;
        float* hg = b.head_goal + 3 * s;
        for (int a = 0; a < 3; ++a) {
            const double w0 = std::sin(2.0 * kPi * hf[2 * a] * t + hp[2 * a]);
            const double w1 = std::sin(2.0 * kPi * hf[2 * a + 1] * t + hp[2 * a + 1]);
            double idle = (0.6 * w0 + 0.4 * w1) * p.amp[a];
            idle = idle * gain;
            if (a == 0) idle += p.follow * static_cast<double>(aim0);
            if (a == 1) {
                idle += p.follow * static_cast<double>(aim1);
                idle += p.breath_head_pitch * br;
            }
            hg[a] = static_cast<float>(idle);
        }
        float* hd = b.head + 3 * s;
        detail::spring_row(hd, b.head_vel + 3 * s, hg, 3, b.head_omega[s], dt);
        b.brow[s] = static_cast<float>(static_cast<double>(b.brow[s]) * decay);
        // outputs
        const float* gz = b.gaze + 2 * s;
        const float e0 = gz[0] - hd[0];
        const float e1 = gz[1] - hd[1];
        float* ch = b.channels + 9 * s;
        ch[0] = hd[0];
        ch[1] = hd[1];
        ch[2] = hd[2];
        ch[3] = e0;
        ch[4] = e1;
        ch[5] = 0.0f;
        ch[6] = e0;
        ch[7] = e1;
        ch[8] = 0.0f;
        float* f = b.features + 7 * s;
        const float l = e0 * k, u = e1 * k, r = e0 * -k, d = e1 * -k;
        f[0] = b.blink_value[s];
        f[1] = l > 0.0f ? l : 0.0f;
        f[2] = u > 0.0f ? u : 0.0f;
        f[3] = r > 0.0f ? r : 0.0f;
        f[4] = d > 0.0f ? d : 0.0f;
        f[5] = b.brow[s];
        f[6] = b.breath[s];
    }
}

}  // namespace avatar_engine
