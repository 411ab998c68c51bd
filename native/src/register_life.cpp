// pybind11 binding of the procedural-life tick (native/include/avatar_engine/life.hpp) and
// the C++ twin of its event draws (LifeEventsPlan; the numpy reference and its semantics are in
// avatar_engine/kernels/life_events.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "array_checks.hpp"
#include "avatar_engine/life.hpp"
#include "registers.hpp"

namespace avatar_engine::bindings {

namespace {

LifeConsts make_consts(const py::object& c) {
    const auto get = [&c](const char* name) { return c.attr(name).cast<double>(); };
    LifeConsts p{get("blink_amplitude"), get("inhale_fraction"), get("breath_speaking_scale"),
                 get("breath_head_pitch"), {get("amp_yaw"), get("amp_pitch"), get("amp_roll")},
                 get("speaking_gain"), get("follow"), get("brow_decay"), get("eye_morph_range")};
    if (!(p.brow_decay > 0.0) || !(p.eye_morph_range > 0.0) ||
        !(p.inhale_fraction > 0.0 && p.inhale_fraction < 1.0))
        throw py::value_error("LifePlan: brow_decay and eye_morph_range must be > 0, "
                              "inhale_fraction in (0, 1)");
    return p;
}

void call(const LifeConsts& p, const py::object& state, double t, double dt) {
    const auto n = static_cast<std::size_t>(py::len(state.attr("blink_t0")));
    constexpr Access R = Access::kRead;
    constexpr Access W = Access::kWrite;
    LifeBuffers b{};
    b.blink_t0 = field<double>(state, "blink_t0", n, 1, R);
    b.blink_close = field<double>(state, "blink_close", n, 1, R);
    b.blink_open = field<double>(state, "blink_open", n, 1, R);
    b.blink_value = field<float>(state, "blink_value", n, 1, W);
    b.breath_phase = field<double>(state, "breath_phase", n, 1, W);
    b.breath_cycle = field<double>(state, "breath_cycle", n, 1, R);
    b.breath = field<float>(state, "breath", n, 1, W);
    b.wrapped = field<std::uint8_t>(state, "wrapped", n, 1, W);
    b.speaking = field<float>(state, "speaking", n, 1, R);
    b.thinking = field<float>(state, "thinking", n, 1, R);
    b.look = field<float>(state, "look", n, 2, R);
    b.fixation = field<float>(state, "fixation", n, 2, R);
    b.micro = field<float>(state, "micro", n, 2, R);
    b.avert = field<float>(state, "avert", n, 2, R);
    b.gaze_goal = field<float>(state, "gaze_goal", n, 2, W);
    b.gaze = field<float>(state, "gaze", n, 2, W);
    b.gaze_vel = field<float>(state, "gaze_vel", n, 2, W);
    b.gaze_omega = field<float>(state, "gaze_omega", n, 1, R);
    b.head_freq = field<double>(state, "head_freq", n, 6, R);
    b.head_phase = field<double>(state, "head_phase", n, 6, R);
    b.head_goal = field<float>(state, "head_goal", n, 3, W);
    b.head = field<float>(state, "head", n, 3, W);
    b.head_vel = field<float>(state, "head_vel", n, 3, W);
    b.head_omega = field<float>(state, "head_omega", n, 1, R);
    b.brow = field<float>(state, "brow", n, 1, W);
    b.channels = field<float>(state, "channels", n, 9, W);
    b.features = field<float>(state, "features", n, 7, W);
    // Safe without the GIL: raw buffers of arrays the state struct keeps alive; no Python
    // objects are touched.
    py::gil_scoped_release release;
    life_step(p, t, dt, b, n);
}

// --- event draws (one call per tick; see life_events.py for the math) ---------------------

// The streams of avatar_engine.animation.rng (STREAM_*); the parity tests hold them equal.
constexpr std::size_t kStreams = 7;
constexpr std::size_t kBlink = 1, kGaze = 2, kMicro = 3, kStress = 4, kBreath = 6;
constexpr std::uint64_t kGamma = 0x9E3779B97F4A7C15ULL;

struct EventConsts {
    double interval_median, interval_sigma, interval_min, interval_max;
    double duration_min, duration_max, close_fraction, double_probability;
    double double_gap_min, double_gap_max, defer_max;
    double spread_yaw, spread_pitch, speaking_spread, fixation_min, fixation_mean;
    double micro_amplitude, micro_min, micro_mean;
    double nod_probability, nod_kick, brow_probability, cycle_jitter;
};

struct EventBuffers {
    const std::uint64_t* keys;  // (n, kStreams)
    std::uint64_t* counters;    // (n, kStreams) in/out
    const bool* in_word;        // (n)
    const float *speaking, *stress;
    double *next_blink, *blink_t0, *blink_close, *blink_open;
    std::int64_t* blink_count;
    double* next_fixation;
    float* fixation;  // (n, 2)
    double* next_micro;
    float* micro;     // (n, 2)
    float* head_vel;  // (n, 3)
    float* brow;
    const double* breath_period;
    double* breath_cycle;
    const std::uint8_t* wrapped;
};

// `K` uniforms of row r's stream s (rng.uniforms for one row), advancing its counter by k.
template <std::size_t K>
void draw(const EventBuffers& b, std::size_t r, std::size_t s, double (&u)[K]) noexcept {
    const std::size_t at = r * kStreams + s;
    const std::uint64_t key = b.keys[at];
    const std::uint64_t c0 = b.counters[at];
    for (std::size_t j = 0; j < K; ++j) {
        std::uint64_t z = key + (c0 + j) * kGamma + kGamma;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        u[j] = static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
    }
    b.counters[at] = c0 + K;
}

inline double normal(double u1, double u2) noexcept {
    return std::sqrt(-2.0 * std::log1p(-u1)) * std::cos(2.0 * detail::kPi * u2);
}

void blink_row(const EventConsts& c, const EventBuffers& b, std::size_t r, double t) noexcept {
    const double nxt = b.next_blink[r];
    if (!(t >= nxt)) return;
    const bool busy = t < b.blink_t0[r] + b.blink_close[r] + b.blink_open[r];
    if (busy || (b.in_word[r] && t - nxt < c.defer_max)) return;
    double u[5];
    draw(b, r, kBlink, u);
    const double dur = c.duration_min + u[0] * (c.duration_max - c.duration_min);
    b.blink_t0[r] = t;
    b.blink_close[r] = dur * c.close_fraction;
    b.blink_open[r] = dur * (1.0 - c.close_fraction);
    b.blink_count[r] += 1;
    if (u[1] < c.double_probability) {
        const double gap = c.double_gap_min + u[2] * (c.double_gap_max - c.double_gap_min);
        b.next_blink[r] = t + (dur + gap);
    } else {
        double iv = c.interval_median * std::exp(c.interval_sigma * normal(u[3], u[4]));
        iv = std::min(std::max(iv, c.interval_min), c.interval_max);
        b.next_blink[r] = t + std::max(iv, dur + 0.1);
    }
}

void gaze_row(const EventConsts& c, const EventBuffers& b, std::size_t r, double t) noexcept {
    double u[5];
    if (t >= b.next_fixation[r]) {
        draw(b, r, kGaze, u);
        const float spread =
            1.0f + static_cast<float>(c.speaking_spread) * b.speaking[r];  // float32, as numpy
        b.fixation[2 * r] = static_cast<float>(normal(u[0], u[1]) * c.spread_yaw * spread);
        b.fixation[2 * r + 1] = static_cast<float>(normal(u[2], u[3]) * c.spread_pitch * spread);
        b.next_fixation[r] =
            t + c.fixation_min + -std::log1p(-u[4]) * (c.fixation_mean - c.fixation_min);
    }
    if (t >= b.next_micro[r]) {
        draw(b, r, kMicro, u);
        b.micro[2 * r] = static_cast<float>(normal(u[0], u[1]) * c.micro_amplitude);
        b.micro[2 * r + 1] = static_cast<float>(normal(u[2], u[3]) * c.micro_amplitude);
        b.next_micro[r] = t + c.micro_min + -std::log1p(-u[4]) * (c.micro_mean - c.micro_min);
    }
}

void stress_row(const EventConsts& c, const EventBuffers& b, std::size_t r) noexcept {
    const float st = b.stress[r];
    if (!(st > 0.0f)) return;
    double u[2];
    draw(b, r, kStress, u);
    const float s = std::min(st, 1.0f);
    if (u[0] < c.nod_probability) b.head_vel[3 * r + 1] -= static_cast<float>(c.nod_kick) * s;
    if (u[1] < c.brow_probability) b.brow[r] = std::max(b.brow[r], s);
}

EventConsts make_event_consts(const py::object& c) {
    const auto get = [&c](const char* name) { return c.attr(name).cast<double>(); };
    return EventConsts{get("interval_median"),    get("interval_sigma"),  get("interval_min"),
                       get("interval_max"),       get("duration_min"),    get("duration_max"),
                       get("close_fraction"),     get("double_probability"),
                       get("double_gap_min"),     get("double_gap_max"),  get("defer_max"),
                       get("spread_yaw"),         get("spread_pitch"),    get("speaking_spread"),
                       get("fixation_min"),       get("fixation_mean"),   get("micro_amplitude"),
                       get("micro_min"),          get("micro_mean"),      get("nod_probability"),
                       get("nod_kick"),           get("brow_probability"), get("cycle_jitter")};
}

std::size_t event_rows(const py::object& state) {
    return static_cast<std::size_t>(py::len(state.attr("next_blink")));
}

void call_events(const EventConsts& c, const py::object& state, double t) {
    const std::size_t n = event_rows(state);
    constexpr Access R = Access::kRead;
    constexpr Access W = Access::kWrite;
    EventBuffers b{};
    b.keys = field<std::uint64_t>(state, "keys", n, kStreams, R);
    b.counters = field<std::uint64_t>(state, "counters", n, kStreams, W);
    b.in_word = field<bool>(state, "in_word", n, 1, R);
    b.speaking = field<float>(state, "speaking", n, 1, R);
    b.stress = field<float>(state, "stress", n, 1, R);
    b.next_blink = field<double>(state, "next_blink", n, 1, W);
    b.blink_t0 = field<double>(state, "blink_t0", n, 1, W);
    b.blink_close = field<double>(state, "blink_close", n, 1, W);
    b.blink_open = field<double>(state, "blink_open", n, 1, W);
    b.blink_count = field<std::int64_t>(state, "blink_count", n, 1, W);
    b.next_fixation = field<double>(state, "next_fixation", n, 1, W);
    b.fixation = field<float>(state, "fixation", n, 2, W);
    b.next_micro = field<double>(state, "next_micro", n, 1, W);
    b.micro = field<float>(state, "micro", n, 2, W);
    b.head_vel = field<float>(state, "head_vel", n, 3, W);
    b.brow = field<float>(state, "brow", n, 1, W);
    // A few rows' worth of work: the GIL stays held (releasing it would cost more).
    for (std::size_t r = 0; r < n; ++r) {
        blink_row(c, b, r, t);
        gaze_row(c, b, r, t);
        stress_row(c, b, r);
    }
}

void call_breaths(const EventConsts& c, const py::object& state) {
    const std::size_t n = event_rows(state);
    EventBuffers b{};
    b.keys = field<std::uint64_t>(state, "keys", n, kStreams, Access::kRead);
    b.counters = field<std::uint64_t>(state, "counters", n, kStreams, Access::kWrite);
    b.breath_period = field<double>(state, "breath_period", n, 1, Access::kRead);
    b.breath_cycle = field<double>(state, "breath_cycle", n, 1, Access::kWrite);
    b.wrapped = field<std::uint8_t>(state, "wrapped", n, 1, Access::kRead);
    for (std::size_t r = 0; r < n; ++r) {
        if (!b.wrapped[r]) continue;
        double u[1];
        draw(b, r, kBreath, u);
        b.breath_cycle[r] = b.breath_period[r] * (1.0 + c.cycle_jitter * (2.0 * u[0] - 1.0));
    }
}

}  // namespace

void register_life(py::module_& m) {
    py::class_<LifeConsts>(m, "LifePlan",
                           "Procedural-life constants (a LifeConsts, read by name); call once "
                           "per tick with (state, t, dt).")
        .def(py::init(&make_consts), py::arg("consts"))
        .def("__call__", &call, py::arg("state"), py::arg("t"), py::arg("dt"),
             "Advance procedural life by one tick for every row of `state` (a LifeBuffers, "
             "read by name; see life.hpp).");
    py::class_<EventConsts>(m, "LifeEventsPlan",
                            "Procedural-life event parameters (a LifeEventConsts, read by name); "
                            "call once per tick with (state, t), then .breaths(state) after "
                            "the LifePlan tick.")
        .def(py::init(&make_event_consts), py::arg("consts"))
        .def("__call__", &call_events, py::arg("state"), py::arg("t"),
             "Draw the blinks, fixations, micro-saccades and stress beats due at `t` for every "
             "row of `state` (a LifeEventBuffers, read by name; see life_events.py).")
        .def("breaths", &call_breaths, py::arg("state"),
             "Draw the next breath's length for the rows of `state` whose `wrapped` is set.");
}

}  // namespace avatar_engine::bindings
