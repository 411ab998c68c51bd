// Batched layer compositor and constraints: L layers x S sessions x N columns -> S x N.
//
// Pure C++17, no Python. Semantics are defined by the numpy reference
// (avatar_engine/kernels/compose.py); the parity tests hold every backend to it.
//
// Buffer layout:
//
//   layers : | layer 0: s0 row (N) | s1 row | ... | layer 1: ... |    float32, L*Sc*N
//            (Sc >= S rows per layer: the engine's capacity; only the first S are read)
//   weight : | s0: l0 r0..r(R-1) | l1 r0.. | ... | s1: ... |          float32, S*L*R
//   mode   : | s0: l0 .. l(L-1) | s1: ... |                           int8,   S*L
//   emask  : | s0 row (N) | s1 row | ... |   per-column weight of the LAST layer only (manual)
//   region : | c0 .. c(N-1) |               int8 region code per column
//   out, prev : S*N float32;   couple : S float32;   vmax : S*R float32;   primed : S uint8
//
// Per session s and column c (acc in double, starts at 0), layers in order l = 0 .. L-1:
//   w = weight[s, l, region[c]]  (times emask[s, c] for the last layer); skipped when w == 0
//   override : acc += w * (x - acc)
//   additive : acc += w * x
//   max      : acc += w * (max(acc, x) - acc)
//   multiply : acc *= 1 + w * (x - 1)
// then, in float:  out = float(acc);
//   left/right coupling, pair (a, b) in order:  m = (a + b) * 0.5;  a += k (m - a);  b += k (m - b)
//   clamp to [lower, upper];
//   exclusive pairs (d, q) in order:  out[q] *= clamp(1 - out[d], 0, 1);
//   velocity, when primed:  step = float(min(vmax[s, region[c]], vcol[c]) * dt);
//                           out = min(max(out, prev - step), prev + step)
//   prev = out; primed = 1.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace avatar_engine {

enum class BlendMode : std::int8_t { kOverride = 0, kAdditive = 1, kMax = 2, kMultiply = 3 };

struct ComposeTables {
    std::size_t n = 0;          // columns
    std::size_t n_regions = 0;  // R
    std::vector<std::int8_t> region;      // n
    std::vector<float> lower, upper;      // n
    std::vector<std::int32_t> exclusive;  // 2 * pairs: dominant, suppressed
    std::vector<std::int32_t> couple;     // 2 * pairs: left, right
    std::vector<std::int32_t> runs;       // 3 per run of equal region: begin, end, region
    std::vector<float> vcol;              // n: per-column speed cap (inf = the region's only)

    // Rigs list morphs region by region, so a few runs cover every column and the per-region
    // weight becomes a loop constant (no per-column gather; the inner loops vectorise).
    void build_runs() {
        runs.clear();
        for (std::size_t c = 0; c < n;) {
            std::size_t e = c + 1;
            while (e < n && region[e] == region[c]) ++e;
            runs.insert(runs.end(), {static_cast<std::int32_t>(c), static_cast<std::int32_t>(e),
                                     static_cast<std::int32_t>(region[c])});
            c = e;
        }
    }
};

template <typename Weight>
inline void blend_layer(BlendMode mode, const float* x, double* acc, std::size_t b,
                        std::size_t e, Weight w) noexcept {
    // One branch-free loop per mode so the compiler can vectorise it. A zero weight leaves
    // acc exactly unchanged in every mode (inputs are finite).
    switch (mode) {
        case BlendMode::kOverride:
            for (std::size_t c = b; c < e; ++c) acc[c] += w(c) * (x[c] - acc[c]);
            break;
        case BlendMode::kAdditive:
            for (std::size_t c = b; c < e; ++c) acc[c] += w(c) * x[c];
            break;
        case BlendMode::kMax:
            for (std::size_t c = b; c < e; ++c) {
                const double xc = x[c];
                acc[c] += w(c) * ((acc[c] > xc ? acc[c] : xc) - acc[c]);
            }
            break;
        case BlendMode::kMultiply:
            for (std::size_t c = b; c < e; ++c) acc[c] *= 1.0 + w(c) * (x[c] - 1.0);
            break;
        default: break;  // unknown modes are rejected by the binding
    }
}

struct ComposeArgs {
    const float* layers;
    std::size_t n_layers;
    std::size_t layer_rows;  // Sc: rows per layer in `layers`
    const float* weight;
    const std::int8_t* mode;
    const float* emask;
    const float* couple;
    const float* vmax;
    double dt;
    float* prev;
    std::uint8_t* primed;
    float* out;
    std::size_t sessions;
};

