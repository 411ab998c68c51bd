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
using BioWrite = int (*)(void*, const void*, int);
using SslRead = int (*)(void*, void*, int);
using SslGetError = int (*)(const void*, int);
constexpr int kSslErrorZeroReturn = 6;  // SSL_ERROR_ZERO_RETURN: the peer sent close_notify

struct SealFunctions {
    SslWrite write;
    BioRead read;
    ErrClear clear;
};

SealFunctions seal_functions(std::uintptr_t ssl_write, std::uintptr_t bio_read,
                             std::uintptr_t err_clear) {
    if (ssl_write == 0 || bio_read == 0 || err_clear == 0)
        throw py::value_error("rtc: null OpenSSL function");
    return {reinterpret_cast<SslWrite>(ssl_write), reinterpret_cast<BioRead>(bio_read),
            reinterpret_cast<ErrClear>(err_clear)};
}

// One packet as one DTLS record to the row's peer: bytes sendto() took, -errno, or kSslFailed.
std::int64_t seal_send(const SealFunctions& f, const Row& row, const std::uint8_t* packet,
                       std::size_t length) {
    std::uint8_t record[kRecordMax];
    auto* ssl = reinterpret_cast<void*>(static_cast<std::uintptr_t>(row.ssl));
    auto* wbio = reinterpret_cast<void*>(static_cast<std::uintptr_t>(row.wbio));
    const int got = f.write(ssl, packet, static_cast<int>(length)) > 0
                        ? f.read(wbio, record, static_cast<int>(kRecordMax))
                        : -1;
    if (got <= 0) {
        f.clear();  // pyOpenSSL would read a stale error from this thread's queue
        return kSslFailed;
    }
    ssize_t sent;
    do {
        sent = ::sendto(row.fd, record, static_cast<std::size_t>(got), MSG_DONTWAIT | MSG_NOSIGNAL,
                        reinterpret_cast<const sockaddr*>(row.addr), row.addrlen);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) return -static_cast<std::int64_t>(errno);
    return sent == got ? sent : -static_cast<std::int64_t>(EMSGSIZE);
}

Row row_of(const py::buffer& row) {
    const py::buffer_info r = row.request();
    if (r.size != static_cast<py::ssize_t>(kRow)) throw py::value_error("rtc: a row is 64 bytes");
    Row out;
    std::memcpy(&out, bytes_of(r, "row"), kRow);
    return out;
}

// One SCTP packet (any chunks, checksum already in) to one peer: see seal_send.
std::int64_t rtc_seal_send(const py::buffer& packet, const py::buffer& row,
                           std::uintptr_t ssl_write, std::uintptr_t bio_read,
                           std::uintptr_t err_clear) {
    const py::buffer_info p = packet.request();
    if (p.size < 1 || static_cast<std::size_t>(p.size) > kHead + kMaxUserData + 3)
        throw py::value_error("rtc_seal_send: packet must be 1..1231 bytes");
    return seal_send(seal_functions(ssl_write, bio_read, err_clear), row_of(row),
                     bytes_of(p, "packet"), static_cast<std::size_t>(p.size));
}

// A received DTLS record into the connection (BIO_write) and the plaintext out (SSL_read):
// the packet's bytes; b"" when there is none (a partial record, an alert, a handshake
// message); None when the peer closed the connection (close_notify).
py::object rtc_open(const py::buffer& record, std::uintptr_t ssl, std::uintptr_t rbio,
                    std::uintptr_t bio_write, std::uintptr_t ssl_read,
                    std::uintptr_t ssl_get_error, std::uintptr_t err_clear) {
    if (ssl == 0 || rbio == 0 || bio_write == 0 || ssl_read == 0 || ssl_get_error == 0 ||
        err_clear == 0)
        throw py::value_error("rtc_open: null pointer");
    const py::buffer_info r = record.request();
    const std::uint8_t* data = bytes_of(r, "record");
    if (r.size < 1 || r.size > 65535) throw py::value_error("rtc_open: record must be 1..65535 bytes");
    auto* s = reinterpret_cast<void*>(ssl);
    if (reinterpret_cast<BioWrite>(bio_write)(reinterpret_cast<void*>(rbio), data,
                                              static_cast<int>(r.size)) <= 0) {
        reinterpret_cast<ErrClear>(err_clear)();
        return py::bytes();
    }
    std::uint8_t plain[kRecordMax];
    const int got = reinterpret_cast<SslRead>(ssl_read)(s, plain, static_cast<int>(kRecordMax));
    if (got > 0) return py::bytes(reinterpret_cast<const char*>(plain), got);
    const int error = reinterpret_cast<SslGetError>(ssl_get_error)(s, got);
    reinterpret_cast<ErrClear>(err_clear)();
    return error == kSslErrorZeroReturn ? py::none() : py::object(py::bytes());
}

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
    const auto* tsn = static_cast<const std::uint32_t*>(t.ptr);
    const SealFunctions f = seal_functions(ssl_write, bio_read, err_clear);
    std::vector<std::int64_t> fail, result;
    {
        // The caller holds the peers' connections (their SSL and BIO objects) and the buffers.
        std::uint8_t packet[kHead + kMaxUserData + 3];
        for (std::size_t i = 0; i < n; ++i) {
            Row row;
            std::memcpy(&row, table + i * kRow, kRow);
            const std::size_t length =
                build_packet(packet, row.header, tsn[i], row.stream, payload, size);
            const std::int64_t sent = seal_send(f, row, packet, length);
            if (sent < 0) {  // a datagram goes whole or not at all
                fail.push_back(static_cast<std::int64_t>(i));
                result.push_back(sent);
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
    m.def("rtc_seal_send", &rtc_seal_send, py::arg("packet"), py::arg("row"),
          py::arg("ssl_write"), py::arg("bio_read"), py::arg("err_clear"),
          "One SCTP packet as one DTLS record to one peer's 64-byte row (GIL held): bytes "
          "sent, -errno, or RTC_SSL_FAILED.");
    m.def("rtc_open", &rtc_open, py::arg("record"), py::arg("ssl"), py::arg("rbio"),
          py::arg("bio_write"), py::arg("ssl_read"), py::arg("ssl_get_error"),
          py::arg("err_clear"),
          "A received DTLS record through BIO_write and SSL_read: the plaintext, b'' when "
          "there is none, None when the peer closed the connection.");
    m.attr("RTC_SSL_FAILED") = kSslFailed;
#endif
}

}  // namespace avatar_engine::bindings
