"""Type stubs for the pybind11 extension (native/src). Use avatar_engine.kernels instead."""

import numpy as np
import numpy.typing as npt

from avatar_engine.kernels.audio_features import FeatureParams
from avatar_engine.kernels.compose import ComposeInputs, ComposeState, ComposeTables, ScatterTables
from avatar_engine.kernels.envelopes import EnvelopeBuffers, EnvelopeConsts
from avatar_engine.kernels.filters import OneEuroState, SpringState
from avatar_engine.kernels.life import LifeBuffers, LifeConsts
from avatar_engine.kernels.life_events import LifeEventBuffers, LifeEventConsts
from avatar_engine.kernels.retarget import RetargetArrays
from avatar_engine.kernels.sampling import CurveKeys

class RetargetPlan:
    n_inputs: int
    n_outputs: int
    def __init__(self, arrays: RetargetArrays) -> None: ...
    def __call__(
        self, weights: npt.NDArray[np.float32], out: npt.NDArray[np.float32], /
    ) -> int: ...

def sample_curves(
    keys: CurveKeys, t: npt.NDArray[np.float64], out: npt.NDArray[np.float32], /
) -> None: ...

class AudioFeaturePlan:
    def __init__(self, params: FeatureParams) -> None: ...
    def __call__(
        self,
        windows: npt.NDArray[np.float32],
        vad_rms: npt.NDArray[np.float32],
        out: npt.NDArray[np.float32],
        /,
    ) -> None: ...

def one_euro(
    state: OneEuroState,
    dt: npt.NDArray[np.float32],
    x: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    /,
) -> None: ...
def spring_step(state: SpringState, dt: float, target: npt.NDArray[np.float32], /) -> None: ...

class ComposePlan:
    n: int
    n_regions: int
    def __init__(self, tables: ComposeTables) -> None: ...
    def __call__(
        self,
        state: ComposeState,
        dt: float,
        inputs: ComposeInputs,
        out: npt.NDArray[np.float32],
        /,
    ) -> None: ...

class ScatterPlan:
    n_in: int
    n_out: int
    def __init__(self, tables: ScatterTables) -> None: ...
    def __call__(self, x: npt.NDArray[np.float32], out: npt.NDArray[np.float32], /) -> None: ...

class LifePlan:
    def __init__(self, consts: LifeConsts) -> None: ...
    def __call__(self, state: LifeBuffers, t: float, dt: float, /) -> None: ...

class LifeEventsPlan:
    def __init__(self, consts: LifeEventConsts) -> None: ...
    def __call__(self, state: LifeEventBuffers, t: float, /) -> None: ...
    def breaths(self, state: LifeEventBuffers, /) -> None: ...

class EnvelopesPlan:
    def __init__(self, consts: EnvelopeConsts) -> None: ...
    def __call__(self, state: EnvelopeBuffers, t: float, dt: float, /) -> None: ...

class ViewerPass:
    def __init__(self, epfd: int) -> None: ...
    def add(
        self, fd: int, carry: bytes, last_seq: int, last_t: int, key_seq: int, key_t: int
    ) -> None: ...
    def poll(
        self, timeout_s: float, start: float, end: float, server_t0: float, now: float
    ) -> tuple[float, list[int]]: ...
    def counters(self) -> npt.NDArray[np.int64]: ...
    def take_latencies(self) -> npt.NDArray[np.float32]: ...
    def __len__(self) -> int: ...
