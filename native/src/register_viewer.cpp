// The lean load generator's receive pass (src/avatar_engine/client/ws_receive.py): many raw
// WebSocket viewers of one process served by one call per wake-up, the GIL released.
//
// ViewerPass.poll waits on the process's epoll descriptor, then for every ready viewer it owns
// takes one recv() of up to 64 KiB, splits the WebSocket frames (server frames: unmasked),
// reads only the msgpack fields the load test needs (type, seq, and t or back/dt) and counts
// them: frames, bytes, audio, sequence gaps, and the tick-to-receive latency of each frame in
// the measured window. Pings are answered with a masked pong; a close frame, an end of stream
// or a receive error closes the viewer (its descriptor leaves the epoll set; Python owns and
// closes the socket). Ready descriptors it does not own (probe viewers, which decode fully)
// are returned to Python. The Python reference with the same contract is the per-viewer parse
// of avatar_engine.client.lean (_Viewer.on_data, MessageCounter.message): the parity tests
// run both on the same server frames.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string_view>
#include <vector>

#include "registers.hpp"

#ifdef __linux__
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#endif

namespace py = pybind11;

namespace avatar_engine::bindings {

#ifdef __linux__
namespace {

constexpr std::size_t kRecv = 1 << 16;          // one recv() per ready viewer, as the reference
constexpr std::uint64_t kMaxFrame = 1u << 20;  // lean.MAX_FRAME: a longer frame ends the viewer
constexpr int kOpBinary = 0x2, kOpClose = 0x8, kOpPing = 0x9, kOpPong = 0xA;
constexpr int kKeyframe = 1, kDelta = 2, kAudio = 10;

// The counters, in the order of lean.PASS_COUNTERS.
enum Counter { kFrames, kBytes, kAudioCount, kGaps, kViewersWithGaps, kClosed, kBad, kCounters };

struct Window {
    double start, end, server_t0;
    bool covers(double now) const { return start <= now && now < end; }
};

struct Viewer {
    int fd = -1;
    bool open = true;
    std::int64_t last_seq = -1, last_t = -1, key_seq = -1, key_t = -1, gaps = 0;
    std::vector<std::uint8_t> carry;  // the incomplete frame left by the last recv()
};

// A msgpack unsigned integer at b[i] (i < end); false when it is not one, runs past end, or does
// not fit int64 (the reference raises ValueError for the same cases).
bool read_uint(const std::uint8_t* b, std::size_t end, std::size_t& i, std::int64_t& value) {
    if (i >= end) return false;
    const std::uint8_t c = b[i];
    std::size_t width;
    if (c < 0x80) {
        value = c;
        i += 1;
        return true;
    }
    if (c == 0xCC) width = 1;
    else if (c == 0xCD) width = 2;
    else if (c == 0xCE) width = 4;
    else if (c == 0xCF) width = 8;
    else return false;
    if (i + 1 + width > end) return false;
    std::uint64_t v = 0;
    for (std::size_t k = 0; k < width; ++k) v = (v << 8) | b[i + 1 + k];
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
    value = static_cast<std::int64_t>(v);
    i += 1 + width;
    return true;
}

class ViewerPass {
public:
    explicit ViewerPass(int epfd) : epfd_(epfd), rng_(std::random_device{}()) {}

    void add(int fd, const py::bytes& carry, std::int64_t last_seq, std::int64_t last_t,
             std::int64_t key_seq, std::int64_t key_t) {
        if (fd < 0) throw py::value_error("ViewerPass.add: fd must be a descriptor");
        if (static_cast<std::size_t>(fd) >= row_of_fd_.size()) row_of_fd_.resize(fd + 1, -1);
        if (row_of_fd_[fd] >= 0) throw py::value_error("ViewerPass.add: fd already added");
        Viewer v;
        v.fd = fd;
        v.last_seq = last_seq;
        v.last_t = last_t;
        v.key_seq = key_seq;
        v.key_t = key_t;
        const std::string_view bytes = carry;
        v.carry.assign(bytes.begin(), bytes.end());
        row_of_fd_[fd] = static_cast<std::int32_t>(viewers_.size());
        viewers_.push_back(std::move(v));
    }

