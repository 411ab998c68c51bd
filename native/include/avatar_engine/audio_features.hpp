// Per-hop audio features (RMS, peak, YIN pitch, periodicity, onset, voice activity), batched
// over rows of 16 kHz analysis windows. Pure C++17, no Python: the semantics are defined by the
// numpy reference in src/avatar_engine/kernels/audio_features.py and mirrored loop for loop.
//
// Buffer layout (all row-major, caller-owned):
//   windows  rows x kWindow float32   each row = the 32 ms of audio ending at one 10 ms hop
//   vad_rms  rows          float32   per-row RMS threshold for voice activity
//   out      rows x kFeatures float32 [rms, peak, pitch_hz, periodicity, onset_db, vad]
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace avatar_engine {

constexpr std::size_t kWindow = 512;
constexpr std::size_t kFrame = 400;
constexpr std::size_t kHop = 160;
constexpr std::size_t kYinW = 256;
constexpr std::size_t kTauMin = 32;
constexpr std::size_t kTauMax = 256;
constexpr std::size_t kFeatures = 6;
constexpr double kRate = 16000.0;
constexpr double kPreEmphasis = 0.97;

struct AudioFeatureParams {
    double yin_threshold = 0.15;
    double silence_rms = 1e-4;
};

// Analyses one window; `out` receives kFeatures values.
inline void audio_features_row(const float* w, float vad_rms, const AudioFeatureParams& p,
                               float* out) {
    double acc = 0.0, peak = 0.0;
    for (std::size_t i = kWindow - kFrame; i < kWindow; ++i) {
        const double v = w[i];
        acc += v * v;
        peak = std::max(peak, std::fabs(v));
    }
    const double rms = std::sqrt(acc / static_cast<double>(kFrame));

    // Difference function d(tau) = sum_j (w[j] - w[j+tau])^2. The lag loop is innermost so
    // the compiler vectorises across lags (independent accumulators); each d(tau) still sums
    // over j in order 0..YIN_W-1, exactly as the reference does.
    double d[kTauMax + 1] = {0.0};
    double wd[kWindow];
    for (std::size_t i = 0; i < kWindow; ++i) wd[i] = static_cast<double>(w[i]);
    for (std::size_t j = 0; j < kYinW; ++j) {
        const double a = wd[j];
        const double* b = wd + j;
        for (std::size_t tau = 1; tau <= kTauMax; ++tau) {
            const double diff = a - b[tau];
            d[tau] += diff * diff;
        }
    }
    double dn[kTauMax + 1];
    dn[0] = 1.0;
    double cum = 0.0;
    for (std::size_t tau = 1; tau <= kTauMax; ++tau) {
        const double s = d[tau];
        cum += s;
        dn[tau] = cum > 0.0 ? s * static_cast<double>(tau) / cum : 1.0;
    }

    std::size_t best = 0;
    bool found = false;
    for (std::size_t tau = kTauMin; tau <= kTauMax; ++tau) {
        if (dn[tau] < p.yin_threshold) {
            while (tau + 1 <= kTauMax && dn[tau + 1] < dn[tau]) ++tau;
            best = tau;
            found = true;
            break;
        }
    }
    if (!found) {
        best = kTauMin;
        for (std::size_t t = kTauMin + 1; t <= kTauMax; ++t) {
            if (dn[t] < dn[best]) best = t;
        }
    }
    const double dbest = dn[best];
    const double period = std::min(std::max(1.0 - dbest, 0.0), 1.0);
    double pitch = 0.0;
    if (dbest < p.yin_threshold && rms >= p.silence_rms) {
        double off = 0.0;
        if (best > 1 && best < kTauMax) {
            const double a = dn[best - 1], b = dn[best], c = dn[best + 1];
            const double den = a - 2.0 * b + c;
            if (den > 0.0) off = std::min(std::max(0.5 * (a - c) / den, -0.5), 0.5);
        }
        pitch = kRate / (static_cast<double>(best) + off);
    }

    double e_cur = 0.0, e_prev = 0.0;
    for (std::size_t i = kWindow - kHop; i < kWindow; ++i) {
        const double y = static_cast<double>(w[i]) - kPreEmphasis * static_cast<double>(w[i - 1]);
        e_cur += y * y;
    }
    for (std::size_t i = kWindow - 2 * kHop; i < kWindow - kHop; ++i) {
        const double y = static_cast<double>(w[i]) - kPreEmphasis * static_cast<double>(w[i - 1]);
        e_prev += y * y;
    }
    e_cur /= static_cast<double>(kHop);
    e_prev /= static_cast<double>(kHop);
    const double onset = std::max(0.0, 10.0 * std::log10((e_cur + 1e-10) / (e_prev + 1e-10)));

    out[0] = static_cast<float>(rms);
    out[1] = static_cast<float>(peak);
    out[2] = static_cast<float>(pitch);
    out[3] = static_cast<float>(period);
    out[4] = static_cast<float>(onset);
    out[5] = rms >= static_cast<double>(vad_rms) ? 1.0f : 0.0f;
}

inline void audio_features(const float* windows, const float* vad_rms, std::size_t rows,
                           const AudioFeatureParams& p, float* out) {
    for (std::size_t r = 0; r < rows; ++r) {
        audio_features_row(windows + r * kWindow, vad_rms[r], p, out + r * kFeatures);
    }
}

}  // namespace avatar_engine
