// pybind11 binding of the curve-sampling kernel (native/include/avatar_engine/curves.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "array_checks.hpp"
#include "avatar_engine/curves.hpp"
#include "registers.hpp"

namespace avatar_engine::bindings {

using F64Array = py::array_t<double, py::array::c_style>;

void register_curves(py::module_& m) {
    m.def(
        "sample_curves",
        [](const py::object& keys, const F64Array& t, F32Array& out) {
            const auto times = strict<F64Array>(keys, "times");
            const auto values = strict<F32Array>(keys, "values");
            const auto counts = strict<I32Array>(keys, "counts");
            if (values.ndim() != 3 || times.ndim() != 2 || times.shape(0) != values.shape(0) ||
                times.shape(1) != values.shape(1)) {
                throw py::value_error("times must be (S, K) and values (S, K, C)");
            }
            const auto sessions = static_cast<std::size_t>(values.shape(0));
            const auto capacity = static_cast<std::size_t>(values.shape(1));
            const auto channels = static_cast<std::size_t>(values.shape(2));
            if (counts.ndim() != 1 || static_cast<std::size_t>(counts.shape(0)) != sessions ||
                t.ndim() != 1 || static_cast<std::size_t>(t.shape(0)) != sessions) {
                throw py::value_error("counts and t must have one entry per session");
            }
            if (require_matrix(out, channels, "out") != sessions) {
                throw py::value_error("out: must have one row per session");
            }
            if (!out.writeable()) throw py::value_error("out: array is read-only");
            const std::int32_t* n = counts.data();
            for (std::size_t s = 0; s < sessions; ++s) {
                if (n[s] < 0 || static_cast<std::size_t>(n[s]) > capacity) {
                    throw py::value_error("counts[" + std::to_string(s) + "] out of range");
                }
            }
            const double* tp = times.data();
            const float* vp = values.data();
            const double* now = t.data();
            float* dst = out.mutable_data();
            // Safe without the GIL: only raw buffers of arrays kept alive by the caller's
            // references (and the keys struct) are read or written; no Python object is touched.
            py::gil_scoped_release release;
            sample_curves(tp, vp, n, now, sessions, capacity, channels, dst);
        },
        py::arg("keys"), py::arg("t").noconvert(), py::arg("out").noconvert(),
        "Sample each session's keyframes (a CurveKeys, read by name) at its own time into out "
        "(S, C); see curves.hpp.");
}

}  // namespace avatar_engine::bindings
