// The capture receivers' batch read (src/avatar_engine/ingest/recv_batch.py): every datagram
// waiting on a UDP socket read with one recvmmsg(), the GIL released, into preallocated rows;
// and the admission of a batch over the senders' columns (src/avatar_engine/ingest/admission.py
// is the reference: the same loops in Python, held together by a parity test).
//
// The Python reference with the same contract is recv_batch_reference: datagram i lands in
// buf[i, :sizes[i]] (cut to the row), the list returned holds each sender's address as Python's
// socket module gives it, an empty list means nothing was waiting, and an error is raised only
// when no datagram came before it (recvmmsg reports a later one on the next call).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <string>
#include <cstring>
#include <vector>

#include "array_checks.hpp"
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

namespace {

using Int64s = py::array_t<std::int64_t, py::array::c_style>;
using Bytes = py::array_t<std::uint8_t, py::array::c_style>;

// The batch's datagram or frame indices into the table's rows, checked against the table size.
const std::int64_t* batch_rows(const Int64s& rows, std::size_t size, const char* what) {
    if (rows.ndim() != 1) throw py::value_error(std::string(what) + ": rows must be 1-D");
    const std::int64_t* r = rows.data();
    for (py::ssize_t i = 0; i < rows.shape(0); ++i) {
        if (r[i] < 0 || static_cast<std::size_t>(r[i]) >= size)
            throw py::index_error(std::string(what) + ": a row outside the table");
    }
    return r;
}

std::uint8_t* batch_out(Bytes& out, py::ssize_t n, const char* what) {
    if (out.ndim() != 1 || out.shape(0) < n)
        throw py::value_error(std::string(what) + ": the output needs a slot per entry");
    return out.mutable_data();
}

// TokenBucket.take(now) on one column entry (src/avatar_engine/ingest/limits.py).
inline bool take(double& tokens, double& last, double rate, double burst, double now) {
    const double elapsed = now - last;
    if (elapsed > 0) {
        tokens = std::min(burst, tokens + elapsed * rate);
        last = now;
    }
    if (tokens >= 1.0) {
        tokens -= 1.0;
        return true;
    }
    return false;
}

// The status of each datagram: ADMITTED, TOO_LARGE, NOT_HEARD, RATE_LIMITED in admission.py.
enum Status : std::uint8_t { kAdmitted = 0, kTooLarge = 1, kNotHeard = 2, kRateLimited = 3 };

std::int64_t admit_datagrams(const py::handle& table, Int64s rows, Int64s sizes, Bytes heard,
                             std::int64_t max_size, double now, Bytes status) {
    const auto size = table.attr("size").cast<std::size_t>();
    const std::int64_t* r = batch_rows(rows, size, "admit_datagrams");
    const py::ssize_t n = rows.shape(0);
    if (sizes.ndim() != 1 || sizes.shape(0) < n || heard.ndim() != 1 || heard.shape(0) < n)
        throw py::value_error("admit_datagrams: sizes and heard need a slot per datagram");
    std::uint8_t* out = batch_out(status, n, "admit_datagrams");
    const double rate = table.attr("packet_rate").cast<double>();
    const double burst = table.attr("packet_burst").cast<double>();
    auto* tokens = field<double>(table, "packet_tokens", size, 1, Access::kWrite);
    auto* last = field<double>(table, "packet_last", size, 1, Access::kWrite);
    auto* packets = field<std::int64_t>(table, "packets", size, 1, Access::kWrite);
    auto* bytes = field<std::int64_t>(table, "bytes", size, 1, Access::kWrite);
    auto* seen = field<double>(table, "last_seen", size, 1, Access::kWrite);
    auto* used = field<std::int64_t>(table, "used", size, 1, Access::kWrite);
    std::int64_t seq = table.attr("seq").cast<std::int64_t>();
    const std::int64_t* length = sizes.data();
    const std::uint8_t* hear = heard.data();
    std::int64_t admitted = 0;
    for (py::ssize_t i = 0; i < n; ++i) {
        const auto p = static_cast<std::size_t>(r[i]);
        packets[p] += 1;
        bytes[p] += length[i];
        seen[p] = now;
        used[p] = seq++;
        if (length[i] > max_size) {
            out[i] = kTooLarge;
        } else if (!hear[i]) {
            out[i] = kNotHeard;
        } else {
            out[i] = take(tokens[p], last[p], rate, burst, now) ? kAdmitted : kRateLimited;
        }
        admitted += out[i] == kAdmitted;
    }
    table.attr("seq") = seq;
    return admitted;
}

std::int64_t take_frames(const py::handle& table, Int64s rows, double now, Bytes ok) {
    const auto size = table.attr("size").cast<std::size_t>();
    const std::int64_t* r = batch_rows(rows, size, "take_frames");
    const py::ssize_t n = rows.shape(0);
    std::uint8_t* out = batch_out(ok, n, "take_frames");
    const double rate = table.attr("frame_rate").cast<double>();
    const double burst = table.attr("frame_burst").cast<double>();
    auto* tokens = field<double>(table, "frame_tokens", size, 1, Access::kWrite);
    auto* last = field<double>(table, "frame_last", size, 1, Access::kWrite);
    std::int64_t got = 0;
    for (py::ssize_t i = 0; i < n; ++i) {
        const auto p = static_cast<std::size_t>(r[i]);
        out[i] = take(tokens[p], last[p], rate, burst, now) ? 1 : 0;
        got += out[i];
    }
    return got;
}

void count_frames(const py::handle& table, Int64s rows, double now, double window) {
    const auto size = table.attr("size").cast<std::size_t>();
    const std::int64_t* r = batch_rows(rows, size, "count_frames");
    auto* frames = field<std::int64_t>(table, "frames", size, 1, Access::kWrite);
    auto* start = field<double>(table, "window_start", size, 1, Access::kWrite);
    auto* count = field<std::int64_t>(table, "window_count", size, 1, Access::kWrite);
    auto* rate = field<double>(table, "window_rate", size, 1, Access::kWrite);
    for (py::ssize_t i = 0; i < rows.shape(0); ++i) {
        const auto p = static_cast<std::size_t>(r[i]);
        frames[p] += 1;  // SourceStats.frames_at(now, 1)
        if (std::isnan(start[p])) start[p] = now;
        const double elapsed = now - start[p];
        if (elapsed >= window) {
            rate[p] = static_cast<double>(count[p]) / elapsed;
            start[p] = now;
            count[p] = 0;
        }
        count[p] += 1;
    }
}

// Rows of capture values held to their range, in place (src/avatar_engine/ingest/range_check.py
// is the reference, held to this by a parity test): value j of a row is out of range when
// |v - center[j]| > half[j] in float32 (NaN never is); counts[i] gets row i's out-of-range
// values and the total is returned; when it is not 0, every value of every row is clipped to
// [center - half, center + half] as np.clip does.
std::int64_t clamp_rows(py::array_t<float, py::array::c_style> values, const F32Array& center,
                        const F32Array& half, py::array_t<std::int64_t, py::array::c_style> counts) {
    if (values.ndim() != 2) throw py::value_error("clamp_rows: values must be 2-D float32");
    const auto n = values.shape(0);
    const auto width = values.shape(1);
    if (center.ndim() != 1 || half.ndim() != 1 || center.shape(0) != width ||
        half.shape(0) != width)
        throw py::value_error("clamp_rows: center and half need one value per column");
    if (counts.ndim() != 1 || counts.shape(0) < n)
        throw py::value_error("clamp_rows: counts needs one entry per row");
    if (!values.writeable() || !counts.writeable())
        throw py::value_error("clamp_rows: values and counts must be writeable");
    float* v = values.mutable_data();
    const float* c = center.data();
    const float* h = half.data();
    std::int64_t* out = counts.mutable_data();
    std::int64_t total = 0;
    for (py::ssize_t i = 0; i < n; ++i) {
        std::int64_t row = 0;
        for (py::ssize_t j = 0; j < width; ++j) row += std::fabs(v[i * width + j] - c[j]) > h[j];
        out[i] = row;
        total += row;
    }
    if (total == 0) return 0;
    std::vector<float> lower(static_cast<std::size_t>(width)), upper(lower.size());
    for (py::ssize_t j = 0; j < width; ++j) {
        lower[static_cast<std::size_t>(j)] = c[j] - h[j];
        upper[static_cast<std::size_t>(j)] = c[j] + h[j];
    }
    // As numpy's (vectorised) clip: NaN stays, a value equal to a bound becomes the bound (so
    // -0.0 held to [0, 1] is 0.0).
    for (py::ssize_t i = 0; i < n; ++i)
        for (py::ssize_t j = 0; j < width; ++j) {
            float& x = v[i * width + j];
            if (std::isnan(x)) continue;
            const float lo = lower[static_cast<std::size_t>(j)];
            const float hi = upper[static_cast<std::size_t>(j)];
            x = x > lo ? x : lo;
            x = x < hi ? x : hi;
        }
    return total;
}

}  // namespace