    // Wait up to timeout_s, serve every ready viewer this pass owns; returns (the receive stamp,
    // the ready descriptors it does not own). now: the stamp to use (NaN: CLOCK_MONOTONIC
    // when the wait returns, the clock of Python's time.monotonic()).
    py::tuple poll(double timeout_s, double start, double end, double server_t0, double now) {
        const Window window{start, end, server_t0};
        const int timeout_ms = timeout_s <= 0 ? 0 : static_cast<int>(std::ceil(timeout_s * 1e3));
        std::vector<int> foreign;
        {
            py::gil_scoped_release release;  // touches only this object's own C++ state
            events_.resize(std::max<std::size_t>(1024, viewers_.size() + 64));
            int got;
            do {
                got = ::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()),
                                   timeout_ms);
            } while (got < 0 && errno == EINTR);
            if (std::isnan(now)) {
                timespec ts{};
                ::clock_gettime(CLOCK_MONOTONIC, &ts);
                now = static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
            }
            for (int k = 0; k < got; ++k) {
                const int fd = events_[k].data.fd;
                const std::int32_t row = static_cast<std::size_t>(fd) < row_of_fd_.size()
                                             ? row_of_fd_[fd]
                                             : -1;
                if (row < 0 || !viewers_[row].open) {
                    if (row < 0) foreign.push_back(fd);
                    continue;
                }
                on_data(viewers_[row], now, window);
            }
        }
        py::list out;
        for (int fd : foreign) out.append(fd);
        return py::make_tuple(now, out);
    }

    py::array_t<std::int64_t> counters() const {
        py::array_t<std::int64_t> out(kCounters);
        std::copy(counts_, counts_ + kCounters, out.mutable_data());
        return out;
    }

    // The tick-to-receive latencies (ms) gathered since the last call, handed over.
    py::array_t<float> take_latencies() {
        py::array_t<float> out(static_cast<py::ssize_t>(latencies_.size()));
        std::copy(latencies_.begin(), latencies_.end(), out.mutable_data());
        latencies_.clear();
        return out;
    }

    std::size_t size() const { return viewers_.size(); }

private:
    void close(Viewer& v) {
        v.open = false;
        v.carry.clear();
        counts_[kClosed] += 1;
        ::epoll_ctl(epfd_, EPOLL_CTL_DEL, v.fd, nullptr);
    }

    void on_data(Viewer& v, double now, const Window& window) {
        ssize_t got;
        do {
            got = ::recv(v.fd, buf_, kRecv, MSG_DONTWAIT);
        } while (got < 0 && errno == EINTR);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (got <= 0) {
            close(v);
            return;
        }
        const std::uint8_t* data = buf_;
        std::size_t n = static_cast<std::size_t>(got);
        if (!v.carry.empty()) {
            v.carry.insert(v.carry.end(), buf_, buf_ + n);
            data = v.carry.data();
            n = v.carry.size();
        }
        const std::size_t pos = frames(v, data, n, now, window);
        if (!v.open) return;
        if (data == buf_) {
            v.carry.assign(buf_ + pos, buf_ + n);
        } else {
            v.carry.erase(v.carry.begin(), v.carry.begin() + static_cast<std::ptrdiff_t>(pos));
        }
    }

    // Every complete frame of b[0:n]; returns the bytes consumed (the rest waits for more).
    std::size_t frames(Viewer& v, const std::uint8_t* b, std::size_t n, double now,
                       const Window& window) {
        std::size_t pos = 0;
        while (n - pos >= 2) {
            std::uint64_t length = b[pos + 1] & 0x7F;
            std::size_t head = 2;
            if (length == 126) {
                if (n - pos < 4) break;
                length = (static_cast<std::uint64_t>(b[pos + 2]) << 8) | b[pos + 3];
                head = 4;
            } else if (length == 127) {
                if (n - pos < 10) break;
                length = 0;
                for (int k = 0; k < 8; ++k) length = (length << 8) | b[pos + 2 + k];
                head = 10;
            }
            if ((b[pos + 1] & 0x80) || length > kMaxFrame) {  // masked, or too long: not a server
                counts_[kBad] += 1;                            // we can follow
                close(v);
                return pos;
            }
            const std::size_t start = pos + head;
            if (n - start < length) break;
            const int opcode = b[pos] & 0x0F;
            if (opcode == kOpBinary) {
                message(v, b + start, static_cast<std::size_t>(length), now, window);
            } else if (opcode == kOpPing) {
                pong(v, b + start, static_cast<std::size_t>(length));
            } else if (opcode == kOpClose) {
                close(v);
                return pos;
            }
            pos = start + static_cast<std::size_t>(length);
        }
        return pos;
    }

