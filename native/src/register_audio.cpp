// pybind11 binding of the audio feature kernel (native/include/avatar_engine/audio_features.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "array_checks.hpp"
#include "avatar_engine/audio_features.hpp"
#include "registers.hpp"

namespace avatar_engine::bindings {

void register_audio(py::module_& m) {
    py::class_<AudioFeatureParams>(m, "AudioFeaturePlan",
                                   "Audio feature kernel parameters; call with "
                                   "(windows, vad_rms, out).")
        .def(py::init([](const py::object& params) {
                 // A FeatureParams (avatar_engine/kernels/audio_features.py), read by name.
                 AudioFeatureParams p;
                 p.yin_threshold = params.attr("yin_threshold").cast<double>();
                 p.silence_rms = params.attr("silence_rms").cast<double>();
                 return p;
             }),
             py::arg("params"))
        .def(
            "__call__",
            [](const AudioFeatureParams& p, const F32Array& windows, const F32Array& vad_rms,
               F32Array& out) {
                const std::size_t rows = require_matrix(windows, kWindow, "windows");
                if (vad_rms.ndim() != 1 || static_cast<std::size_t>(vad_rms.shape(0)) != rows) {
                    throw py::value_error("vad_rms: expected one float32 per window row");
                }
                if (require_matrix(out, kFeatures, "out") != rows) {
                    throw py::value_error("out: must have as many rows as windows");
                }
                if (!out.writeable()) throw py::value_error("out: array is read-only");
                const float* src = windows.data();
                const float* thr = vad_rms.data();
                float* dst = out.mutable_data();
                // Safe without the GIL: only raw buffers of arrays the caller keeps alive are
                // touched, and the parameters are an immutable value.
                py::gil_scoped_release release;
                audio_features(src, thr, rows, p, dst);
            },
            py::arg("windows").noconvert(), py::arg("vad_rms").noconvert(),
            py::arg("out").noconvert(),
            "Analyse each 512-sample row of `windows` into a row of 6 features in `out`.");
}

}  // namespace avatar_engine::bindings
