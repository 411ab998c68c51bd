// The capture receivers' batch read (src/avatar_engine/ingest/recv_batch.py): every datagram
// waiting on a UDP socket read with one recvmmsg(), the GIL released, into preallocated rows.
//
// The Python reference with the same contract is recv_batch_reference: datagram i lands in
// buf[i, :sizes[i]] (cut to the row), the list returned holds each sender's address as Python's
// socket module gives it, an empty list means nothing was waiting, and an error is raised only
// when no datagram came before it (recvmmsg reports a later one on the next call).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "registers.hpp"

#ifdef __linux__
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#endif

namespace py = pybind11;

namespace avatar_engine::bindings {

#ifdef __linux__
namespace {

// (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6: what socket.recvfrom says.
py::tuple address_of(const sockaddr_storage& from, socklen_t length) {
    char host[NI_MAXHOST] = {0};
    if (from.ss_family == AF_INET) {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(&from);
        ::inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        return py::make_tuple(py::str(host), ntohs(in4->sin_port));
    }
    if (from.ss_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&from);
        ::getnameinfo(reinterpret_cast<const sockaddr*>(&from), length, host, sizeof(host),
                      nullptr, 0, NI_NUMERICHOST);
        return py::make_tuple(py::str(host), ntohs(in6->sin6_port), ntohl(in6->sin6_flowinfo),
                              in6->sin6_scope_id);
    }
    return py::make_tuple();
}

py::list recv_batch(int fd, py::array_t<std::uint8_t, py::array::c_style> buf,
                    py::array_t<std::int64_t, py::array::c_style> sizes) {
    if (buf.ndim() != 2) throw py::value_error("recv_batch: buf must be a 2-D uint8 array");
    if (sizes.ndim() != 1 || sizes.shape(0) < buf.shape(0))
        throw py::value_error("recv_batch: sizes must be 1-D with a slot per row of buf");
    const auto rows = static_cast<std::size_t>(buf.shape(0));
    const auto width = static_cast<std::size_t>(buf.shape(1));
    std::uint8_t* data = buf.mutable_data();
    std::int64_t* size = sizes.mutable_data();
    std::vector<mmsghdr> headers(rows);
    std::vector<iovec> iov(rows);
    std::vector<sockaddr_storage> from(rows);
    for (std::size_t i = 0; i < rows; ++i) {
        iov[i].iov_base = data + i * width;
        iov[i].iov_len = width;
        std::memset(&headers[i], 0, sizeof(mmsghdr));
        headers[i].msg_hdr.msg_iov = &iov[i];
        headers[i].msg_hdr.msg_iovlen = 1;
        headers[i].msg_hdr.msg_name = &from[i];
        headers[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    }
    int got;
    int error = 0;
    {
        // Safe without the GIL: raw buffers of arrays the caller's frame keeps alive.
        py::gil_scoped_release release;
        do {
            got = ::recvmmsg(fd, headers.data(), static_cast<unsigned>(rows), MSG_DONTWAIT,
                             nullptr);
        } while (got < 0 && errno == EINTR);
        if (got < 0) error = errno;
    }
    py::list addresses;
    if (got < 0) {
        if (error == EAGAIN || error == EWOULDBLOCK) return addresses;
        errno = error;
        PyErr_SetFromErrno(PyExc_OSError);
        throw py::error_already_set();
    }
    for (int i = 0; i < got; ++i) {
        size[i] = static_cast<std::int64_t>(headers[i].msg_len);
        addresses.append(address_of(from[i], headers[i].msg_hdr.msg_namelen));
    }
    return addresses;
}

}  // namespace
#endif

void register_ingest(py::module_& m) {
#ifdef __linux__
    m.def("recv_batch", &recv_batch, py::arg("fd"), py::arg("buf"), py::arg("sizes"),
          "Every datagram waiting on fd (at most one per row of buf) with one recvmmsg(), the GIL "
          "released: rows filled, sizes set, the senders' addresses returned.");
#else
    (void)m;  // no recvmmsg: the Python reference loop serves
#endif
}

}  // namespace avatar_engine::bindings
