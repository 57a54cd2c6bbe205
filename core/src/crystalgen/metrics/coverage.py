"""Coverage (COV-R, COV-P) and diversity of generated crystals (CDVAE appendix G.2, ``compute_cov``).

With structure fingerprints s and standardised composition fingerprints c (see fingerprints.py):

    COV-R = fraction of reference crystals j with  min_i |s_i - s_j| <= delta_s  and  min_i |c_i - c_j| <= delta_c
    COV-P = (number of generated crystals i with  min_j |s_i - s_j| <= delta_s  and  min_j |c_i - c_j| <= delta_c)
            / (number of generated crystals, including those without a fingerprint)

As in CDVAE's code, the structure and composition minima are taken separately: the nearest crystal in structure
need not be the nearest in composition. amsd/amcd are the mean of those minimum structure/composition distances.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist

from crystalgen.metrics.cdvae_constants import COV_CUTOFFS_CDVAE, COV_CUTOFFS_SYMAT, canonical_dataset

#: named cutoff sets: CDVAE's code, and the looser ones of the SyMat and StructRepDiff papers (the same values)
COV_CUTOFF_SETS = {"cdvae": COV_CUTOFFS_CDVAE, "symat": COV_CUTOFFS_SYMAT, "structrepdiff": COV_CUTOFFS_SYMAT}

#: crystalgen's embedded demo set has no published cutoffs; like MP-20 it mixes chemistries and cell sizes, so it
#: takes MP-20's CDVAE cutoffs under every named set (docs/metrics.md).
EMBEDDED_COV_CUTOFFS = (0.4, 10.0)

# Row block of the distance computation: a (block x m) float64 matrix at a time (2048 x 9046 ~ 150 MB).
_BLOCK = 2048


def cov_cutoffs(dataset: str | None, cutoffs: str | tuple[float, float] = "cdvae") -> tuple[float, float]:
    """(structure cutoff, composition cutoff): an explicit pair, or a named set of COV_CUTOFF_SETS."""
    if not isinstance(cutoffs, str):
        struct, comp = cutoffs
        return float(struct), float(comp)
    if cutoffs not in COV_CUTOFF_SETS:
        names = ", ".join(COV_CUTOFF_SETS)
        raise ValueError(f"unknown COV cutoff set {cutoffs!r}; choose one of {names} or give (struct, comp)")
    if dataset and dataset.split(":", 1)[0].strip().lower() == "embedded":
        return EMBEDDED_COV_CUTOFFS
    key = canonical_dataset(dataset)
    if key is None:
        raise ValueError(
            f"no COV cutoffs for reference {dataset!r} (known: {sorted(COV_CUTOFFS_CDVAE)}); "
            "pass options cov_cutoffs=(struct_cutoff, comp_cutoff)"
        )
    return COV_CUTOFF_SETS[cutoffs][key]


def nearest_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each row of ``a`` to its nearest row of ``b``, and from each row of ``b`` to ``a``.

    The nearest neighbour is found with one matrix product per block (|x|^2 + |y|^2 - 2 x.y); the returned
    distance is then recomputed exactly as |x - y| for that pair, so the values equal scipy's cdist minima.
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    sq_b = np.einsum("ij,ij->i", b, b)
    a_to_b = np.empty(len(a), dtype=np.int64)
    b_best = np.full(len(b), np.inf)
    b_to_a = np.zeros(len(b), dtype=np.int64)
    for start in range(0, len(a), _BLOCK):
        block = a[start:start + _BLOCK]
        sq = np.einsum("ij,ij->i", block, block)[:, None] + sq_b[None, :] - 2.0 * block @ b.T
        a_to_b[start:start + len(block)] = sq.argmin(axis=1)
        rows = sq.argmin(axis=0)
        better = sq[rows, np.arange(len(b))] < b_best
        b_best[better] = sq[rows, np.arange(len(b))][better]
        b_to_a[better] = rows[better] + start
    return np.linalg.norm(a - b[a_to_b], axis=1), np.linalg.norm(b - a[b_to_a], axis=1)


def coverage(
    struct_fps: np.ndarray,
    comp_fps: np.ndarray,
    ref_struct_fps: np.ndarray,
    ref_comp_fps: np.ndarray,
    struct_cutoff: float,
    comp_cutoff: float,
    n_generated: int | None = None,
) -> dict[str, float]:
    """COV-R / COV-P (fractions) and amsd/amcd; composition fingerprints already standardised.

    ``struct_fps``/``comp_fps`` hold the generated crystals that have fingerprints; ``n_generated`` counts all
    generated crystals (COV-P's denominator, as in CDVAE), and defaults to ``len(struct_fps)``.
    """
    n_generated = len(struct_fps) if n_generated is None else n_generated
    if len(struct_fps) == 0 or len(ref_struct_fps) == 0:
        return {"cov_recall": 0.0, "cov_precision": 0.0}
    struct_precision, struct_recall = nearest_distances(struct_fps, ref_struct_fps)
    comp_precision, comp_recall = nearest_distances(comp_fps, ref_comp_fps)
    recalled = (struct_recall <= struct_cutoff) & (comp_recall <= comp_cutoff)
    precise = (struct_precision <= struct_cutoff) & (comp_precision <= comp_cutoff)
    return {
        "cov_recall": float(recalled.mean()),
        "cov_precision": float(precise.sum() / max(n_generated, 1)),
        "amsd_recall": float(struct_recall.mean()),
        "amsd_precision": float(struct_precision.mean()),
        "amcd_recall": float(comp_recall.mean()),
        "amcd_precision": float(comp_precision.mean()),
    }


def mean_pairwise_distance(fingerprints: np.ndarray) -> float:
    """Diversity (CDVAE ``get_fp_pdist``): mean Euclidean distance over all pairs of rows."""
    if len(fingerprints) < 2:
        return float("nan")
    return float(pdist(np.asarray(fingerprints, dtype=np.float64)).mean())
