"""Frechet distance between learned crystal embeddings (GemsDiff's FAD idea, after FID, Heusel et al. 2017).

GemsDiff (section 5.2) embeds crystals with a pretrained ALIGNN with its last layer removed and compares the
Gaussian fits of generated and reference embeddings. ALIGNN's weights cannot be fetched here, so we use the
embedding of a model that ships its weights in its package: CHGNet's 64-d ``crystal_fea``. The result is named
for what it is, ``fcd`` with ``fcd_embedding = "chgnet-0.3.0 crystal_fea (64-d)"``; it is not comparable to
the FAD values of the GemsDiff paper (different network, 64 instead of 256 dimensions).

    FD = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

Tr((S_1 S_2)^(1/2)) is computed as the sum of the singular values of S_1^(1/2) S_2^(1/2) (their squares are the
eigenvalues of S_1 S_2), with each symmetric square root from eigh. The result is real by construction and
singular covariances (fewer crystals than dimensions, constant features) need no jitter; ``scipy.linalg.sqrtm(S_1
@ S_2)`` can return complex values with spurious imaginary parts there, and square roots of the eigenvalues of
S_1^(1/2) S_2 S_1^(1/2) lose half the digits near zero (about 1e-5 error on a rank-4, 64-d example).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix via eigh, with round-off negative eigenvalues clipped to 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_gaussians(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Squared 2-Wasserstein (Frechet) distance between N(mu1, cov1) and N(mu2, cov2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, cov {cov1.shape} vs {cov2.shape}")
    trace_cross = np.linalg.svd(_psd_sqrt(cov1) @ _psd_sqrt(cov2), compute_uv=False).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_cross)
    return max(value, 0.0)  # a true distance; tiny negatives are round-off


def frechet_distance_embeddings(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance between the Gaussian fits (mean, unbiased covariance) of two embedding sets (n, d)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"embeddings must be (n, d) with equal d, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"need at least 2 embeddings per set for a covariance, got {len(x)} and {len(y)}")
    return frechet_distance_gaussians(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def frechet_distance(
    structures: Sequence[Structure],
    reference: Sequence[Structure],
    *,
    batch_size: int = 64,
    progress: bool = False,
    refused: list[str] | None = None,
) -> dict[str, float | int | str]:
    """``fcd``: Frechet distance between CHGNet crystal embeddings of ``structures`` and ``reference``.

    The reference embeddings are cached on disk (crystalgen.metrics.cache). Crystals CHGNet cannot
    embed are left out and counted: ``fcd_n`` / ``fcd_reference_n`` are the numbers actually used; those refused for
    the memory budget are counted in ``fcd_n_refused`` with the first reason, and ``refused``, when given, is
    extended with one reason per structure ("" for the others). GemsDiff found the estimate settles at about 10,000
    crystals per set (its fig. 4); small sets bias it upwards.
    """
    from crystalgen.metrics.chgnet_backend import CHGNET_MODEL, chgnet_predict, chgnet_predict_cached, embedding_name
    from crystalgen.metrics.memory import refusal_summary

    predicted = chgnet_predict(structures, batch_size=batch_size, progress=progress)
    generated, reasons = predicted["crystal_fea"], [str(r) for r in predicted["refused"]]
    if refused is not None:
        refused.extend(reasons)
    ref = chgnet_predict_cached(reference, batch_size=batch_size, progress=progress)["crystal_fea"]
    generated = generated[np.isfinite(generated).all(axis=1)]
    ref = ref[np.isfinite(ref).all(axis=1)]
    fcd = frechet_distance_embeddings(generated, ref) if len(generated) >= 2 and len(ref) >= 2 else float("nan")
    return {
        "fcd": fcd,
        "fcd_n": int(len(generated)),
        "fcd_reference_n": int(len(ref)),
        "fcd_embedding": embedding_name(CHGNET_MODEL),
        **refusal_summary("fcd", reasons),
    }
