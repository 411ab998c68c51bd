# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython twin of avatar_engine.formats.livelink.parse_packet_py (the receive hot path).

Errors are ValueError("<reason>: <detail>") with the reason codes of ``DropReason`` so the
Python wrapper can rebuild a LiveLinkPacketError; the checks and their order are the same.
"""

from libc.math cimport isfinite
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.string cimport memcpy

import numpy as np

cdef enum:
    VALUE_COUNT = 61
    MAX_NAME_BYTES = 256
    FIXED_BYTES = 270


cdef inline uint32_t _be_u32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]


cdef inline float _be_f32(const uint8_t* p) noexcept nogil:
    cdef uint32_t bits = _be_u32(p)
    cdef float value
    memcpy(&value, &bits, 4)
    return value


cdef str _name(const uint8_t* data, Py_ssize_t size, Py_ssize_t* offset, str what):
    if offset[0] + 4 > size:
        raise ValueError(f"truncated: packet ends inside the {what} length")
    cdef int32_t length = <int32_t>_be_u32(data + offset[0])
    if length < 0 or length > MAX_NAME_BYTES:
        raise ValueError(f"name_length: {what} length {length}")
    cdef Py_ssize_t start = offset[0] + 4
    if start + length > size:
        raise ValueError(f"truncated: packet ends inside the {what}")
    offset[0] = start + length
    try:
        return (<const char*>data)[start:start + length].decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"name_encoding: {what} is not UTF-8") from None


cdef tuple _parse_into(const uint8_t* data, Py_ssize_t size, float* out):
    """The checks of parse_packet_py, in its order; the 61 values land in ``out``. Returns
    (device_id, subject, frame, subframe, fps_num, fps_den) or raises ValueError."""
    if size > FIXED_BYTES + 2 * MAX_NAME_BYTES:
        raise ValueError(f"too_large: {size} bytes")
    if size < 1:
        raise ValueError("truncated: empty datagram")
    if data[0] != 6:
        raise ValueError(f"version: version {data[0]}, expected 6")
    cdef Py_ssize_t offset = 1
    device_id = _name(data, size, &offset, "device id")
    subject = _name(data, size, &offset, "subject name")
    if offset + 16 + 1 + 4 * VALUE_COUNT > size:
        raise ValueError("truncated: packet ends before the values")
    cdef int32_t frame = <int32_t>_be_u32(data + offset)
    cdef float subframe = _be_f32(data + offset + 4)
    cdef int32_t num = <int32_t>_be_u32(data + offset + 8)
    cdef int32_t den = <int32_t>_be_u32(data + offset + 12)
    offset += 16
    if data[offset] != VALUE_COUNT:
        raise ValueError(f"count: {data[offset]} values, expected 61")
    offset += 1
    if offset + 4 * VALUE_COUNT != size:
        raise ValueError(f"trailing_bytes: {size - offset - 4 * VALUE_COUNT} extra")
    cdef Py_ssize_t i
    cdef bint finite = True
    with nogil:
        for i in range(VALUE_COUNT):
            out[i] = _be_f32(data + offset + 4 * i)
            if not isfinite(out[i]):
                finite = False
    if not finite:
        raise ValueError("non_finite: NaN or infinity among the values")
    return device_id, subject, frame, subframe, num, den


def parse_packet(const uint8_t[::1] packet not None):
    """Parse a v6 datagram -> (device_id, subject, frame, subframe, fps_num, fps_den, values)."""
    values = np.empty(VALUE_COUNT, dtype=np.float32)
    cdef float[::1] out = values
    cdef const uint8_t* data = &packet[0] if packet.shape[0] else NULL
    return _parse_into(data, packet.shape[0], &out[0]) + (values,)


def parse_batch(const uint8_t[:, ::1] rows not None, const int64_t[::1] sizes not None,
                Py_ssize_t n, float[:, ::1] values not None):
    """Twin of avatar_engine.formats.livelink.parse_batch_py: rows[i, :sizes[i]] for i < n; per
    row (device_id, subject, frame_time) with its values in ``values[i]``, or the error text
    "<reason>: <detail>"."""
    if n > rows.shape[0] or n > sizes.shape[0] or n > values.shape[0] or values.shape[1] != VALUE_COUNT:
        raise ValueError("parse_batch: n rows of 61 values needed")
    cdef list heads = []
    cdef Py_ssize_t i, size
    cdef tuple head
    cdef double frame_time
    for i in range(n):
        size = min(<Py_ssize_t>sizes[i], rows.shape[1])
        try:
            head = _parse_into(&rows[i, 0], size, &values[i, 0])
        except ValueError as exc:
            heads.append(str(exc))
            continue
        frame_time = 0.0
        if head[4] > 0 and head[5] > 0:
            frame_time = (<double>(<int32_t>head[2]) + <double>(<float>head[3])) * <double>(<int32_t>head[5]) / <double>(<int32_t>head[4])
        heads.append((head[0], head[1], frame_time))
    return heads