void register_ingest(py::module_& m) {
    m.def("admit_datagrams", &admit_datagrams, py::arg("table"), py::arg("rows"), py::arg("sizes"),
          py::arg("heard"), py::arg("max_size"), py::arg("now"), py::arg("status"),
          "Steps 1-3 of the receive path for a batch over a PeerTable's columns, in order: count "
          "each datagram, then status 0 admitted, 1 too large, 2 sender not heard, 3 rate "
          "limited (the packet bucket). Returns how many were admitted.");
    m.def("take_frames", &take_frames, py::arg("table"), py::arg("rows"), py::arg("now"),
          py::arg("ok"), "One frame token per entry of rows, in order; ok[i] says who got one. Returns how many "
          "did.");
    m.def("clamp_rows", &clamp_rows, py::arg("values").noconvert(),
          py::arg("center").noconvert(), py::arg("half").noconvert(),
          py::arg("counts").noconvert(),
          "Rows of capture values held to center +- half in place: counts[i] the values of row "
          "i out of range (float32 |v - center| > half), the total returned; when it is not 0 "
          "every value is clipped as np.clip does.");
    m.def("count_frames", &count_frames, py::arg("table"), py::arg("rows"), py::arg("now"),
          py::arg("window"), "One delivered frame per entry of rows: counted, rate windows moved.");
#ifdef __linux__
    m.def("recv_batch", &recv_batch, py::arg("fd"), py::arg("buf"), py::arg("sizes"),
          "Every datagram waiting on fd (at most one per row of buf) with one recvmmsg(), the GIL "
          "released: rows filled, sizes set, the senders' addresses returned.");
#else
    (void)m;  // no recvmmsg: the Python reference loop serves
#endif
}

}  // namespace avatar_engine::bindings
