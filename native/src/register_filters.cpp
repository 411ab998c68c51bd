// pybind11 binding of the smoothing kernels (native/include/avatar_engine/filters.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "array_checks.hpp"
#include "avatar_engine/filters.hpp"
#include "registers.hpp"

namespace avatar_engine::bindings {

namespace {

void require_size(const py::array& a, std::size_t size, const char* what) {
    if (static_cast<std::size_t>(a.size()) != size) {
        throw py::value_error(std::string(what) + ": expected " + std::to_string(size) +
                              " elements, got " + std::to_string(a.size()));
    }
}

void require_writeable(const py::array& a, const char* what) {
    if (!a.writeable()) throw py::value_error(std::string(what) + ": array is read-only");
}

void one_euro_py(const py::object& state, const F32Array& dt, const F32Array& x,
                 F32Array& out) {
    if (x.ndim() != 2) throw py::value_error("x: expected a float32 array of shape (S, N)");
    const auto sessions = static_cast<std::size_t>(x.shape(0));
    const auto n = static_cast<std::size_t>(x.shape(1));
    if (require_matrix(out, n, "out") != sessions)
        throw py::value_error("out: must have the shape of x");
    require_writeable(out, "out");
    require_size(dt, sessions, "dt");
    const auto min_cutoff = strict<F32Array>(state, "min_cutoff");
    if (min_cutoff.ndim() != 2 || static_cast<std::size_t>(min_cutoff.shape(0)) != sessions)
        throw py::value_error("min_cutoff: expected shape (S, R)");
    const auto n_regions = static_cast<std::size_t>(min_cutoff.shape(1));
    if (n_regions > kMaxRegions) throw py::value_error("min_cutoff: too many regions");
    constexpr Access R = Access::kRead;
    constexpr Access W = Access::kWrite;
    OneEuroState st{};
    st.xhat = field<float>(state, "xhat", sessions, n, W);
    st.dxhat = field<float>(state, "dxhat", sessions, n, W);
    st.primed = field<std::uint8_t>(state, "primed", sessions, 1, W);
    st.region = field<std::int8_t>(state, "region", 1, n, R);
    st.min_cutoff = min_cutoff.data();
    st.beta = field<float>(state, "beta", sessions, n_regions, R);
    st.d_cutoff = field<float>(state, "d_cutoff", sessions, n_regions, R);
    st.sessions = sessions;
    st.n = n;
    st.n_regions = n_regions;
    for (std::size_t c = 0; c < n; ++c) {
        if (st.region[c] < 0 || static_cast<std::size_t>(st.region[c]) >= n_regions)
            throw py::value_error("region: code out of range");
    }
    const float* pdt = dt.data();
    const float* px = x.data();
    float* po = out.mutable_data();
    // Safe without the GIL: only raw buffers of arrays the caller (and the state struct) keep
    // alive are touched.
    py::gil_scoped_release release;
    one_euro(st, pdt, px, po);
}

void spring_py(const py::object& state, double dt, const F32Array& target) {
    if (target.ndim() != 2) throw py::value_error("target: expected a float32 array (S, N)");
    const auto sessions = static_cast<std::size_t>(target.shape(0));
    const auto n = static_cast<std::size_t>(target.shape(1));
    SpringState st{};
    st.pos = field<float>(state, "pos", sessions, n, Access::kWrite);
    st.vel = field<float>(state, "vel", sessions, n, Access::kWrite);
    st.omega = field<float>(state, "omega", sessions, 1, Access::kRead);
    st.sessions = sessions;
    st.n = n;
    const float* pt = target.data();
    // Safe without the GIL: only raw buffers of arrays the caller (and the state struct) keep
    // alive are touched.
    py::gil_scoped_release release;
    spring_step(st, dt, pt);
}

}  // namespace

void register_filters(py::module_& m) {
    m.def("one_euro", &one_euro_py, py::arg("state"), py::arg("dt").noconvert(),
          py::arg("x").noconvert(), py::arg("out").noconvert(),
          "One Euro filter over S x N rows, in place on the state (a OneEuroState, read by "
          "name); `out` may alias `x`.");
    m.def("spring_step", &spring_py, py::arg("state"), py::arg("dt"),
          py::arg("target").noconvert(),
          "Advance S x N critically damped springs (a SpringState, read by name) by dt "
          "seconds towards `target`, in place.");
}

}  // namespace avatar_engine::bindings
