// The stream fan-out's send loops (src/avatar_engine/server/fanout.py): one group's framed
// WebSocket message written to many sockets in one call, with the GIL released.
//
// send_group is the fan-out pass of one group: its viewers are indices into the process's
// table of direct links (a struct of arrays: descriptor, "blocked" bits, frames written
// directly). A viewer with no bit set takes one non-blocking send() and its counter goes up;
// every other one is returned to Python (blocked: its outbox takes the frame; a short or
// failed write: its transport sends the rest or reports the break). So a viewer that keeps up
// costs no Python work at all. send_to_all is the bare loop over descriptors (the floor the
// benchmark compares with). The Python references with the same contracts are
// avatar_engine.server.fanout.send_group_reference and send_to_all_reference.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "array_checks.hpp"
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

py::array_t<std::int64_t> int64_array(const std::vector<std::int64_t>& v) {
    py::array_t<std::int64_t> out(static_cast<py::ssize_t>(v.size()));
    std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
}

// One group's pass: see the file comment. Returns (blocked positions, failed positions, their
// results: bytes taken by a short write, or -errno), positions into ``members``.
py::tuple send_group(const py::buffer& wire,
                     const py::array_t<std::int32_t, py::array::c_style>& members,
                     const py::array_t<std::int32_t, py::array::c_style>& fds,
                     const py::array_t<std::uint8_t, py::array::c_style>& blocked,
                     py::array_t<std::int64_t, py::array::c_style>& sent) {
    const py::buffer_info data = wire.request();
    if (data.ndim != 1 || data.itemsize != 1)
        throw py::value_error("send_group: wire must be a 1-D byte buffer");
    if (members.ndim() != 1 || fds.ndim() != 1 || blocked.ndim() != 1 || sent.ndim() != 1)
        throw py::value_error("send_group: members and the table's arrays must be 1-D");
    const auto table = fds.shape(0);
    if (blocked.shape(0) != table || sent.shape(0) != table)
        throw py::value_error("send_group: the table's arrays must have one length");
    const auto n = static_cast<std::size_t>(members.shape(0));
    const std::int32_t* member = members.data();
    for (std::size_t i = 0; i < n; ++i)
        if (member[i] < -1 || member[i] >= table)
            throw py::value_error("send_group: a member is not in the table (nor -1)");
    std::vector<std::int64_t> skip, fail, result;
    const auto* bytes = static_cast<const char*>(data.ptr);
    const auto size = static_cast<std::size_t>(data.size);
    const std::int32_t* fd = fds.data();
    const std::uint8_t* bits = blocked.data();
    std::int64_t* count = sent.mutable_data();
    {
        // Safe without the GIL: raw buffers of arrays the caller keeps alive; nothing else
        // runs Python (the event loop's thread is here) to change the table meanwhile.
        py::gil_scoped_release release;
        for (std::size_t i = 0; i < n; ++i) {
            const std::int32_t k = member[i];
            if (k < 0 || bits[k] != 0) {
                skip.push_back(static_cast<std::int64_t>(i));
                continue;
            }
            ssize_t got;
            do {
                got = ::send(fd[k], bytes, size, MSG_DONTWAIT | MSG_NOSIGNAL);
            } while (got < 0 && errno == EINTR);
            count[k] += 1;
            if (got != static_cast<ssize_t>(size)) {
                fail.push_back(static_cast<std::int64_t>(i));
                result.push_back(got < 0 ? -static_cast<std::int64_t>(errno) : got);
            }
        }
    }
    return py::make_tuple(int64_array(skip), int64_array(fail), int64_array(result));
}

// What one thread of a send_groups pass found: positions into members it did not finish.
struct PassResult {
    std::vector<std::int64_t> skip, fail, result;
};

// The rows ``row % threads == part`` of one tick's pass (every row when threads is 1), in
// message order. A link's frames are all written by one thread, so they leave in order and its
// counter has one writer; a member with no link (-1) is part 0's.
struct GroupsPass {
    const std::vector<std::string>& wires;  // framed, one per entry of order
    const std::int64_t* order;
    std::size_t messages;
    const std::int64_t* start;
    const std::int32_t* member;
    const std::int32_t* fd;
    const std::uint8_t* bits;
    std::int64_t* count;
    std::int32_t threads;

