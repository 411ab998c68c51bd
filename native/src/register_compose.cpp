// pybind11 binding of the layer compositor (native/include/avatar_engine/compose.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "array_checks.hpp"
#include "avatar_engine/compose.hpp"
#include "registers.hpp"

namespace avatar_engine::bindings {

namespace {

using I8Array = py::array_t<std::int8_t, py::array::c_style>;
using U8Array = py::array_t<std::uint8_t, py::array::c_style>;

ComposeTables make_tables(const py::object& tables) {
    const auto n_regions = tables.attr("n_regions").cast<std::size_t>();
    ComposeTables t;
    t.region = table<std::int8_t>(tables, "region");
    t.n = t.region.size();
    t.n_regions = n_regions;
    t.lower = table<float>(tables, "lower");
    t.upper = table<float>(tables, "upper");
    t.exclusive = table<std::int32_t>(tables, "exclusive");
    t.couple = table<std::int32_t>(tables, "couple");
    t.vcol = table<float>(tables, "vcap");  // vcol, or inf where the table gives none
    // The kernel trusts these invariants; check them once here instead of per call.
    if (t.lower.size() != t.n || t.upper.size() != t.n || t.vcol.size() != t.n ||
        t.exclusive.size() % 2 != 0 ||
        t.couple.size() % 2 != 0) {
        throw py::value_error("ComposePlan: inconsistent table sizes");
    }
    for (auto r : t.region) {
        if (r < 0 || static_cast<std::size_t>(r) >= n_regions)
            throw py::value_error("ComposePlan: region code out of range");
    }
    t.build_runs();
    for (const auto* v : {&t.exclusive, &t.couple}) {
        for (auto idx : *v) {
            if (idx < 0 || static_cast<std::size_t>(idx) >= t.n)
                throw py::value_error("ComposePlan: pair index out of range");
        }
    }
    return t;
}

void call(const ComposeTables& t, const py::object& state, double dt, const py::object& inputs,
          F32Array& out) {
    const auto layers = strict<F32Array>(inputs, "layers");
    const auto weight = strict<F32Array>(inputs, "weight");
    const auto mode = strict<I8Array>(inputs, "mode");
    const auto emask = strict<F32Array>(inputs, "emask");
    const auto couple = strict<F32Array>(inputs, "couple");
    const auto vmax = strict<F32Array>(inputs, "vmax");
    auto prev = strict<F32Array>(state, "prev");
    auto primed = strict<U8Array>(state, "primed");
    if (layers.ndim() != 3 || static_cast<std::size_t>(layers.shape(2)) != t.n)
        throw py::value_error("layers: expected a float32 array of shape (L, S, " +
                              std::to_string(t.n) + ")");
    const auto n_layers = static_cast<std::size_t>(layers.shape(0));
    const auto layer_rows = static_cast<std::size_t>(layers.shape(1));
    if (out.ndim() != 2) throw py::value_error("out: expected shape (S, N)");
    const auto sessions = static_cast<std::size_t>(out.shape(0));
    if (layer_rows < sessions) throw py::value_error("layers: fewer rows than out");
    if (n_layers == 0) throw py::value_error("layers: need at least one layer");
    if (weight.ndim() != 3 || static_cast<std::size_t>(weight.shape(0)) != sessions ||
        static_cast<std::size_t>(weight.shape(1)) != n_layers ||
        static_cast<std::size_t>(weight.shape(2)) != t.n_regions)
        throw py::value_error("weight: expected shape (S, L, R)");
    if (mode.ndim() != 2 || static_cast<std::size_t>(mode.shape(0)) != sessions ||
        static_cast<std::size_t>(mode.shape(1)) != n_layers)
        throw py::value_error("mode: expected shape (S, L)");
    const std::int8_t* pm = mode.data();
    for (std::size_t i = 0; i < sessions * n_layers; ++i) {
        if (pm[i] < 0 || pm[i] > 3) throw py::value_error("mode: values must be 0..3");
    }
    if (require_matrix(emask, t.n, "emask") != sessions ||
        require_matrix(prev, t.n, "prev") != sessions ||
        require_matrix(out, t.n, "out") != sessions)
        throw py::value_error("emask/prev/out: expected shape (S, N)");
    if (couple.size() != static_cast<py::ssize_t>(sessions))
        throw py::value_error("couple: expected shape (S,)");
    if (vmax.size() != static_cast<py::ssize_t>(sessions * t.n_regions))
        throw py::value_error("vmax: expected shape (S, R)");
    if (primed.size() != static_cast<py::ssize_t>(sessions))
        throw py::value_error("primed: expected shape (S,)");
    if (!out.writeable() || !prev.writeable() || !primed.writeable())
        throw py::value_error("out/prev/primed: array is read-only");
    ComposeArgs a{layers.data(), n_layers, layer_rows, weight.data(), pm, emask.data(), couple.data(),
                  vmax.data(), dt, prev.mutable_data(), primed.mutable_data(),
                  out.mutable_data(), sessions};
    std::vector<double> scratch(t.n + 1);
    // Safe without the GIL: only raw buffers of arrays the caller keeps alive are touched,
    // the tables are immutable after construction, and the scratch row is ours.
    py::gil_scoped_release release;
    compose(t, a, scratch.data());
}

ScatterTables make_scatter(const py::object& tables) {
    const auto n_in = tables.attr("n_in").cast<std::size_t>();
    const auto n_out = tables.attr("n_out").cast<std::size_t>();
    ScatterTables t;
    t.n_in = n_in;
    t.n_out = n_out;
    t.rows = table<std::int32_t>(tables, "rows");
    t.cols = table<std::int32_t>(tables, "cols");
    t.weights = table<float>(tables, "weights");
    if (t.rows.size() != t.weights.size() || t.cols.size() != t.weights.size())
        throw py::value_error("ScatterPlan: rows, cols and weights differ in length");
    for (std::size_t k = 0; k < t.weights.size(); ++k) {
        if (t.rows[k] < 0 || static_cast<std::size_t>(t.rows[k]) >= n_out || t.cols[k] < 0 ||
            static_cast<std::size_t>(t.cols[k]) >= n_in)
            throw py::value_error("ScatterPlan: index out of range");
    }
    return t;
}

void scatter_call(const ScatterTables& t, const F32Array& in, F32Array& out) {
    const std::size_t sessions = require_matrix(in, t.n_in, "in");
    if (require_matrix(out, t.n_out, "out") != sessions)
        throw py::value_error("out: must have as many rows as in");
    if (!out.writeable()) throw py::value_error("out: array is read-only");
    const float* src = in.data();
    float* dst = out.mutable_data();
    // Safe without the GIL: raw buffers of caller-owned arrays, immutable tables.
    py::gil_scoped_release release;
    scatter_map(t, src, sessions, dst);
}

}  // namespace

void register_compose(py::module_& m) {
    py::class_<ScatterTables>(m, "ScatterPlan",
                              "A small sparse map (a ScatterTables, read by name) applied by "
                              "scatter; call with (in, out).")
        .def(py::init(&make_scatter), py::arg("tables"))
        .def_readonly("n_in", &ScatterTables::n_in)
        .def_readonly("n_out", &ScatterTables::n_out)
        .def("__call__", &scatter_call, py::arg("in").noconvert(), py::arg("out").noconvert(),
             "out[s] = 0, then out[s, rows[k]] += weights[k] * in[s, cols[k]] for every k.");
    py::class_<ComposeTables>(m, "ComposePlan",
                              "Compositor tables (a ComposeTables, read by name) copied once "
                              "into C++; call per tick with (state, dt, inputs, out).")
        .def(py::init(&make_tables), py::arg("tables"))
        .def_readonly("n", &ComposeTables::n)
        .def_readonly("n_regions", &ComposeTables::n_regions)
        .def("__call__", &call, py::arg("state"), py::arg("dt"), py::arg("inputs"),
             py::arg("out").noconvert(),
             "Blend the first out.shape[0] rows of each layer into `out`, apply the constraints, "
             "update the state's `prev`/`primed` (ComposeState, ComposeInputs: read by name).");
}

}  // namespace avatar_engine::bindings
