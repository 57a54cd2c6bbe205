"""Frechet distance: hand-computed Gaussian cases, singular covariances, and the CHGNet-embedding metric."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from pymatgen.core import Lattice, Structure

from crystalgen.metrics.frechet import frechet_distance, frechet_distance_embeddings, frechet_distance_gaussians


def test_isotropic_gaussians_by_hand():
    # N(0, I_d) vs N(mu, 4 I_d): |mu|^2 + d (1 + 4 - 2 * 2) = |mu|^2 + d
    d, mu = 5, np.array([1.0, -2.0, 0.0, 0.5, 3.0])
    assert frechet_distance_gaussians(np.zeros(d), np.eye(d), mu, 4 * np.eye(d)) == pytest.approx(mu @ mu + d, rel=1e-12)


def test_diagonal_and_one_dimensional_cases():
    a, b = np.array([1.0, 9.0, 0.25]), np.array([4.0, 1.0, 0.25])
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + 1.0  # means differ by 1 in one coordinate
    assert frechet_distance_gaussians([0, 0, 1], np.diag(a), [0, 0, 0], np.diag(b)) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance_gaussians([2.0], [[9.0]], [0.5], [[1.0]]) == pytest.approx(1.5**2 + (3 - 1) ** 2)


def test_non_commuting_covariances_agree_with_scipy_sqrtm():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = x @ x.T + np.eye(6), y @ y.T + 0.5 * np.eye(6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    reference = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance_gaussians(m1, c1, m2, c2) == pytest.approx(reference, rel=1e-9)


def test_singular_covariances_stay_real_and_zero_on_identical_sets():
    rng = np.random.default_rng(1)
    few = rng.normal(size=(5, 64))  # 5 samples in 64 dimensions: rank-4 covariance
    few[:, 10] = 3.0  # a constant feature
    assert frechet_distance_embeddings(few, few) == pytest.approx(0.0, abs=1e-9)
    value = frechet_distance_embeddings(few, few + 0.1)
    assert np.isreal(value) and value == pytest.approx(64 * 0.01, rel=1e-9)  # a pure shift adds |delta mu|^2


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal d"):
        frechet_distance_embeddings(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance_embeddings(np.zeros((1, 4)), np.zeros((3, 4)))


def _cubic(species: list[str], a: float, coords: list[list[float]]) -> Structure:
    return Structure(Lattice.cubic(a), species, coords)


def test_fcd_on_chgnet_embeddings(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path))
    crystals = [
        _cubic(["Na", "Cl"], a, [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in (2.9, 3.0, 3.1)
    ] + [_cubic(["Cs", "Br"], a, [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in (4.2, 4.3)] + [_cubic(["Si"], a, [[0, 0, 0]]) for a in (2.5, 2.6)]
    isolated = _cubic(["Na", "Cl"], 30.0, [[0, 0, 0], [0.5, 0.5, 0.5]])
    same = frechet_distance(crystals + [isolated], crystals)
    assert same["fcd"] == pytest.approx(0.0, abs=1e-6)
    assert (same["fcd_n"], same["fcd_reference_n"]) == (7, 7)  # the isolated-atom crystal has no embedding
    assert same["fcd_embedding"] == "chgnet-0.3.0 crystal_fea (64-d)"
    shifted = frechet_distance(crystals[3:], crystals)
    assert shifted["fcd"] > 0.01
    assert len(list((tmp_path / "metrics").glob("*.npz"))) == 1  # the reference embeddings were cached


def test_reference_goes_through_chgnet_once_for_energy_and_fcd(tmp_path, monkeypatch):
    """wdist_prop with chgnet_energy and fcd read the same CHGNet pass over the reference (energies and embeddings
    come from one forward pass, cached once for the reference)."""
    import crystalgen.metrics.chgnet_backend as backend
    from crystalgen.metrics import evaluate

    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path))
    batches: list[int] = []

    def fake_chgnet(structures, **options):
        batches.append(len(structures))
        volume = np.array([s.volume / len(s) for s in structures])
        return {"energy": -volume, "crystal_fea": np.outer(volume, np.linspace(1.0, 2.0, backend.CRYSTAL_FEA_DIM)),
                "refused": np.full(len(structures), "")}

    monkeypatch.setattr(backend, "chgnet_predict", fake_chgnet)
    reference = [_cubic(["Na", "Cl"], a, [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in (2.9, 3.0, 3.1, 3.2, 3.3)]
    samples = reference[:3]
    out = evaluate(samples, reference, metrics=["wdist_prop", "fcd"], property_predictor="chgnet_energy",
                   workers=1, progress=False)
    assert batches.count(len(reference)) == 1  # one pass over the reference, two over the samples (3 crystals each)
    assert sorted(batches) == [3, 3, 5]
    assert out["wdist_prop_reference_n"] == out["fcd_reference_n"] == 5
    energies = [-s.volume / len(s) for s in reference]  # the fake's energies: the reference's reached wdist_prop
    assert out["wdist_prop"] == pytest.approx(scipy.stats.wasserstein_distance(energies[:3], energies))
    again = evaluate(samples, reference, metrics=["wdist_prop", "fcd"], property_predictor="chgnet_energy",
                     workers=1, progress=False)
    assert sorted(batches) == [3, 3, 3, 3, 5]  # the reference's outputs came from the cache
    assert again["fcd"] == pytest.approx(out["fcd"]) and again["wdist_prop"] == pytest.approx(out["wdist_prop"])
