// WebRTC data-channel frames (src/avatar_engine/transport/rtc_datapath.py): one group's small
// message sent to many peers' unordered channels in one call, holding the GIL.
//
// Each peer's SCTP association and DTLS keys are its own, so its bytes differ: per peer this
// builds the SCTP packet (common header, one unordered whole DATA chunk with the TSN Python
// booked, padding, CRC32c), encrypts it as one DTLS record with SSL_write into the
// connection's memory BIO, takes the record with BIO_read and sendto()s it on the ICE pair's
// UDP socket. OpenSSL is reached through function pointers the caller takes from pyOpenSSL's
// cffi binding: the same library (cryptography's, linked into its extension) that holds the
// sessions, which this module neither links nor could find otherwise. The Python reference
// with the same bytes on the wire is rtc_datapath.FastSender.send (packet: sctp_packet).
//
// The GIL stays held: a pass over 100 peers takes a millisecond or two, and a released GIL
// is taken by any busy Python thread (speech synthesis runs in asyncio.to_thread), after which
// the event loop waits out its switch interval (5 ms) to get it back: measured, a 2 ms call
// without the GIL took 9 ms on average (16 ms worst) beside one spinning Python thread.
#include <pybind11/pybind11.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "registers.hpp"

#ifndef _WIN32
#include <sys/socket.h>
#include <sys/types.h>
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif
#endif

namespace py = pybind11;

