"""One Euro on the real Live Link take with added noise: the issue's jitter and lag bars."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from avatar_engine.animation.layers import DEFAULT_FILTER
from avatar_engine.animation.measure import smoothing_report
from avatar_engine.kernels.backends import available_backends
from avatar_engine.rigs.arkit import ARKIT_NAMES, normalize_arkit_name
from avatar_engine.rigs.schema import Region


def _arkit(path: Path) -> np.ndarray:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    names = [normalize_arkit_name(h) for h in rows[0][2:]]
    data = np.array([[float(v) for v in r[2:]] for r in rows[1:]], np.float64)
    return data[:, [names.index(n) for n in ARKIT_NAMES]]


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("sigma", [0.01, 0.02, 0.03])
def test_one_euro_cuts_jitter_5x_with_under_one_frame_lag(
    reference_take: Path, backend: str, sigma: float
) -> None:
    mc, beta, dc = DEFAULT_FILTER[Region.MOUTH]
    r = smoothing_report(_arkit(reference_take), 60.0, noise_sigma=sigma, seed=0, min_cutoff=mc,
                         beta=beta, d_cutoff=dc, backend=backend)  # type: ignore[arg-type]  # fmt: skip
    assert r.jitter_cut >= 5.0, r
    assert r.lag_filtered <= 1.0, r