    void run(std::int32_t part, PassResult& out) const {
        for (std::size_t g = 0; g < messages; ++g) {
            const std::int64_t k = order[g];
            const std::string& wire = wires[g];
            for (std::int64_t i = start[k]; i < start[k + 1]; ++i) {
                const std::int32_t r = member[i];
                if ((r < 0 ? 0 : r % threads) != part) continue;
                if (r < 0 || bits[r] != 0) {
                    out.skip.push_back(i);
                    continue;
                }
                ssize_t got;
                do {
                    got = ::send(fd[r], wire.data(), wire.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
                } while (got < 0 && errno == EINTR);
                count[r] += 1;
                if (got != static_cast<ssize_t>(wire.size())) {
                    out.fail.push_back(i);
                    out.result.push_back(got < 0 ? -static_cast<std::int64_t>(errno) : got);
                }
            }
        }
    }
};

// One unmasked, final, binary WebSocket frame (RFC 6455 5.2) around size bytes at data: what
// fanout.frame_header(size) + message is in Python.
std::string framed(const char* data, std::size_t size) {
    std::string wire;
    wire.reserve(size + 10);
    wire.push_back(static_cast<char>(0x82));
    if (size < 126) {
        wire.push_back(static_cast<char>(size));
    } else if (size < (1u << 16)) {
        wire.push_back(static_cast<char>(126));
        for (int shift = 8; shift >= 0; shift -= 8)
            wire.push_back(static_cast<char>((size >> shift) & 0xFF));
    } else {
        wire.push_back(static_cast<char>(127));
        for (int shift = 56; shift >= 0; shift -= 8)
            wire.push_back(static_cast<char>((static_cast<std::uint64_t>(size) >> shift) & 0xFF));
    }
    wire.append(data, size);
    return wire;
}

py::tuple merge_parts(std::vector<PassResult>& parts) {
    if (parts.size() == 1) {
        const PassResult& only = parts[0];
        return py::make_tuple(int64_array(only.skip), int64_array(only.fail),
                              int64_array(only.result));
    }
    std::vector<std::int64_t> skip;
    std::vector<std::pair<std::int64_t, std::int64_t>> failed;
    for (const PassResult& part : parts) {
        skip.insert(skip.end(), part.skip.begin(), part.skip.end());
        for (std::size_t j = 0; j < part.fail.size(); ++j)
            failed.emplace_back(part.fail[j], part.result[j]);
    }
    std::sort(skip.begin(), skip.end());
    std::sort(failed.begin(), failed.end());
    std::vector<std::int64_t> fail, result;
    for (const auto& [pos, got] : failed) {
        fail.push_back(pos);
        result.push_back(got);
    }
    return py::make_tuple(int64_array(skip), int64_array(fail), int64_array(result));
}

// A pass is split over threads only when each would write at least this many frames: a
// thread costs tens of microseconds to start, about ten sends on loopback.
constexpr py::ssize_t kMinSendsPerThread = 64;

// Every group of one tick in one pass, straight from the encoder's tick buffer: message k is
// payload[bounds[k]:bounds[k + 1]] (unframed; framed here once, not per viewer) and its viewers
// are members[starts[k]:starts[k + 1]] (each as in send_group); the messages sent are
// ``order`` (ascending). Positions returned are into ``members``, ascending (the caller maps
// them back to a message with ``starts``). One call and no Python object per group: with many
// one-viewer groups, the per-group Python of building the wires was most of the pass.
// ``threads`` > 1 splits the rows over that many threads (this one included): the kernel's
// send() is most of a frame's cost, and one thread's serial sends put the last viewer of 2,000
// 10-13 ms behind the first on a 2-core VM (docs/architecture.md, "Send threads").
py::tuple send_groups(const py::buffer& payload,
                      const py::array_t<std::int64_t, py::array::c_style>& bounds,
                      const py::array_t<std::int64_t, py::array::c_style>& order,
                      const py::array_t<std::int64_t, py::array::c_style>& starts,
                      const py::array_t<std::int32_t, py::array::c_style>& members,
                      const py::object& links) {
    // The link table is one struct read by name (fanout.LinkTable: fd, blocked, sent and the
    // send_threads setting), as the engine's kernels take their state.
    const auto fds = strict<py::array_t<std::int32_t, py::array::c_style>>(links, "fd");
    const auto blocked = strict<py::array_t<std::uint8_t, py::array::c_style>>(links, "blocked");
    auto sent = strict<py::array_t<std::int64_t, py::array::c_style>>(links, "sent");
    const auto threads = links.attr("send_threads").cast<std::int32_t>();
    if (threads < 1) throw py::value_error("send_groups: threads must be at least 1");
    if (!sent.writeable()) throw py::value_error("send_groups: sent is read-only");
    const py::buffer_info data = payload.request();
    if (data.ndim != 1 || data.itemsize != 1 || (data.shape[0] > 1 && data.strides[0] != 1))
        throw py::value_error("send_groups: payload must be contiguous bytes");
    if (bounds.ndim() != 1 || order.ndim() != 1 || starts.ndim() != 1 || members.ndim() != 1 ||
        fds.ndim() != 1 || blocked.ndim() != 1 || sent.ndim() != 1)
        throw py::value_error("send_groups: every array must be 1-D");
    if (bounds.shape(0) < 1 || starts.shape(0) != bounds.shape(0))
        throw py::value_error("send_groups: bounds and starts need one entry per message + 1");
    const auto messages = static_cast<std::int64_t>(bounds.shape(0) - 1);
    const std::int64_t* bound = bounds.data();
    if (bound[0] < 0 || bound[messages] > static_cast<std::int64_t>(data.shape[0]))
        throw py::value_error("send_groups: bounds must lie within the payload");
    const auto table = fds.shape(0);
    if (blocked.shape(0) != table || sent.shape(0) != table)
        throw py::value_error("send_groups: the table's arrays must have one length");
    const auto n = members.shape(0);
    const std::int64_t* start = starts.data();
    if (start[0] != 0 || start[messages] != n)
        throw py::value_error("send_groups: starts must run from 0 to len(members)");
    for (std::int64_t k = 0; k < messages; ++k)
        if (start[k] > start[k + 1] || bound[k] > bound[k + 1])
            throw py::value_error("send_groups: starts and bounds must not decrease");
    const std::int32_t* member = members.data();
    for (py::ssize_t i = 0; i < n; ++i)
        if (member[i] < -1 || member[i] >= table)
            throw py::value_error("send_groups: a member is not in the table (nor -1)");
    const auto count = static_cast<std::size_t>(order.shape(0));
    const std::int64_t* pick = order.data();
    const auto* bytes = static_cast<const char*>(data.ptr);
    std::vector<std::string> wires;
    wires.reserve(count);
    std::int64_t writes = 0;
    for (std::size_t g = 0; g < count; ++g) {
        const std::int64_t k = pick[g];
        if (k < 0 || k >= messages || (g > 0 && k <= pick[g - 1]))
            throw py::value_error("send_groups: order must be ascending message indices");
        wires.push_back(framed(bytes + bound[k], static_cast<std::size_t>(bound[k + 1] - bound[k])));
        writes += start[k + 1] - start[k];
    }
    const auto used = static_cast<std::int32_t>(
        std::max<std::int64_t>(1, std::min<std::int64_t>(threads, writes / kMinSendsPerThread)));
    const GroupsPass pass{wires, pick, count, start, member, fds.data(), blocked.data(),
                          sent.mutable_data(), used};
    std::vector<PassResult> parts(static_cast<std::size_t>(used));
    {
        // Safe without the GIL: the wires are this call's, the arrays are kept alive by the
        // caller's frame; nothing else runs Python on this thread's table meanwhile, and the
        // helper threads are joined before the GIL is taken back.
        py::gil_scoped_release release;
        std::vector<std::thread> helpers;
        for (std::int32_t part = 1; part < used; ++part)
            helpers.emplace_back([&pass, &parts, part] {
                pass.run(part, parts[static_cast<std::size_t>(part)]);
            });
        pass.run(0, parts[0]);
        for (std::thread& helper : helpers) helper.join();
    }
    return merge_parts(parts);
}

}  // namespace
#endif

