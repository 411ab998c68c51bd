// Batched smoothing kernels: the One Euro filter and a critically damped spring.
//
// Pure C++17, no Python. Semantics are defined by the numpy reference
// (avatar_engine/kernels/filters.py); the parity tests hold every backend to it.
//
// Buffer layout (row-major, one row per session, N columns per row):
//
//   x, out, xhat, dxhat, target, pos, vel : | s0: c0 c1 ... c(N-1) | s1: ... |   float32, S*N
//   region                                : | c0 ... c(N-1) |                     int8, N
//   min_cutoff, beta, d_cutoff            : | s0: r0 ... r(R-1) | s1: ... |       float32, S*R
//   dt, omega                             : | s0 s1 ... |                         float32, S
//
// One Euro (Casiez, Roussel & Vogel, CHI 2012), per element, in double, state stored as float:
//   alpha(fc, dt) = r / (r + 1) with r = 2*pi*fc*dt      (= 1 / (1 + tau/Te), tau = 1/(2*pi*fc))
//   dx    = (x - xhat) * (1 / dt)      (the reciprocal once per row)
//   dxhat = alpha(d_cutoff) * dx + (1 - alpha(d_cutoff)) * dxhat
//   fc    = min_cutoff + beta * |dxhat|
//   xhat  = alpha(fc) * x + (1 - alpha(fc)) * xhat
// A row with dt <= 0 has no new sample: its output is its held estimate and its state is kept.
// A row that is not primed yet starts at its input (xhat = x, dxhat = 0) and becomes primed.
//
// Critically damped spring toward target, integrated exactly over dt (stable at any step):
//   y = pos - target,  j = (vel + omega*y) * dt,  e = exp(-omega*dt)
//   pos = target + (y + j) * e,   vel = (vel - omega*j) * e
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace avatar_engine {

constexpr std::size_t kMaxRegions = 64;  // region codes are small; the binding checks R <= this

namespace detail {
constexpr double kTwoPi = 6.283185307179586476925286766559;

inline double one_euro_alpha(double cutoff, double dt) noexcept {
    const double r = kTwoPi * cutoff * dt;
    return r / (r + 1.0);
}
}  // namespace detail

// A One Euro filter's state (the layout above): `sessions` rows of `n` columns, `n_regions`
// parameter regions.
struct OneEuroState {
    float* xhat;
    float* dxhat;
    std::uint8_t* primed;
    const std::int8_t* region;
    const float* min_cutoff;
    const float* beta;
    const float* d_cutoff;
    std::size_t sessions, n, n_regions;
};

// Filters the state's rows of `x` into `out` (which may alias `x`) and updates the state.
inline void one_euro(const OneEuroState& st, const float* dt, const float* x,
                     float* out) noexcept {
    float* xhat = st.xhat;
    float* dxhat = st.dxhat;
    std::uint8_t* primed = st.primed;
    const std::int8_t* region = st.region;
    const std::size_t sessions = st.sessions, n = st.n, n_regions = st.n_regions;
    for (std::size_t s = 0; s < sessions; ++s) {
        const float* xs = x + s * n;
        float* os = out + s * n;
        float* hs = xhat + s * n;
        float* ds = dxhat + s * n;
        const double step = dt[s];
        if (!(step > 0.0)) {  // no new sample this tick (also catches NaN)
            for (std::size_t c = 0; c < n; ++c) os[c] = hs[c];
            continue;
        }
        if (!primed[s]) {
            for (std::size_t c = 0; c < n; ++c) {
                hs[c] = xs[c];
                ds[c] = 0.0f;
                os[c] = xs[c];
            }
            primed[s] = 1;
            continue;
        }
        const float* mc = st.min_cutoff + s * n_regions;
        const float* bt = st.beta + s * n_regions;
        const float* dc = st.d_cutoff + s * n_regions;
        const double rate = 1.0 / step;  // one division per row, not per element
        double ad_region[kMaxRegions];   // alpha(d_cutoff) depends on the region only
        for (std::size_t r = 0; r < n_regions && r < kMaxRegions; ++r)
            ad_region[r] = detail::one_euro_alpha(dc[r], step);
        for (std::size_t c = 0; c < n; ++c) {
            const std::size_t r = static_cast<std::size_t>(region[c]);
            const double xi = xs[c];
            const double prev = hs[c];
            const double dx = (xi - prev) * rate;
            const double ad = ad_region[r];
            const double dxh = ad * dx + (1.0 - ad) * static_cast<double>(ds[c]);
            const double fc = static_cast<double>(mc[r]) + static_cast<double>(bt[r]) * std::fabs(dxh);
            const double a = detail::one_euro_alpha(fc, step);
            const float y = static_cast<float>(a * xi + (1.0 - a) * prev);
            ds[c] = static_cast<float>(dxh);
            hs[c] = y;
            os[c] = y;
        }
    }
}

// Critically damped springs (the layout above): `sessions` rows of `n` columns.
struct SpringState {
    float* pos;
    float* vel;
    const float* omega;
    std::size_t sessions, n;
};

// Advances the state's springs by dt seconds towards `target`, in place.
inline void spring_step(const SpringState& st, double dt, const float* target) noexcept {
    float* pos = st.pos;
    float* vel = st.vel;
    const float* omega = st.omega;
    const std::size_t sessions = st.sessions, n = st.n;
    for (std::size_t s = 0; s < sessions; ++s) {
        const double w = omega[s];
        const double e = std::exp(-w * dt);
        float* p = pos + s * n;
        float* v = vel + s * n;
        const float* g = target + s * n;
        for (std::size_t c = 0; c < n; ++c) {
            const double tgt = g[c];
            const double y = static_cast<double>(p[c]) - tgt;
            const double j = (static_cast<double>(v[c]) + w * y) * dt;
            p[c] = static_cast<float>(tgt + (y + j) * e);
            v[c] = static_cast<float>((static_cast<double>(v[c]) - w * j) * e);
        }
    }
}

}  // namespace avatar_engine
