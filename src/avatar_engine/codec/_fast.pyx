# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cython twin of the codec hot paths: the batched frame encoder and the frame decoder.

``TickKernel`` is :func:`avatar_engine.codec.encoder._encode_stream` run over every stream in
one C loop, writing msgpack bytes directly; it must produce the same bytes (parity tests).
``parse_frame`` is a fast path only: it returns ``None`` for anything that is not a perfectly
ordinary keyframe or delta, and the Python reference then classifies the message (so both
report the same error codes). ``unpack_body`` raises the reference's ``body`` errors.
"""

from libc.math cimport fabs
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

import numpy as np

from avatar_engine.codec.wire import BODY, ProtocolError

cdef enum:
    T_KEYFRAME = 1
    T_DELTA = 2
    MODE_KEYFRAME = 1
    MAX_GROUPS = 128   # MAX_MORPHS + MAX_CHANNELS = 1088 elements -> 136 groups; see check


cdef inline Py_ssize_t put_uint(uint8_t* p, Py_ssize_t pos, uint64_t v) noexcept nogil:
    """msgpack's smallest form of a non-negative integer (as msgpack-python writes it)."""
    cdef int i
    if v < 128:
        p[pos] = <uint8_t>v
        return pos + 1
    if v < 256:
        p[pos] = 0xCC
        p[pos + 1] = <uint8_t>v
        return pos + 2
    if v < 65536:
        p[pos] = 0xCD
        p[pos + 1] = <uint8_t>(v >> 8)
        p[pos + 2] = <uint8_t>v
        return pos + 3
    if (v >> 32) == 0:
        p[pos] = 0xCE
        for i in range(4):
            p[pos + 1 + i] = <uint8_t>(v >> (24 - 8 * i))
        return pos + 5
    p[pos] = 0xCF
    for i in range(8):
        p[pos + 1 + i] = <uint8_t>(v >> (56 - 8 * i))
    return pos + 9


cdef inline Py_ssize_t put_head(
    uint8_t* p, Py_ssize_t pos, uint8_t fields, uint8_t kind, uint64_t sid, uint64_t lod,
    uint64_t seq,
) noexcept nogil:
    """The fields every message starts with: a fixarray of ``fields``, then kind, stream id,
    LOD level and sequence number."""
    p[pos] = 0x90 | fields
    p[pos + 1] = kind
    pos = put_uint(p, pos + 2, sid)
    pos = put_uint(p, pos, lod)
    return put_uint(p, pos, seq)


cdef inline int32_t quantize(double x, int32_t cmin, int32_t cmax) noexcept nogil:
    """``clamp(floor(x + 0.5), cmin, cmax)``, NaN -> 0, exactly as numpy's floor/clip.

    A cast instead of libm ``floor`` (a call on baseline x86-64 without SSE4.1): values are
    range-checked first, so the cast never overflows.
    """
    cdef double y = x + 0.5
    cdef int32_t c
    if y != y:
        return 0
    if y < cmin:
        return cmin
    if y >= <double>cmax + 1.0:
        return cmax
    c = <int32_t>y
    if c > y:  # truncation went up for a negative non-integer
        c -= 1
    return c


