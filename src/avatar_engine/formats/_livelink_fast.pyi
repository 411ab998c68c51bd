import numpy as np
import numpy.typing as npt

def parse_packet(
    packet: bytes | bytearray | memoryview,
) -> tuple[str, str, int, float, int, int, npt.NDArray[np.float32]]: ...
def parse_batch(
    rows: npt.NDArray[np.uint8],
    sizes: npt.NDArray[np.int64],
    n: int,
    values: npt.NDArray[np.float32],
) -> list[tuple[str, str, float] | str]: ...
