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

class AudioFeaturePlan:
    def __init__(self, yin_threshold: float, silence_rms: float) -> None: ...
    def __call__(
        self,
        windows: npt.NDArray[np.float32],
        vad_rms: npt.NDArray[np.float32],
        out: npt.NDArray[np.float32],
        /,
    ) -> None: ...

def one_euro(
    x: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    xhat: npt.NDArray[np.float32],
    dxhat: npt.NDArray[np.float32],
    primed: npt.NDArray[np.uint8],
    dt: npt.NDArray[np.float32],
    region: npt.NDArray[np.int8],
    min_cutoff: npt.NDArray[np.float32],
    beta: npt.NDArray[np.float32],
    d_cutoff: npt.NDArray[np.float32],
    /,
) -> None: ...
def spring_step(
    pos: npt.NDArray[np.float32],
    vel: npt.NDArray[np.float32],
    target: npt.NDArray[np.float32],
    omega: npt.NDArray[np.float32],
    dt: float,
    /,
) -> None: ...

class ComposePlan:
    n: int
    n_regions: int
    def __init__(
        self,
        n_regions: int,
        region: npt.NDArray[np.int8],
        lower: npt.NDArray[np.float32],
        upper: npt.NDArray[np.float32],
        exclusive: npt.NDArray[np.int32],
        couple: npt.NDArray[np.int32],
        vcol: npt.NDArray[np.float32],
    ) -> None: ...
    def __call__(
        self,
        layers: npt.NDArray[np.float32],
        weight: npt.NDArray[np.float32],
        mode: npt.NDArray[np.int8],
        emask: npt.NDArray[np.float32],
        couple: npt.NDArray[np.float32],
        vmax: npt.NDArray[np.float32],
        dt: float,
        prev: npt.NDArray[np.float32],
        primed: npt.NDArray[np.uint8],
        out: npt.NDArray[np.float32],
        /,
    ) -> None: ...

class ScatterPlan:
    n_in: int
    n_out: int
    def __init__(
        self,
        n_in: int,
        n_out: int,
        rows: npt.NDArray[np.int32],
        cols: npt.NDArray[np.int32],
        weights: npt.NDArray[np.float32],
    ) -> None: ...
    def __call__(self, x: npt.NDArray[np.float32], out: npt.NDArray[np.float32], /) -> None: ...

class LifePlan:
    def __init__(
        self,
        blink_amplitude: float,
        inhale_fraction: float,
        breath_speaking_scale: float,
        breath_head_pitch: float,
        amp_yaw: float,
        amp_pitch: float,
        amp_roll: float,
        speaking_gain: float,
        follow: float,
        brow_decay: float,
        eye_morph_range: float,
    ) -> None: ...
    def __call__(self, t: float, dt: float, *buffers: npt.NDArray[np.generic]) -> None: ...