cdef Py_ssize_t put_body(
    uint8_t* p, Py_ssize_t pos, const int32_t* codes, const int32_t* sent, Py_ssize_t count,
    Py_ssize_t n, int bits, uint8_t* em,
) noexcept nogil:
    """bin header + group mask + element masks + values (docs/protocol.md, "Frame body").

    ``sent`` lists the ``count`` element indices to carry, ascending.
    """
    cdef Py_ssize_t groups = (n + 7) >> 3
    cdef Py_ssize_t gm = (groups + 7) >> 3
    cdef Py_ssize_t i, g, j, busy = 0, length
    cdef int width = bits >> 3
    cdef int32_t c
    for g in range(groups):
        em[g] = 0
    for j in range(count):
        i = sent[j]
        if em[i >> 3] == 0:
            busy += 1
        em[i >> 3] |= <uint8_t>(1 << (i & 7))
    length = gm + busy + count * width
    if length < 256:
        p[pos] = 0xC4
        p[pos + 1] = <uint8_t>length
        pos += 2
    elif length < 65536:
        p[pos] = 0xC5
        p[pos + 1] = <uint8_t>(length >> 8)
        p[pos + 2] = <uint8_t>length
        pos += 3
    else:
        p[pos] = 0xC6
        p[pos + 1] = <uint8_t>(length >> 24)
        p[pos + 2] = <uint8_t>(length >> 16)
        p[pos + 3] = <uint8_t>(length >> 8)
        p[pos + 4] = <uint8_t>length
        pos += 5
    for g in range(gm):
        p[pos + g] = 0
    for g in range(groups):
        if em[g]:
            p[pos + (g >> 3)] |= <uint8_t>(1 << (g & 7))
    pos += gm
    for g in range(groups):
        if em[g]:
            p[pos] = em[g]
            pos += 1
    if width == 1:
        for j in range(count):
            p[pos + j] = <uint8_t>(codes[sent[j]] & 0xFF)
        pos += count
    else:
        for j in range(count):
            c = codes[sent[j]]
            p[pos] = <uint8_t>(c & 0xFF)
            p[pos + 1] = <uint8_t>((c >> 8) & 0xFF)
            pos += 2
    return pos


