// pybind11 binding of the animate step's envelopes and effective layer weights
// (native/include/avatar_engine/envelopes.hpp; the numpy reference and its semantics are in
// avatar_engine/kernels/envelopes.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "array_checks.hpp"
#include "avatar_engine/envelopes.hpp"
#include "registers.hpp"

namespace avatar_engine::bindings {

namespace {

EnvelopeConsts make_consts(const py::object& c) {
    const auto get = [&c](const char* name) { return c.attr(name).cast<double>(); };
    const auto count = [&c](const char* name) { return c.attr(name).cast<std::size_t>(); };
    EnvelopeConsts p{get("speak_attack"),    get("speak_release"),     get("capture_timeout"),
                     get("capture_fade_in"), get("capture_fade_out"),  get("thinking_fade"),
                     count("n_layers"),      count("n_regions"),       count("capture_layer"),
                     count("speech_layer")};
    if (!(p.speak_attack > 0.0) || !(p.speak_release > 0.0) || !(p.capture_fade_in > 0.0) ||
        !(p.capture_fade_out > 0.0) || !(p.thinking_fade > 0.0))
        throw py::value_error("EnvelopesPlan: the attack, release and fade times must be > 0");
    if (p.capture_layer >= p.n_layers || p.speech_layer >= p.n_layers)
        throw py::value_error("EnvelopesPlan: capture_layer and speech_layer must be < n_layers");
    return p;
}

void call(const EnvelopeConsts& c, const py::object& state, double t, double dt) {
    const auto n = static_cast<std::size_t>(py::len(state.attr("speak_env")));
    const std::size_t nl = c.n_layers, lr = c.n_layers * c.n_regions;
    constexpr Access R = Access::kRead;
    constexpr Access W = Access::kWrite;
    EnvelopeBuffers b{};
    b.speaking = field<float>(state, "speaking", n, 1, R);
    b.speak_env = field<float>(state, "speak_env", n, 1, W);
    b.capture_new = field<bool>(state, "capture_new", n, 1, R);
    b.last_capture = field<double>(state, "last_capture", n, 1, W);
    b.capture_env = field<float>(state, "capture_env", n, 1, W);
    b.capture_dt = field<float>(state, "capture_dt", n, 1, W);
    b.filter_primed_m = field<std::uint8_t>(state, "filter_primed_m", n, 1, W);
    b.filter_primed_c = field<std::uint8_t>(state, "filter_primed_c", n, 1, W);
    b.thinking_on = field<float>(state, "thinking_on", n, 1, R);
    b.thinking_env = field<float>(state, "thinking_env", n, 1, W);
    b.thinking = field<float>(state, "thinking", n, 1, W);
    b.weight = field<float>(state, "weight", n, nl, R);
    b.mask = field<float>(state, "mask", n, lr, R);
    b.duck_speech = field<float>(state, "duck_speech", n, lr, R);
    b.duck_capture = field<float>(state, "duck_capture", n, lr, R);
    b.weights = field<float>(state, "weights", n, lr, W);
    // A few microseconds of work at a hundred sessions: the GIL stays held (releasing and
    // re-taking it would be a noticeable share of the call).
    envelopes_step(c, t, dt, b, n);
}

}  // namespace

void register_envelopes(py::module_& m) {
    py::class_<EnvelopeConsts>(m, "EnvelopesPlan",
                               "Envelope speeds and layer geometry (an EnvelopeConsts, read by "
                               "name); call once per tick with (state, t, dt).")
        .def(py::init(&make_consts), py::arg("consts"))
        .def("__call__", &call, py::arg("state"), py::arg("t"), py::arg("dt"),
             "Advance the speaking, capture and thinking envelopes and write the effective "
             "layer weights for every row of `state` (an EnvelopeBuffers, read by name; see "
             "envelopes.py).");
}

}  // namespace avatar_engine::bindings
