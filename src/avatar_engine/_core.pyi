"""Type stubs for the pybind11 extension (native/src). Use avatar_engine.kernels instead."""

import numpy as np
import numpy.typing as npt

class RetargetPlan:
    n_inputs: int
    n_outputs: int
    def __init__(
        self,
        n_inputs: int,
        indptr: npt.NDArray[np.int32],
        indices: npt.NDArray[np.int32],
        weights: npt.NDArray[np.float32],
        gain: npt.NDArray[np.float32],
        offset: npt.NDArray[np.float32],
        lower: npt.NDArray[np.float32],
        upper: npt.NDArray[np.float32],
        exclusive: npt.NDArray[np.int32],
    ) -> None: ...
    def __call__(
        self, weights: npt.NDArray[np.float32], out: npt.NDArray[np.float32], /
    ) -> int: ...

def sample_curves(
    times: npt.NDArray[np.float64],
    values: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int32],
    t: npt.NDArray[np.float64],
    out: npt.NDArray[np.float32],
    /,
) -> None: ...
