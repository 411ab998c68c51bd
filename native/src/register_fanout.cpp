// The stream fan-out's send loop (src/avatar_engine/server/fanout.py): one group's framed
// WebSocket message written to many sockets in one call, with the GIL released.
//
// Python decides which sockets may take a direct write (nothing waiting for that viewer) and
// hands the rest of each write to the viewer's transport; this loop only does the system
// calls, one non-blocking send() per socket, and reports what each one did. The numpy/Python
// reference with the same contract is avatar_engine.server.fanout.send_to_all_reference.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "registers.hpp"

#ifndef _WIN32
#include <sys/socket.h>
#include <sys/types.h>
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  // macOS: no such flag; Python ignores SIGPIPE anyway
#endif
#endif

namespace py = pybind11;

namespace avatar_engine::bindings {

#ifndef _WIN32
namespace {

// Per socket: bytes the kernel took (0..len), or -errno. One send() each (EINTR retried):
// a short write stays short, so the caller's transport sends the remainder in order.
py::array_t<std::int64_t> send_to_all(const py::buffer& wire,
                                      const py::array_t<std::int32_t, py::array::c_style>& fds) {
    const py::buffer_info data = wire.request();
    if (data.ndim != 1 || data.itemsize != 1)
        throw py::value_error("send_to_all: wire must be a 1-D byte buffer");
    if (fds.ndim() != 1) throw py::value_error("send_to_all: fds must be a 1-D int32 array");
    const auto n = static_cast<std::size_t>(fds.shape(0));
    py::array_t<std::int64_t> out(static_cast<py::ssize_t>(n));
    const auto* bytes = static_cast<const char*>(data.ptr);
    const auto size = static_cast<std::size_t>(data.size);
    const std::int32_t* fd = fds.data();
    std::int64_t* result = out.mutable_data();
    {
        // Safe without the GIL: raw buffers of objects the caller's frame keeps alive.
        py::gil_scoped_release release;
        for (std::size_t i = 0; i < n; ++i) {
            ssize_t sent;
            do {
                sent = ::send(fd[i], bytes, size, MSG_DONTWAIT | MSG_NOSIGNAL);
            } while (sent < 0 && errno == EINTR);
            result[i] = sent < 0 ? -static_cast<std::int64_t>(errno) : sent;
        }
    }
    return out;
}

}  // namespace
#endif

void register_fanout(py::module_& m) {
#ifndef _WIN32
    m.def("send_to_all", &send_to_all, py::arg("wire"), py::arg("fds"),
          "One non-blocking send() of wire to each socket fd (GIL released): per fd the bytes "
          "sent, or -errno.");
#else
    (void)m;  // no POSIX send flags: the Python reference loop serves
#endif
}

}  // namespace avatar_engine::bindings