cdef class TickKernel:
    """The state arrays of a BatchEncoder, bound once (by name) as typed views.

    Binding 33 arrays costs microseconds per call; binding them once makes a tick's fixed
    cost one call with three arguments. The views share memory with the encoder's numpy
    arrays, so stream-table edits made in Python are seen by the next call. The kernel,
    ``_encode``, reads them from ``self`` (C struct fields, so also inside ``nogil``).
    Each field is read from its struct by name, so no argument order is a contract.
    """
    cdef const uint8_t[::1] active
    cdef const int32_t[::1] row
    cdef const int64_t[::1] sid
    cdef const int32_t[::1] lod
    cdef const int32_t[::1] mode
    cdef const int32_t[::1] bits
    cdef const int64_t[::1] keyframe_ms
    cdef const double[::1] dead_band
    cdef const int32_t[::1] hold
    cdef int32_t[::1] seq
    cdef int32_t[::1] kf_seq
    cdef int64_t[::1] last_t
    cdef int64_t[::1] kf_t
    cdef double[::1] next_due
    cdef uint8_t[::1] has_kf
    cdef uint8_t[::1] started
    cdef uint8_t[::1] force
    cdef int32_t[:, ::1] held
    cdef int32_t[:, ::1] kf
    cdef uint8_t[:, ::1] still
    cdef const int32_t[::1] tab_off
    cdef const int32_t[::1] tab_n
    cdef const int32_t[::1] tab_nm
    cdef const int32_t[::1] q_index
    cdef const double[::1] q_lo
    cdef const double[::1] q_scale
    cdef const int32_t[::1] q_cmin
    cdef const int32_t[::1] q_cmax
    cdef const double[::1] period
    cdef unsigned char[::1] out
    cdef Py_ssize_t max_msg
    cdef int64_t[::1] offsets
    cdef uint8_t[::1] kinds

    def __init__(self, streams, tables, out):
        """``streams``: the per-stream arrays (a BatchEncoder); ``tables``: its QuantTables;
        ``out``: its TickBuffers. A dtype or layout mismatch raises here, not per tick."""
        self.active = streams.active
        self.row = streams.row
        self.sid = streams.sid
        self.lod = streams.lod
        self.mode = streams.mode
        self.bits = streams.bits
        self.keyframe_ms = streams.keyframe_ms
        self.dead_band = streams.dead_band
        self.hold = streams.hold
        self.seq = streams.seq
        self.kf_seq = streams.kf_seq
        self.last_t = streams.last_t
        self.kf_t = streams.kf_t
        self.next_due = streams.next_due
        self.has_kf = streams.has_kf
        self.started = streams.started
        self.force = streams.force
        self.held = streams.held
        self.kf = streams.kf
        self.still = streams.still
        self.tab_off = tables.tab_off
        self.tab_n = tables.tab_n
        self.tab_nm = tables.tab_nm
        self.q_index = tables.q_index
        self.q_lo = tables.q_lo
        self.q_scale = tables.q_scale
        self.q_cmin = tables.q_cmin
        self.q_cmax = tables.q_cmax
        self.period = tables.period
        self.out = out.buffer
        self.max_msg = out.max_msg
        self.offsets = out.offsets
        self.kinds = out.kinds

    def __call__(self, int64_t t, const float[:, ::1] morphs, const float[:, ::1] channels):
        """Encode every active, due stream at time ``t`` into the bound output buffer."""
        self._encode(t, morphs, channels)

    cdef int _encode(
        self, int64_t t, const float[:, ::1] morphs, const float[:, ::1] channels
    ) except -1:
        """Encode every active, due stream at time ``t`` (see encoder._encode_stream).

        The GIL is released for the loop: every array is owned by the BatchEncoder, which is not
        shared between threads, and nothing in the loop touches a Python object.
        """
        cdef Py_ssize_t K = self.active.shape[0]
        cdef Py_ssize_t N = self.held.shape[1]
        cdef Py_ssize_t M = morphs.shape[1]
        cdef Py_ssize_t k, i, n, tab, e, count, pos = 0
        cdef int lv, b, md, sv, hk
        cdef int32_t seq_next, back, c, h
        cdef double per, nxt, x, v, db
        cdef int64_t ref_t, dt
        cdef bint keyframe
        cdef const float* mrow
        cdef const float* crow
        cdef const int32_t* qi
        cdef const double* qlo
        cdef const double* qsc
        cdef const int32_t* qmin
        cdef const int32_t* qmax
        cdef int32_t* hrow
        cdef int32_t* kfrow
        cdef uint8_t* srow
        if N > 8 * MAX_GROUPS * 2:
            raise ValueError("level too large for the kernel")
        if self.out.shape[0] < K * self.max_msg:
            raise ValueError("output buffer too small")
        if K == 0:
            self.offsets[0] = 0
            return 0
        cdef int32_t* sent = <int32_t*>malloc((N + 1) * sizeof(int32_t))
        cdef uint8_t em[2 * MAX_GROUPS]
        cdef uint8_t* p = &self.out[0]
        if sent == NULL:
            raise MemoryError()
        try:
            with nogil:
                for k in range(K):
                    self.offsets[k] = pos
                    self.kinds[k] = 0
                    if not self.active[k]:
                        continue
                    lv = self.lod[k]
                    b = self.bits[k]
                    md = self.mode[k]
                    per = self.period[lv]
                    # 1. rate
                    if self.started[k] and t < self.next_due[k] - per / 4:
                        continue
                    if self.started[k]:
                        nxt = self.next_due[k] + per
                    else:
                        nxt = t + per
                    self.next_due[k] = nxt if nxt > t else t + per
                    self.started[k] = 1
                    tab = lv * 2 + (1 if b == 16 else 0)
                    n = self.tab_n[tab]
                    qi = &self.q_index[self.tab_off[tab]]
                    qlo = &self.q_lo[self.tab_off[tab]]
                    qsc = &self.q_scale[self.tab_off[tab]]
                    qmin = &self.q_cmin[self.tab_off[tab]]
                    qmax = &self.q_cmax[self.tab_off[tab]]
                    mrow = &morphs[self.row[k], 0]
                    crow = &channels[self.row[k], 0]
                    hrow = &self.held[k, 0]
                    kfrow = &self.kf[k, 0]
                    srow = &self.still[k, 0]
                    seq_next = (self.seq[k] + 1) & 0xFFFF
                    keyframe = (
                        not self.has_kf[k] or self.force[k]
                        or t - self.kf_t[k] >= self.keyframe_ms[k]
                        or (md == MODE_KEYFRAME and ((seq_next - self.kf_seq[k]) & 0xFFFF) >= 32768)
                    )
                    count = 0
                    if keyframe:
                        # 2k. quantize; a keyframe carries every non-zero code
                        for i in range(n):
                            e = qi[i]
                            v = mrow[e] if e < M else crow[e - M]
                            c = quantize((v - qlo[i]) * qsc[i], qmin[i], qmax[i])
                            hrow[i] = c
                            kfrow[i] = c
                            srow[i] = 0
                            if c != 0:
                                sent[count] = <int32_t>i
                                count += 1
                        self.seq[k] = seq_next
                        self.kf_seq[k] = seq_next
                        self.kf_t[k] = t
                        self.last_t[k] = t
                        self.has_kf[k] = 1
                        self.force[k] = 0
                        pos = put_head(p, pos, 6, T_KEYFRAME, <uint64_t>self.sid[k],
                                       <uint64_t>lv, <uint64_t>seq_next)
                        pos = put_uint(p, pos, <uint64_t>t)
                        pos = put_body(p, pos, hrow, sent, count, n, b, em)
                        self.kinds[k] = T_KEYFRAME
                        continue
                    # 2d + 3. quantize, then the dead band (against the value) with hold
                    db = self.dead_band[k]
                    hk = self.hold[k]
                    for i in range(n):
                        e = qi[i]
                        v = mrow[e] if e < M else crow[e - M]
                        x = (v - qlo[i]) * qsc[i]
                        c = quantize(x, qmin[i], qmax[i])
                        h = hrow[i]
                        if c == h:
                            srow[i] = 0
                        elif fabs(x - h) > db:
                            srow[i] = 0
                            hrow[i] = c
                            sent[count] = <int32_t>i
                            count += 1
                        else:
                            sv = srow[i] + 1
                            if sv >= hk:
                                srow[i] = 0
                                hrow[i] = c
                                sent[count] = <int32_t>i
                                count += 1
                            else:
                                srow[i] = <uint8_t>sv
                    if md == MODE_KEYFRAME:
                        count = 0
                        for i in range(n):
                            if hrow[i] != kfrow[i]:
                                sent[count] = <int32_t>i
                                count += 1
                        back = (seq_next - self.kf_seq[k]) & 0xFFFF
                        ref_t = self.kf_t[k]
                    else:
                        if count == 0:
                            continue  # the decoder already shows this frame; no seq is used
                        back = 1
                        ref_t = self.last_t[k]
                    self.seq[k] = seq_next
                    self.last_t[k] = t
                    dt = t - ref_t
                    if dt < 0:
                        dt = 0
                    pos = put_head(p, pos, 7, T_DELTA, <uint64_t>self.sid[k],
                                   <uint64_t>lv, <uint64_t>seq_next)
                    pos = put_uint(p, pos, <uint64_t>back)
                    pos = put_uint(p, pos, <uint64_t>dt)
                    pos = put_body(p, pos, hrow, sent, count, n, b, em)
                    self.kinds[k] = T_DELTA
                self.offsets[K] = pos
        finally:
            free(sent)
        return 0