// `scratch` must hold at least t.n doubles; the caller owns it (no allocation per row).
inline void compose(const ComposeTables& t, const ComposeArgs& a, double* scratch) noexcept {
    const std::size_t n = t.n;
    const std::size_t R = t.n_regions;
    const std::size_t L = a.n_layers;
    const std::size_t n_excl = t.exclusive.size() / 2;
    const std::size_t n_couple = t.couple.size() / 2;
    double* acc = scratch;  // n doubles: the running blend of one session row
    for (std::size_t s = 0; s < a.sessions; ++s) {
        std::fill(acc, acc + n, 0.0);
        for (std::size_t l = 0; l < L; ++l) {
            const float* x = a.layers + (l * a.layer_rows + s) * n;
            const float* wr = a.weight + (s * L + l) * R;
            // A layer with zero weight in every region changes nothing: skip its whole row
            // (most sessions are not speaking, have no capture and no manual override).
            bool any = false;
            for (std::size_t r = 0; r < R; ++r) any = any || (wr[r] != 0.0f);
            if (!any) continue;
            const auto mode = static_cast<BlendMode>(a.mode[s * L + l]);
            const std::size_t n_runs = t.runs.size() / 3;
            if (l + 1 == L) {  // the manual layer: per-column mask on top of the region weight
                const float* em = a.emask + s * n;
                bool masked = false;  // most sessions override nothing: skip the blend
                for (std::size_t c = 0; c < n; ++c) masked = masked || (em[c] != 0.0f);
                if (!masked) continue;
                for (std::size_t k = 0; k < n_runs; ++k) {
                    const double w = wr[t.runs[3 * k + 2]];
                    if (w == 0.0) continue;
                    blend_layer(mode, x, acc, t.runs[3 * k], t.runs[3 * k + 1],
                                [em, w](std::size_t c) { return w * static_cast<double>(em[c]); });
                }
            } else {
                for (std::size_t k = 0; k < n_runs; ++k) {
                    const double w = wr[t.runs[3 * k + 2]];
                    if (w == 0.0) continue;
                    blend_layer(mode, x, acc, t.runs[3 * k], t.runs[3 * k + 1],
                                [w](std::size_t) { return w; });
                }
            }
        }
        float* o = a.out + s * n;
        for (std::size_t c = 0; c < n; ++c) o[c] = static_cast<float>(acc[c]);
        const float k = a.couple[s];
        if (k != 0.0f) {
            for (std::size_t p = 0; p < n_couple; ++p) {
                float& left = o[t.couple[2 * p]];
                float& right = o[t.couple[2 * p + 1]];
                const float mid = (left + right) * 0.5f;
                left += k * (mid - left);
                right += k * (mid - right);
            }
        }
        const float* lower = t.lower.data();
        const float* upper = t.upper.data();
        for (std::size_t c = 0; c < n; ++c) {
            const float v = o[c] < lower[c] ? lower[c] : o[c];
            o[c] = v > upper[c] ? upper[c] : v;
        }
        for (std::size_t p = 0; p < n_excl; ++p) {
            float keep = 1.0f - o[t.exclusive[2 * p]];
            keep = keep < 0.0f ? 0.0f : (keep > 1.0f ? 1.0f : keep);
            o[t.exclusive[2 * p + 1]] *= keep;
        }
        float* pv = a.prev + s * n;
        if (a.primed[s]) {
            const float* vm = a.vmax + s * R;
            const float* vcol = t.vcol.data();
            for (std::size_t k = 0; k < t.runs.size() / 3; ++k) {
                const float vr = vm[t.runs[3 * k + 2]];
                const auto end = static_cast<std::size_t>(t.runs[3 * k + 1]);
                for (std::size_t c = static_cast<std::size_t>(t.runs[3 * k]); c < end; ++c) {
                    const float v = vcol[c] < vr ? vcol[c] : vr;
                    const float step = static_cast<float>(static_cast<double>(v) * a.dt);
                    const float lo = pv[c] - step;
                    const float hi = pv[c] + step;
                    const float y = o[c] < lo ? lo : (o[c] > hi ? hi : o[c]);
                    o[c] = y;
                    pv[c] = y;  // fused with the copy to prev: one pass less
                }
            }
        } else {
            std::copy(o, o + n, pv);
        }
        a.primed[s] = 1;
    }
}

// Sparse linear map by scatter: out[s, :] = 0, then for each non-zero k in order,
// out[s, rows[k]] += weights[k] * in[s, cols[k]]  (float32 arithmetic, in that order).
// For maps with a few dozen non-zeros (emotion presets, procedural ARKit shapes -> rig
// morphs) this costs a memset plus nnz multiply-adds per session, not a pass over every morph.
struct ScatterTables {
    std::size_t n_in = 0, n_out = 0;
    std::vector<std::int32_t> rows, cols;
    std::vector<float> weights;
};

inline void scatter_map(const ScatterTables& t, const float* in, std::size_t sessions,
                        float* out) noexcept {
    const std::size_t nnz = t.weights.size();
    for (std::size_t s = 0; s < sessions; ++s) {
        const float* xi = in + s * t.n_in;
        float* o = out + s * t.n_out;
        std::fill(o, o + t.n_out, 0.0f);
        bool any = false;  // an all-zero input row (no emotion, say) maps to zeros: done
        for (std::size_t j = 0; j < t.n_in; ++j) any = any || (xi[j] != 0.0f);
        if (!any) continue;
        for (std::size_t k = 0; k < nnz; ++k) o[t.rows[k]] += t.weights[k] * xi[t.cols[k]];
    }
}

}  // namespace avatar_engine
