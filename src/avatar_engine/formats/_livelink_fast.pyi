import numpy as np
import numpy.typing as npt

def parse_packet(
    packet: bytes | bytearray | memoryview,
) -> tuple[str, str, int, float, int, int, npt.NDArray[np.float32]]: ...
