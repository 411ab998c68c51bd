"""Counter-based random numbers: one reproducible stream per (session, purpose).

Why not ``numpy.random.Generator``? A session's blinks must not depend on which row it sits in,
how many other sessions exist, or whether another feature drew a number first. A counter-based
generator gives that for free: draw ``i`` of stream ``k`` of a session is a pure function
``splitmix64(key(session seed, k) + i)``, evaluated for many sessions at once with uint64
array arithmetic (wrap-around is the intended modulo-2**64 behaviour), and state is just one
counter per (session, stream) in an engine-owned array that moves with the session's row.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.types import F64, U64

_GAMMA: Final = np.uint64(0x9E3779B97F4A7C15)
_M1: Final = np.uint64(0xBF58476D1CE4E5B9)
_M2: Final = np.uint64(0x94D049BB133111EB)
_S30: Final = np.uint64(30)
_S27: Final = np.uint64(27)
_S31: Final = np.uint64(31)
_S11: Final = np.uint64(11)
_INV_2_53: Final = 1.0 / float(1 << 53)

# Purposes: each gets its own stream so adding draws to one never shifts another.
STREAM_SETUP: Final = 0
STREAM_BLINK: Final = 1
STREAM_GAZE: Final = 2
STREAM_MICRO: Final = 3
STREAM_STRESS: Final = 4
STREAM_THINK: Final = 5
STREAM_BREATH: Final = 6
N_STREAMS: Final = 7


def splitmix64(z: U64) -> U64:
    """The splitmix64 finaliser (Steele, Lea & Flood 2014), elementwise on uint64."""
    z = z + _GAMMA
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def session_keys(seeds: npt.ArrayLike) -> U64:
    """Per-session, per-stream keys ``(len(seeds), N_STREAMS)`` from user seeds."""
    wrapped = [int(seed) % (1 << 64) for seed in np.asarray(seeds).reshape(-1).tolist()]
    base = splitmix64(np.array(wrapped, dtype=np.uint64))  # any Python int is a valid seed
    streams = np.arange(N_STREAMS, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
    return splitmix64(base[:, None] ^ streams[None, :])


def uniforms(keys: U64, counters: U64, rows: npt.NDArray[np.intp], stream: int, k: int) -> F64:
    """``(len(rows), k)`` uniforms in [0, 1) from ``stream``, advancing those counters by k."""
    idx = counters[rows, stream][:, None] + np.arange(k, dtype=np.uint64)[None, :]
    bits = splitmix64(keys[rows, stream][:, None] + idx * _GAMMA)
    counters[rows, stream] += np.uint64(k)
    return (bits >> _S11).astype(np.float64) * _INV_2_53


def normals(u1: F64, u2: F64) -> F64:
    """Standard normals from two uniform arrays (Box-Muller, cosine branch)."""
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
