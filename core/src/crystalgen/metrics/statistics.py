"""Property statistics (CDVAE appendix G.2): Wasserstein-1 distances between property distributions.

CDVAE compares 1,000 crystals drawn at random (without replacement) from the valid generated ones with the whole
reference split, for the density (g/cm^3), the number of distinct elements, and a property predicted by an
independent model for *both* sides. When fewer than 1,000 samples are valid, all valid samples are used (CDVAE
stopped with an error) and the true count is reported beside each distance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import wasserstein_distance

N_PROPERTY_SAMPLES = 1000


def draw_subset(indices: Sequence[int] | np.ndarray, n: int = N_PROPERTY_SAMPLES, seed: int = 0) -> np.ndarray:
    """``min(n, len(indices))`` of ``indices`` drawn without replacement (seeded); all of them when there are fewer."""
    pool = np.asarray(indices, dtype=np.int64)
    if len(pool) <= n:
        return pool
    rng = np.random.default_rng(seed)
    return pool[rng.choice(len(pool), n, replace=False)]


def wasserstein(generated: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray) -> float:
    """W1 distance between the two empirical distributions (NaN values dropped); NaN when a side is empty."""
    u, v = np.asarray(generated, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    u, v = u[np.isfinite(u)], v[np.isfinite(v)]
    if u.size == 0 or v.size == 0:
        return float("nan")
    return float(wasserstein_distance(u, v))