    void message(Viewer& v, const std::uint8_t* b, std::size_t size, double now,
                 const Window& window) {
        if (size < 2) {
            counts_[kBad] += 1;
            return;
        }
        const int kind = b[1];
        if (kind != kKeyframe && kind != kDelta) {
            if (kind == kAudio && window.covers(now)) counts_[kAudioCount] += 1;
            return;
        }
        std::size_t i = 2;
        std::int64_t sid, lod, seq, t, back = 0, dt = 0;
        bool ok = read_uint(b, size, i, sid) && read_uint(b, size, i, lod) &&
                  read_uint(b, size, i, seq);
        if (kind == kKeyframe) ok = ok && read_uint(b, size, i, t);
        else ok = ok && read_uint(b, size, i, back) && read_uint(b, size, i, dt);
        if (!ok) {
            counts_[kBad] += 1;
            return;
        }
        if (kind == kKeyframe) {
            v.key_seq = seq;
            v.key_t = t;
        } else if (back == 1 && v.last_seq == ((seq - 1) & 0xFFFF)) {
            t = v.last_t >= 0 ? v.last_t + dt : -1;  // chained to a frame whose time was lost
        } else if (v.key_seq == ((seq - back) & 0xFFFF)) {
            t = v.key_t + dt;
        } else {
            t = -1;  // reference lost: the server sends a keyframe next
        }
        if (window.covers(now)) {
            counts_[kFrames] += 1;
            counts_[kBytes] += static_cast<std::int64_t>(size);
            const std::int64_t missed = v.last_seq >= 0 ? ((seq - v.last_seq) & 0xFFFF) - 1 : 0;
            if (missed > 0) {
                if (v.gaps == 0) counts_[kViewersWithGaps] += 1;
                v.gaps += missed;
                counts_[kGaps] += missed;
            }
            if (t >= 0)
                latencies_.push_back(static_cast<float>((now - window.server_t0) * 1e3 -
                                                        static_cast<double>(t)));
        }
        v.last_seq = seq;
        v.last_t = t;
    }

    // A masked pong echoing the ping's payload (RFC 6455 5.5.3); a full buffer drops it, as the
    // server's next ping asks again.
    void pong(const Viewer& v, const std::uint8_t* payload, std::size_t n) {
        std::vector<std::uint8_t> frame;
        frame.reserve(n + 14);
        frame.push_back(0x80 | kOpPong);
        if (n < 126) {
            frame.push_back(static_cast<std::uint8_t>(0x80 | n));
        } else if (n < (1u << 16)) {
            frame.push_back(0x80 | 126);
            frame.push_back(static_cast<std::uint8_t>(n >> 8));
            frame.push_back(static_cast<std::uint8_t>(n));
        } else {
            frame.push_back(0x80 | 127);
            for (int k = 7; k >= 0; --k) frame.push_back(static_cast<std::uint8_t>(n >> (8 * k)));
        }
        const std::uint32_t key = rng_();
        const std::uint8_t mask[4] = {static_cast<std::uint8_t>(key >> 24),
                                      static_cast<std::uint8_t>(key >> 16),
                                      static_cast<std::uint8_t>(key >> 8),
                                      static_cast<std::uint8_t>(key)};
        frame.insert(frame.end(), mask, mask + 4);
        for (std::size_t k = 0; k < n; ++k) frame.push_back(payload[k] ^ mask[k & 3]);
        ssize_t sent;
        do {
            sent = ::send(v.fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
    }

    int epfd_;
    std::mt19937 rng_;
    std::vector<Viewer> viewers_;
    std::vector<std::int32_t> row_of_fd_;
    std::vector<epoll_event> events_;
    std::vector<float> latencies_;
    std::int64_t counts_[kCounters] = {0};
    std::uint8_t buf_[kRecv];
};

}  // namespace
#endif

void register_viewer(py::module_& m) {
#ifdef __linux__
    py::class_<ViewerPass>(m, "ViewerPass",
                           "The lean viewers' receive pass: one call per wake-up over an epoll "
                           "descriptor (avatar_engine.client.ws_receive).")
        .def(py::init<int>(), py::arg("epfd"))
        .def("add", &ViewerPass::add, py::arg("fd"), py::arg("carry"), py::arg("last_seq"),
             py::arg("last_t"), py::arg("key_seq"), py::arg("key_t"),
             "Serve an open viewer's descriptor (already in the epoll set) from now on, with its "
             "unparsed bytes and its sequence state.")
        .def("poll", &ViewerPass::poll, py::arg("timeout_s"), py::arg("start"), py::arg("end"),
             py::arg("server_t0"), py::arg("now"),
             "Wait, then read and count every ready viewer this pass serves, the GIL released: "
             "(the receive stamp, the ready descriptors it does not serve).")
        .def("counters", &ViewerPass::counters,
             "frames, bytes, audio, gaps, viewers_with_gaps, closed, bad (int64).")
        .def("take_latencies", &ViewerPass::take_latencies,
             "The tick-to-receive latencies (ms, float32) gathered since the last call.")
        .def("__len__", &ViewerPass::size);
#else
    (void)m;  // no epoll: the Python reference serves
#endif
}

}  // namespace avatar_engine::bindings