# ---------------------------------------------------------------------- decoding


cdef inline int read_uint(const uint8_t* p, Py_ssize_t size, Py_ssize_t* pos, uint64_t* v) noexcept nogil:
    """Read a msgpack non-negative integer; 0 when the next object is anything else."""
    cdef Py_ssize_t at = pos[0]
    cdef uint8_t b
    cdef int i, width
    if at >= size:
        return 0
    b = p[at]
    if b <= 0x7F:
        v[0] = b
        pos[0] = at + 1
        return 1
    if 0xCC <= b <= 0xCF:
        width = 1 << (b - 0xCC)
        if at + 1 + width > size:
            return 0
        v[0] = 0
        for i in range(width):
            v[0] = (v[0] << 8) | p[at + 1 + i]
        pos[0] = at + 1 + width
        return 1
    return 0


def parse_frame(const uint8_t[::1] data not None):
    """(type, sid, lod, seq, t_or_back, dt, body_offset, body_length) of an ordinary frame.

    ``None`` for anything else, including every malformed or out-of-range message: the caller
    then decodes with the reference reader, which names the error.
    """
    cdef Py_ssize_t size = data.shape[0]
    cdef Py_ssize_t pos = 1, length
    cdef const uint8_t* p
    cdef uint64_t kind, sid, lod, seq, a, dt = 0
    cdef uint8_t b
    if size < 2:
        return None
    p = &data[0]
    if p[0] != 0x96 and p[0] != 0x97:
        return None
    if not read_uint(p, size, &pos, &kind):
        return None
    if not ((kind == T_KEYFRAME and p[0] == 0x96) or (kind == T_DELTA and p[0] == 0x97)):
        return None
    if not (read_uint(p, size, &pos, &sid) and read_uint(p, size, &pos, &lod)
            and read_uint(p, size, &pos, &seq) and read_uint(p, size, &pos, &a)):
        return None
    if kind == T_DELTA and not read_uint(p, size, &pos, &dt):
        return None
    if sid > 0xFFFFFFFF or lod > 3 or seq > 0xFFFF:
        return None
    if kind == T_DELTA and (a < 1 or a >= 32768):
        return None
    if pos >= size:
        return None
    b = p[pos]
    if b == 0xC4 and pos + 2 <= size:
        length = p[pos + 1]
        pos += 2
    elif b == 0xC5 and pos + 3 <= size:
        length = (p[pos + 1] << 8) | p[pos + 2]
        pos += 3
    elif b == 0xC6 and pos + 5 <= size:
        length = ((<Py_ssize_t>p[pos + 1] << 24) | (p[pos + 2] << 16)
                  | (p[pos + 3] << 8) | p[pos + 4])
        pos += 5
    else:
        return None
    if pos + length != size:
        return None
    return (int(kind), int(sid), int(lod), int(seq), int(a), int(dt), pos, length)


