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

using I8Array = py::array_t<std::int8_t, py::array::c_style>;
using U8Array = py::array_t<std::uint8_t, py::array::c_style>;

void require_size(const py::array& a, std::size_t size, const char* what) {
    if (static_cast<std::size_t>(a.size()) != size) {
        throw py::value_error(std::string(what) + ": expected " + std::to_string(size) +
                              " elements, got " + std::to_string(a.size()));
    }
}

void require_writeable(const py::array& a, const char* what) {
    if (!a.writeable()) throw py::value_error(std::string(what) + ": array is read-only");
}

void one_euro_py(const F32Array& x, F32Array& out, F32Array& xhat, F32Array& dxhat,
                 U8Array& primed, const F32Array& dt, const I8Array& region,
                 const F32Array& min_cutoff, const F32Array& beta, const F32Array& d_cutoff) {
    if (x.ndim() != 2) throw py::value_error("x: expected a float32 array of shape (S, N)");
    const auto sessions = static_cast<std::size_t>(x.shape(0));
    const auto n = static_cast<std::size_t>(x.shape(1));
    for (const F32Array* a : {&out, &xhat, &dxhat}) {
        if (require_matrix(*a, n, "out/xhat/dxhat") != sessions)
            throw py::value_error("out/xhat/dxhat: must have the shape of x");
        require_writeable(*a, "out/xhat/dxhat");
    }
    require_size(primed, sessions, "primed");
    require_writeable(primed, "primed");
    require_size(dt, sessions, "dt");
    require_size(region, n, "region");
    if (min_cutoff.ndim() != 2 || static_cast<std::size_t>(min_cutoff.shape(0)) != sessions)
        throw py::value_error("min_cutoff: expected shape (S, R)");
    const auto n_regions = static_cast<std::size_t>(min_cutoff.shape(1));
    if (n_regions > kMaxRegions) throw py::value_error("min_cutoff: too many regions");
    require_size(beta, sessions * n_regions, "beta");
    require_size(d_cutoff, sessions * n_regions, "d_cutoff");
    const std::int8_t* reg = region.data();
    for (std::size_t c = 0; c < n; ++c) {
        if (reg[c] < 0 || static_cast<std::size_t>(reg[c]) >= n_regions)
            throw py::value_error("region: code out of range");
    }
    const float* px = x.data();
    float* po = out.mutable_data();
    float* ph = xhat.mutable_data();
    float* pd = dxhat.mutable_data();
    std::uint8_t* pp = primed.mutable_data();
    const float* pdt = dt.data();
    const float* pmc = min_cutoff.data();
    const float* pbt = beta.data();
    const float* pdc = d_cutoff.data();
    // Safe without the GIL: only raw buffers of arrays the caller keeps alive are touched.
    py::gil_scoped_release release;
    one_euro(px, po, ph, pd, pp, pdt, reg, pmc, pbt, pdc, sessions, n, n_regions);
}

void spring_py(F32Array& pos, F32Array& vel, const F32Array& target, const F32Array& omega,
               double dt) {
    if (pos.ndim() != 2) throw py::value_error("pos: expected a float32 array of shape (S, N)");
    const auto sessions = static_cast<std::size_t>(pos.shape(0));
    const auto n = static_cast<std::size_t>(pos.shape(1));
    if (require_matrix(vel, n, "vel") != sessions || require_matrix(target, n, "target") != sessions)
        throw py::value_error("vel/target: must have the shape of pos");
    require_writeable(pos, "pos");
    require_writeable(vel, "vel");
    require_size(omega, sessions, "omega");
    float* pp = pos.mutable_data();
    float* pv = vel.mutable_data();
    const float* pt = target.data();
    const float* pw = omega.data();
    // Safe without the GIL: only raw buffers of arrays the caller keeps alive are touched.
    py::gil_scoped_release release;
    spring_step(pp, pv, pt, pw, dt, sessions, n);
}

}  // namespace

void register_filters(py::module_& m) {
    m.def("one_euro", &one_euro_py, py::arg("x").noconvert(), py::arg("out").noconvert(),
          py::arg("xhat").noconvert(), py::arg("dxhat").noconvert(),
          py::arg("primed").noconvert(), py::arg("dt").noconvert(),
          py::arg("region").noconvert(), py::arg("min_cutoff").noconvert(),
          py::arg("beta").noconvert(), py::arg("d_cutoff").noconvert(),
          "One Euro filter over S x N rows, in place on the state; `out` may alias `x`.");
    m.def("spring_step", &spring_py, py::arg("pos").noconvert(), py::arg("vel").noconvert(),
          py::arg("target").noconvert(), py::arg("omega").noconvert(), py::arg("dt"),
          "Advance S x N critically damped springs by dt seconds, in place.");
}

}  // namespace avatar_engine::bindings
