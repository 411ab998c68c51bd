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

using F64Array = py::array_t<double, py::array::c_style>;
using U8Array = py::array_t<std::uint8_t, py::array::c_style>;

template <typename T>
T* rows(py::array_t<T, py::array::c_style>& a, std::size_t n, std::size_t width,
        const char* what, bool write) {
    if (static_cast<std::size_t>(a.size()) != n * width || (a.ndim() > 1 && a.shape(0) != static_cast<py::ssize_t>(n)))
        throw py::value_error(std::string(what) + ": expected " + std::to_string(n) + " rows of " +
                              std::to_string(width));
    if (write && !a.writeable()) throw py::value_error(std::string(what) + ": array is read-only");
    return a.mutable_data();
}

void call(const LifeConsts& p, double t, double dt, F64Array blink_t0, F64Array blink_close,
          F64Array blink_open, F32Array blink_value, F64Array breath_phase, F64Array breath_cycle,
          F32Array breath, U8Array wrapped, F32Array speaking, F32Array thinking, F32Array look,
          F32Array fixation, F32Array micro, F32Array avert, F32Array gaze_goal, F32Array gaze,
          F32Array gaze_vel, F32Array gaze_omega, F64Array head_freq, F64Array head_phase,
          F32Array head_goal, F32Array head, F32Array head_vel, F32Array head_omega,
          F32Array brow, F32Array channels, F32Array features) {
    const auto n = static_cast<std::size_t>(blink_t0.size());
    LifeBuffers b{};
    // Read-only inputs are checked for size only; outputs also for writeability.
    b.blink_t0 = rows(blink_t0, n, 1, "blink_t0", false);
    b.blink_close = rows(blink_close, n, 1, "blink_close", false);
    b.blink_open = rows(blink_open, n, 1, "blink_open", false);
    b.blink_value = rows(blink_value, n, 1, "blink_value", true);
    b.breath_phase = rows(breath_phase, n, 1, "breath_phase", true);
    b.breath_cycle = rows(breath_cycle, n, 1, "breath_cycle", false);
    b.breath = rows(breath, n, 1, "breath", true);
    b.wrapped = rows(wrapped, n, 1, "wrapped", true);
    b.speaking = rows(speaking, n, 1, "speaking", false);
    b.thinking = rows(thinking, n, 1, "thinking", false);
    b.look = rows(look, n, 2, "look", false);
    b.fixation = rows(fixation, n, 2, "fixation", false);
    b.micro = rows(micro, n, 2, "micro", false);
    b.avert = rows(avert, n, 2, "avert", false);
    b.gaze_goal = rows(gaze_goal, n, 2, "gaze_goal", true);
    b.gaze = rows(gaze, n, 2, "gaze", true);
    b.gaze_vel = rows(gaze_vel, n, 2, "gaze_vel", true);
    b.gaze_omega = rows(gaze_omega, n, 1, "gaze_omega", false);
    b.head_freq = rows(head_freq, n, 6, "head_freq", false);
    b.head_phase = rows(head_phase, n, 6, "head_phase", false);
    b.head_goal = rows(head_goal, n, 3, "head_goal", true);
    b.head = rows(head, n, 3, "head", true);
    b.head_vel = rows(head_vel, n, 3, "head_vel", true);
    b.head_omega = rows(head_omega, n, 1, "head_omega", false);
    b.brow = rows(brow, n, 1, "brow", true);
    b.channels = rows(channels, n, 9, "channels", true);
    b.features = rows(features, n, 7, "features", true);
    // Safe without the GIL: raw buffers of arrays the caller keeps alive; no Python objects.
    py::gil_scoped_release release;
    life_step(p, t, dt, b, n);
}

}  // namespace

void register_life(py::module_& m) {
    py::class_<LifeConsts>(m, "LifePlan", "Procedural-life constants; call once per tick.")
        .def(py::init([](double blink_amplitude, double inhale_fraction,
                         double breath_speaking_scale, double breath_head_pitch, double amp_yaw,
                         double amp_pitch, double amp_roll, double speaking_gain, double follow,
                         double brow_decay, double eye_morph_range) {
                 if (!(brow_decay > 0.0) || !(eye_morph_range > 0.0) ||
                     !(inhale_fraction > 0.0 && inhale_fraction < 1.0))
                     throw py::value_error("LifePlan: brow_decay and eye_morph_range must be > 0, "
                                           "inhale_fraction in (0, 1)");
                 return LifeConsts{blink_amplitude, inhale_fraction, breath_speaking_scale,
                                   breath_head_pitch, {amp_yaw, amp_pitch, amp_roll},
                                   speaking_gain, follow, brow_decay, eye_morph_range};
             }),
             py::arg("blink_amplitude"), py::arg("inhale_fraction"),
             py::arg("breath_speaking_scale"), py::arg("breath_head_pitch"), py::arg("amp_yaw"),
             py::arg("amp_pitch"), py::arg("amp_roll"), py::arg("speaking_gain"),
             py::arg("follow"), py::arg("brow_decay"), py::arg("eye_morph_range"))
        .def("__call__", &call, py::arg("t"), py::arg("dt"), py::arg("blink_t0").noconvert(),
             py::arg("blink_close").noconvert(), py::arg("blink_open").noconvert(),
             py::arg("blink_value").noconvert(), py::arg("breath_phase").noconvert(),
             py::arg("breath_cycle").noconvert(), py::arg("breath").noconvert(),
             py::arg("wrapped").noconvert(), py::arg("speaking").noconvert(),
             py::arg("thinking").noconvert(), py::arg("look").noconvert(),
             py::arg("fixation").noconvert(), py::arg("micro").noconvert(),
             py::arg("avert").noconvert(), py::arg("gaze_goal").noconvert(),
             py::arg("gaze").noconvert(), py::arg("gaze_vel").noconvert(),
             py::arg("gaze_omega").noconvert(), py::arg("head_freq").noconvert(),
             py::arg("head_phase").noconvert(), py::arg("head_goal").noconvert(),
             py::arg("head").noconvert(), py::arg("head_vel").noconvert(),
             py::arg("head_omega").noconvert(), py::arg("brow").noconvert(),
             py::arg("channels").noconvert(), py::arg("features").noconvert(),
             "Advance procedural life by one tick for every row (see life.hpp).");
}

}  // namespace avatar_engine::bindings
