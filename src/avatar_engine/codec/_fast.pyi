import numpy as np
import numpy.typing as npt

class TickKernel:
    """The BatchEncoder state arrays bound once; call it once per tick."""

    def __init__(
        self,
        active: npt.NDArray[np.uint8],
        row: npt.NDArray[np.int32],
        sid: npt.NDArray[np.int64],
        lod: npt.NDArray[np.int32],
        mode: npt.NDArray[np.int32],
        bits: npt.NDArray[np.int32],
        keyframe_ms: npt.NDArray[np.int64],
        dead_band: npt.NDArray[np.float64],
        hold: npt.NDArray[np.int32],
        seq: npt.NDArray[np.int32],
        kf_seq: npt.NDArray[np.int32],
        last_t: npt.NDArray[np.int64],
        kf_t: npt.NDArray[np.int64],
        next_due: npt.NDArray[np.float64],
        has_kf: npt.NDArray[np.uint8],
        started: npt.NDArray[np.uint8],
        force: npt.NDArray[np.uint8],
        held: npt.NDArray[np.int32],
        kf: npt.NDArray[np.int32],
        still: npt.NDArray[np.uint8],
        tab_off: npt.NDArray[np.int32],
        tab_n: npt.NDArray[np.int32],
        tab_nm: npt.NDArray[np.int32],
        q_index: npt.NDArray[np.int32],
        q_lo: npt.NDArray[np.float64],
        q_scale: npt.NDArray[np.float64],
        q_cmin: npt.NDArray[np.int32],
        q_cmax: npt.NDArray[np.int32],
        period: npt.NDArray[np.float64],
        out: bytearray,
        max_msg: int,
        offsets: npt.NDArray[np.int64],
        kinds: npt.NDArray[np.uint8],
    ) -> None: ...
    def __call__(
        self,
        t: int,
        morphs: npt.NDArray[np.float32],
        channels: npt.NDArray[np.float32],
    ) -> None: ...

def parse_frame(data: bytes) -> tuple[int, int, int, int, int, int, int, int] | None: ...
def unpack_body(
    body: bytes, n: int, nm: int, bits: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]: ...
