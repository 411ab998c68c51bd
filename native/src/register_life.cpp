// pybind11 binding of the procedural-life tick (native/include/avatar_engine/life.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

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

}  // namespace

void register_life(py::module_& m) {
    py::class_<LifeConsts>(m, "LifePlan",
                           "Procedural-life constants (a LifeConsts, read by name); call once "
                           "per tick with (state, t, dt).")
        .def(py::init(&make_consts), py::arg("consts"))
        .def("__call__", &call, py::arg("state"), py::arg("t"), py::arg("dt"),
             "Advance procedural life by one tick for every row of `state` (a LifeBuffers, "
             "read by name; see life.hpp).");
}

}  // namespace avatar_engine::bindings
