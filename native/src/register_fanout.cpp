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
// group order. A link's frames are all written by one thread, so they leave in order and its
// counter has one writer; a member with no link (-1) is part 0's.
struct GroupsPass {
    const std::vector<const char*>& bytes;
    const std::vector<std::size_t>& sizes;
    const std::int64_t* start;
    const std::int32_t* member;
    const std::int32_t* fd;
    const std::uint8_t* bits;
    std::int64_t* count;
    std::int32_t threads;

    void run(std::int32_t part, PassResult& out) const {
        const std::size_t groups = bytes.size();
        for (std::size_t g = 0; g < groups; ++g) {
            for (std::int64_t i = start[g]; i < start[g + 1]; ++i) {
                const std::int32_t k = member[i];
                if ((k < 0 ? 0 : k % threads) != part) continue;
                if (k < 0 || bits[k] != 0) {
                    out.skip.push_back(i);
                    continue;
                }
                ssize_t got;
                do {
                    got = ::send(fd[k], bytes[g], sizes[g], MSG_DONTWAIT | MSG_NOSIGNAL);
                } while (got < 0 && errno == EINTR);
                count[k] += 1;
                if (got != static_cast<ssize_t>(sizes[g])) {
                    out.fail.push_back(i);
                    out.result.push_back(got < 0 ? -static_cast<std::int64_t>(errno) : got);
                }
            }
        }
    }
};

// The parts' findings as one pass's, positions ascending (each part's are already).
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

// Every group of one tick in one pass: group g's framed message is wires[g] and its members
// are members[starts[g]:starts[g + 1]]; each member as in send_group. Positions returned are
// into ``members`` (the caller maps them back to a group with ``starts``). One call instead of
// one per group: with many one-viewer groups, the per-call cost was most of the pass.
// ``threads`` > 1 splits the rows over that many threads (this one included): the kernel's
// send() is most of a frame's cost, and one thread's serial sends put the last viewer of 2,000
// 10-13 ms behind the first on a 2-core VM (docs/architecture.md, "Send threads").
py::tuple send_groups(const py::list& wires,
                      const py::array_t<std::int64_t, py::array::c_style>& starts,
                      const py::array_t<std::int32_t, py::array::c_style>& members,
                      const py::array_t<std::int32_t, py::array::c_style>& fds,
                      const py::array_t<std::uint8_t, py::array::c_style>& blocked,
                      py::array_t<std::int64_t, py::array::c_style>& sent, std::int32_t threads) {
    const auto groups = static_cast<std::size_t>(wires.size());
    if (threads < 1) throw py::value_error("send_groups: threads must be at least 1");
    if (starts.ndim() != 1 || static_cast<std::size_t>(starts.shape(0)) != groups + 1)
        throw py::value_error("send_groups: starts must be 1-D with one entry per group + 1");
    if (members.ndim() != 1 || fds.ndim() != 1 || blocked.ndim() != 1 || sent.ndim() != 1)
        throw py::value_error("send_groups: members and the table's arrays must be 1-D");
    const auto table = fds.shape(0);
    if (blocked.shape(0) != table || sent.shape(0) != table)
        throw py::value_error("send_groups: the table's arrays must have one length");
    const auto n = members.shape(0);
    const std::int64_t* start = starts.data();
    if (start[0] != 0 || start[groups] != n)
        throw py::value_error("send_groups: starts must run from 0 to len(members)");
    for (std::size_t g = 0; g < groups; ++g)
        if (start[g] > start[g + 1])
            throw py::value_error("send_groups: starts must not decrease");
    const std::int32_t* member = members.data();
    for (py::ssize_t i = 0; i < n; ++i)
        if (member[i] < -1 || member[i] >= table)
            throw py::value_error("send_groups: a member is not in the table (nor -1)");
    std::vector<const char*> bytes(groups);
    std::vector<std::size_t> sizes(groups);
    for (std::size_t g = 0; g < groups; ++g) {
        const py::handle wire = wires[g];
        if (!PyBytes_Check(wire.ptr())) throw py::type_error("send_groups: wires must be bytes");
        bytes[g] = PyBytes_AS_STRING(wire.ptr());
        sizes[g] = static_cast<std::size_t>(PyBytes_GET_SIZE(wire.ptr()));
    }
    const auto used = static_cast<std::int32_t>(
        std::max<py::ssize_t>(1, std::min<py::ssize_t>(threads, n / kMinSendsPerThread)));
    const GroupsPass pass{bytes, sizes, start, member, fds.data(), blocked.data(),
                          sent.mutable_data(), used};
    std::vector<PassResult> parts(static_cast<std::size_t>(used));
    {
        // Safe without the GIL: the bytes objects and arrays are kept alive by the caller's
        // list and frame; nothing else runs Python on this thread's table meanwhile, and the
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
    m.def("send_groups", &send_groups, py::arg("wires"), py::arg("starts"), py::arg("members"),
          py::arg("fds"), py::arg("blocked"), py::arg("sent"), py::arg("threads") = 1,
          "send_group for every group of a tick in one call (GIL released once): group g sends "
          "wires[g] to members[starts[g]:starts[g+1]]; returns positions into members "
          "(ascending) as send_group does. threads > 1 splits the rows over that many threads "
          "(row % threads; at least 64 sends each), so a link's frames stay in order.");
#else
    (void)m;  // no POSIX send flags: the Python reference loop serves
#endif
}

}  // namespace avatar_engine::bindings
