// pybind11 binding of the retarget kernel family (native/include/avatar_engine/retarget.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "array_checks.hpp"
#include "avatar_engine/retarget.hpp"
#include "registers.hpp"

namespace avatar_engine::bindings {

namespace {

// `arrays` is a RetargetArrays (avatar_engine/kernels/retarget.py), read by field name.
RetargetTables make_tables(const py::object& arrays) {
    const auto n_inputs = arrays.attr("n_inputs").cast<std::size_t>();
    RetargetTables t;
    t.n_inputs = n_inputs;
    t.gain = table<float>(arrays, "gain");
    t.n_outputs = t.gain.size();
    t.indptr = table<std::int32_t>(arrays, "indptr");
    t.indices = table<std::int32_t>(arrays, "indices");
    t.weights = table<float>(arrays, "weights");
    t.offset = table<float>(arrays, "offset");
    t.lower = table<float>(arrays, "lower");
    t.upper = table<float>(arrays, "upper");
    t.exclusive = table<std::int32_t>(arrays, "exclusive");
    // The kernel trusts these invariants; check them once here instead of per call.
    const auto m = t.n_outputs;
    if (t.indptr.size() != m + 1 || t.offset.size() != m || t.lower.size() != m ||
        t.upper.size() != m || t.indices.size() != t.weights.size() ||
        t.exclusive.size() % 2 != 0 || t.indptr.front() != 0 ||
        static_cast<std::size_t>(t.indptr.back()) != t.indices.size()) {
        throw py::value_error("RetargetPlan: inconsistent table sizes");
    }
    for (std::size_t i = 0; i < m; ++i) {
        if (t.indptr[i] > t.indptr[i + 1]) throw py::value_error("RetargetPlan: indptr not sorted");
    }
    for (auto idx : t.indices) {
        if (idx < 0 || static_cast<std::size_t>(idx) >= n_inputs)
            throw py::value_error("RetargetPlan: input index out of range");
    }
    for (auto idx : t.exclusive) {
        if (idx < 0 || static_cast<std::size_t>(idx) >= m)
            throw py::value_error("RetargetPlan: exclusive index out of range");
    }
    return t;
}

}  // namespace

void register_retarget(py::module_& m) {
    py::class_<RetargetTables>(m, "RetargetPlan",
                               "Retarget tables (a RetargetArrays, read by name) copied once "
                               "into C++; call with (in, out).")
        .def(py::init(&make_tables), py::arg("arrays"))
        .def_readonly("n_inputs", &RetargetTables::n_inputs)
        .def_readonly("n_outputs", &RetargetTables::n_outputs)
        .def(
            "__call__",
            [](const RetargetTables& t, const F32Array& in, F32Array& out) -> std::ptrdiff_t {
                const std::size_t sessions = require_matrix(in, t.n_inputs, "weights");
                if (require_matrix(out, t.n_outputs, "out") != sessions) {
                    throw py::value_error("out: must have as many rows as weights");
                }
                if (!out.writeable()) throw py::value_error("out: array is read-only");
                const float* src = in.data();
                float* dst = out.mutable_data();
                // Safe without the GIL: only raw buffers of arrays kept alive by the caller's
                // references are touched, and the tables are immutable after construction.
                py::gil_scoped_release release;
                return retarget(t, src, sessions, dst);
            },
            py::arg("weights").noconvert(), py::arg("out").noconvert(),
            "Retarget rows of `weights` into `out`; returns -1, or the flat index of the first "
            "non-finite input (then `out` is untouched).");
}

}  // namespace avatar_engine::bindings