def unpack_body(const uint8_t[::1] body not None, Py_ssize_t n, Py_ssize_t nm, int bits):
    """(index int32, code int32) of a frame body; ProtocolError('body') like the reference."""
    cdef Py_ssize_t size = body.shape[0]
    cdef Py_ssize_t groups = (n + 7) >> 3
    cdef Py_ssize_t gm = (groups + 7) >> 3
    cdef Py_ssize_t pos = gm, g, j, i, count = 0, width = bits >> 3
    cdef uint8_t mask
    cdef int32_t c
    if size < gm:
        raise ProtocolError(BODY, f"body of {size} bytes is shorter than its group mask")
    idx_arr = np.empty(n, dtype=np.int32)
    cdef int32_t[::1] idx = idx_arr
    for g in range(gm * 8):
        if not (body[g >> 3] >> (g & 7)) & 1:
            continue
        if g >= groups:
            raise ProtocolError(BODY, f"group {g} is set but the level has {groups} groups")
        if pos >= size:
            raise ProtocolError(BODY, "body ends inside the element masks")
        mask = body[pos]
        pos += 1
        if mask == 0:
            raise ProtocolError(BODY, f"group {g} is flagged but its element mask is empty")
        for j in range(8):
            if (mask >> j) & 1:
                i = g * 8 + j
                if i >= n:
                    raise ProtocolError(BODY, f"element {i} is set but the level has {n}")
                idx[count] = <int32_t>i
                count += 1
    if size - pos != width * count:
        raise ProtocolError(
            BODY,
            f"{count} elements need {width * count} value bytes, the body has {size - pos}",
        )
    codes_arr = np.empty(count, dtype=np.int32)
    cdef int32_t[::1] codes = codes_arr
    for i in range(count):
        if width == 1:
            c = body[pos + i]
            if idx[i] >= nm and c > 127:
                c -= 256
        else:
            c = body[pos + 2 * i] | (body[pos + 2 * i + 1] << 8)
            if idx[i] >= nm and c > 32767:
                c -= 65536
        codes[i] = c
    return idx_arr[:count], codes_arr
