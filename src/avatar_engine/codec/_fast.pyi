import numpy as np
import numpy.typing as npt

from avatar_engine.codec.encoder import BatchEncoder, QuantTables, TickBuffers

class TickKernel:
    """The BatchEncoder state arrays bound once, by name; call it once per tick."""

    def __init__(self, streams: BatchEncoder, tables: QuantTables, out: TickBuffers) -> None:
        """``streams``: a BatchEncoder's stream arrays, ``tables``: its QuantTables, ``out``:
        its TickBuffers (read by attribute name; dtypes and layouts checked here)."""
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