void register_fanout(py::module_& m) {
#ifndef _WIN32
    m.def("send_to_all", &send_to_all, py::arg("wire"), py::arg("fds"),
          "One non-blocking send() of wire to each socket fd (GIL released): per fd the bytes "
          "sent, or -errno.");
    m.def("send_group", &send_group, py::arg("wire"), py::arg("members"), py::arg("fds"),
          py::arg("blocked"), py::arg("sent"),
          "One group's fan-out pass over a table of direct links (GIL released): a send() to "
          "each member with no blocked bit (its sent count + 1); returns (blocked positions, "
          "failed positions, their results: bytes taken or -errno).");
    m.def("send_groups", &send_groups, py::arg("payload"), py::arg("bounds"), py::arg("order"),
          py::arg("starts"), py::arg("members"), py::arg("links"),
          "send_group for every group of a tick in one call (GIL released once): for each k in "
          "order (ascending), payload[bounds[k]:bounds[k+1]] framed as one WebSocket message "
          "to members[starts[k]:starts[k+1]], rows of the link table links (fd, blocked, sent); "
          "returns positions into members (ascending) as send_group does. "
          "links.send_threads > 1 splits the rows over that many threads (row % threads; at "
          "least 64 sends each), so a link's frames stay in order.");
#else
    (void)m;  // no POSIX send flags: the Python reference loop serves
#endif
}

}  // namespace avatar_engine::bindings
