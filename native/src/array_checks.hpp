// Shape and dtype checks shared by the bindings: kernels write into caller-owned buffers, so a
// mismatch must be an exception before any pointer is touched, never a silent copy.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace avatar_engine::bindings {

namespace py = pybind11;

using F32Array = py::array_t<float, py::array::c_style>;
using I32Array = py::array_t<std::int32_t, py::array::c_style>;

// Checks a (rows, cols) C-contiguous buffer; cols is required, rows is returned.
inline std::size_t require_matrix(const F32Array& a, std::size_t cols, const char* what) {
    if (a.ndim() != 2 || static_cast<std::size_t>(a.shape(1)) != cols) {
        throw py::value_error(std::string(what) + ": expected a float32 array of shape (S, " +
                              std::to_string(cols) + ")");
    }
    return static_cast<std::size_t>(a.shape(0));
}

template <typename T>
std::vector<T> to_vector(const py::array_t<T, py::array::c_style | py::array::forcecast>& a) {
    return std::vector<T>(a.data(), a.data() + a.size());
}

}  // namespace avatar_engine::bindings