namespace avatar_engine::bindings {

namespace {

// CRC32c (Castagnoli, reflected 0x82F63B78: RFC 9260 appendix B), slice-by-8 tables.
struct Crc32cTables {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    Crc32cTables() {
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
            t[0][i] = c;
        }
        for (std::uint32_t i = 0; i < 256; ++i)
            for (std::size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
};

const Crc32cTables& crc_tables() {
    static const Crc32cTables tables;
    return tables;
}

std::uint32_t crc32c(const std::uint8_t* p, std::size_t n) {
    const auto& t = crc_tables().t;
    std::uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        const std::uint32_t lo = c ^ (std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 |
                                      std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24);
        c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
            t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xFF];
    return c ^ 0xFFFFFFFFu;
}

constexpr std::size_t kHead = 28;           // common header (12) + DATA chunk header (16)
constexpr std::size_t kMaxUserData = 1200;  // aiortc's USERDATA_MAX_LENGTH
constexpr std::size_t kRecordMax = 2048;    // what the Python path reads from the BIO
constexpr std::uint32_t kWebrtcBinary = 53; // PPID of a binary message (RFC 8831)
constexpr std::uint8_t kUnorderedWhole = 7; // U, B and E flags (RFC 9260 3.3.1)

void put16(std::uint8_t* p, std::uint32_t v) {
    p[0] = std::uint8_t(v >> 8);
    p[1] = std::uint8_t(v);
}
void put32(std::uint8_t* p, std::uint32_t v) {
    put16(p, v >> 16);
    put16(p + 2, v);
}

// The packet into out (room for kHead + kMaxUserData + 3): its length.
std::size_t build_packet(std::uint8_t* out, const std::uint8_t* header12, std::uint32_t tsn,
                         std::uint16_t stream, const std::uint8_t* data, std::size_t size) {
    std::memcpy(out, header12, 8);
    std::memset(out + 8, 0, 4);
    out[12] = 0;  // DATA
    out[13] = kUnorderedWhole;
    put16(out + 14, std::uint32_t(16 + size));
    put32(out + 16, tsn);
    put16(out + 20, stream);
    put16(out + 22, 0);  // stream sequence number: unused when unordered
    put32(out + 24, kWebrtcBinary);
    std::memcpy(out + kHead, data, size);
    std::size_t length = kHead + size;
    while (length % 4) out[length++] = 0;
    const std::uint32_t crc = crc32c(out, length);
    for (int i = 0; i < 4; ++i) out[8 + i] = std::uint8_t(crc >> (8 * i));  // little-endian
    return length;
}

const std::uint8_t* bytes_of(const py::buffer_info& b, const char* what) {
    if (b.ndim != 1 || b.itemsize != 1)
        throw py::value_error(std::string("rtc: ") + what + " must be a 1-D byte buffer");
    return static_cast<const std::uint8_t*>(b.ptr);
}

// One peer's row, packed by rtc_datapath (struct "=QQiHH12s28s", 64 bytes).
struct Row {
    std::uint64_t ssl, wbio;
    std::int32_t fd;
    std::uint16_t stream, addrlen;
    std::uint8_t header[12];
    std::uint8_t addr[28];
};
constexpr std::size_t kRow = 64;
static_assert(8 + 8 + 4 + 2 + 2 + 12 + 28 == kRow, "row layout");

constexpr std::int64_t kSslFailed = -(std::int64_t(1) << 20);  // SSL_write/BIO_read failed

std::uint32_t rtc_crc32c(const py::buffer& data) {
    const py::buffer_info b = data.request();
    return crc32c(bytes_of(b, "data"), static_cast<std::size_t>(b.size));
}

py::bytes rtc_sctp_packet(const py::buffer& header12, std::uint32_t tsn, std::uint16_t stream,
                          const py::buffer& data) {
    const py::buffer_info h = header12.request(), d = data.request();
    if (h.size != 12) throw py::value_error("rtc_sctp_packet: header12 must be 12 bytes");
    if (d.size < 1 || static_cast<std::size_t>(d.size) > kMaxUserData)
        throw py::value_error("rtc_sctp_packet: data must be 1..1200 bytes");
    std::uint8_t out[kHead + kMaxUserData + 3];
    const std::size_t n = build_packet(out, bytes_of(h, "header12"), tsn, stream,
                                       bytes_of(d, "data"), static_cast<std::size_t>(d.size));
    return py::bytes(reinterpret_cast<const char*>(out), n);
}

#ifndef _WIN32
using SslWrite = int (*)(void*, const void*, int);
using BioRead = int (*)(void*, void*, int);
using ErrClear = void (*)();

// Positions of the peers whose send failed, and per such peer -errno or kSslFailed.
py::tuple rtc_send_group(const py::buffer& data, const py::buffer& rows,
                                         const py::buffer& tsns, std::uintptr_t ssl_write,
                                         std::uintptr_t bio_read, std::uintptr_t err_clear) {
    const py::buffer_info d = data.request(), r = rows.request(), t = tsns.request();
    const std::uint8_t* payload = bytes_of(d, "data");
    const std::uint8_t* table = bytes_of(r, "rows");
    const auto size = static_cast<std::size_t>(d.size);
    if (size < 1 || size > kMaxUserData)
        throw py::value_error("rtc_send_group: data must be 1..1200 bytes");
    if (t.ndim != 1 || t.itemsize != 4 || t.format != "I")
        throw py::value_error("rtc_send_group: tsns must be a 1-D array of uint32 ('I')");
    const auto n = static_cast<std::size_t>(t.shape[0]);
    if (static_cast<std::size_t>(r.size) != n * kRow)
        throw py::value_error("rtc_send_group: rows must hold 64 bytes per tsn");
    if (ssl_write == 0 || bio_read == 0 || err_clear == 0)
        throw py::value_error("rtc_send_group: null OpenSSL function");
    const auto* tsn = static_cast<const std::uint32_t*>(t.ptr);
    const auto write = reinterpret_cast<SslWrite>(ssl_write);
    const auto read = reinterpret_cast<BioRead>(bio_read);
    const auto clear = reinterpret_cast<ErrClear>(err_clear);
    std::vector<std::int64_t> fail, result;
    {
        // The caller holds the peers' connections (their SSL and BIO objects) and the buffers.
        std::uint8_t packet[kHead + kMaxUserData + 3];
        std::uint8_t record[kRecordMax];
        for (std::size_t i = 0; i < n; ++i) {
            Row row;
            std::memcpy(&row, table + i * kRow, kRow);
            const std::size_t length = build_packet(packet, row.header, tsn[i], row.stream, payload, size);
            auto* ssl = reinterpret_cast<void*>(static_cast<std::uintptr_t>(row.ssl));
            auto* wbio = reinterpret_cast<void*>(static_cast<std::uintptr_t>(row.wbio));
            const int got = write(ssl, packet, static_cast<int>(length)) > 0
                                ? read(wbio, record, static_cast<int>(kRecordMax))
                                : -1;
            if (got <= 0) {
                clear();  // pyOpenSSL would read a stale error from this thread's queue
                fail.push_back(static_cast<std::int64_t>(i));
                result.push_back(kSslFailed);
                continue;
            }
            ssize_t sent;
            do {
                sent = ::sendto(row.fd, record, static_cast<std::size_t>(got),
                                MSG_DONTWAIT | MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(row.addr), row.addrlen);
            } while (sent < 0 && errno == EINTR);
            if (sent != got) {  // a datagram goes whole or not at all
                fail.push_back(static_cast<std::int64_t>(i));
                result.push_back(sent < 0 ? -static_cast<std::int64_t>(errno) : sent);
            }
        }
    }
    py::list positions, errors;
    for (std::size_t k = 0; k < fail.size(); ++k) {
        positions.append(fail[k]);
        errors.append(result[k]);
    }
    return py::make_tuple(positions, errors);
}
#endif

}  // namespace

void register_rtc(py::module_& m) {
    m.def("rtc_crc32c", &rtc_crc32c, py::arg("data"),
          "CRC32c (Castagnoli) of a byte buffer, as SCTP's checksum (RFC 9260 appendix B).");
    m.def("rtc_sctp_packet", &rtc_sctp_packet, py::arg("header12"), py::arg("tsn"),
          py::arg("stream"), py::arg("data"),
          "One SCTP packet of one unordered, whole, binary DATA chunk: header12 is the common "
          "header (ports, verification tag, 4 bytes ignored); the checksum is filled in.");
#ifndef _WIN32
    m.def("rtc_send_group", &rtc_send_group, py::arg("data"), py::arg("rows"), py::arg("tsns"),
          py::arg("ssl_write"), py::arg("bio_read"), py::arg("err_clear"),
          "One message to many WebRTC peers (GIL held): per 64-byte row and booked TSN, "
          "the SCTP packet, one DTLS record through the given OpenSSL functions and one "
          "sendto(); returns (positions of the peers whose send failed, per such peer -errno "
          "or RTC_SSL_FAILED).");
    m.attr("RTC_SSL_FAILED") = kSslFailed;
#endif
}

}  // namespace avatar_engine::bindings
