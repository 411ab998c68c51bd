"""Array type aliases shared by every module: one declaration instead of a copy per module.

They name the dtype a buffer must have; the shape and the row layout are each owner's
docstring (kernels write into caller-owned buffers and never convert, so the dtype is part of
the contract).
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

B1: TypeAlias = npt.NDArray[np.bool_]
F32: TypeAlias = npt.NDArray[np.float32]
F64: TypeAlias = npt.NDArray[np.float64]
I8: TypeAlias = npt.NDArray[np.int8]
I16: TypeAlias = npt.NDArray[np.int16]
I32: TypeAlias = npt.NDArray[np.int32]
I64: TypeAlias = npt.NDArray[np.int64]
U8: TypeAlias = npt.NDArray[np.uint8]
U64: TypeAlias = npt.NDArray[np.uint64]
