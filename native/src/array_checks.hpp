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

// Kernel state is passed as one struct (a Python NamedTuple or dataclass) whose arrays the
// binding reads by name, so no argument order is a contract between Python and C++. The
// array must already have the dtype and layout (no silent copy: a kernel writing into a copy
// would lose its output), `rows` x `width` elements, and be writeable if the kernel writes it.
enum class Access { kRead, kWrite };

// The array field `name` of a state or inputs struct, with exactly the dtype and layout of
// `Array` (a py::array_t<T, c_style>); shape checks are the caller's.
template <typename Array>
Array strict(const py::handle& state, const char* name) {
    const py::object obj = state.attr(name);
    if (!Array::check_(obj)) {
        using T = typename Array::value_type;
        throw py::type_error(std::string(name) + ": expected a C-contiguous " +
                             py::str(py::dtype::of<T>()).cast<std::string>() + " array");
    }
    return py::reinterpret_borrow<Array>(obj);
}

template <typename T>
T* field(const py::handle& state, const char* name, std::size_t rows, std::size_t width,
         Access access) {
    const auto a = strict<py::array_t<T, py::array::c_style>>(state, name);
    if (static_cast<std::size_t>(a.size()) != rows * width ||
        (a.ndim() > 1 && static_cast<std::size_t>(a.shape(0)) != rows)) {
        throw py::value_error(std::string(name) + ": expected " + std::to_string(rows) +
                              " rows of " + std::to_string(width));
    }
    if (access == Access::kWrite && !a.writeable()) {
        throw py::value_error(std::string(name) + ": array is read-only");
    }
    // The state struct holds a reference to the array for the whole call, so the pointer
    // outlives `a`.
    return const_cast<T*>(a.data());
}

// Tables (bound once per plan) may be converted on the way in: they are copied anyway.
template <typename T>
using Input = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <typename T>
std::vector<T> to_vector(const Input<T>& a) {
    return std::vector<T>(a.data(), a.data() + a.size());
}

// The table field `name` of a tables struct (read by name), copied into a vector.
template <typename T>
std::vector<T> table(const py::handle& tables, const char* name) {
    return to_vector(tables.attr(name).cast<Input<T>>());
}

}  // namespace avatar_engine::bindings
