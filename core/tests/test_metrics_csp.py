"""Crystal structure prediction scores on hand-made cases: DiffCSP's match@k and RMSE of the best match."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.metrics.csp import csp_metrics


def rock_salt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def perovskite() -> Structure:
    return Structure(Lattice.cubic(3.91), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def stretched(s: Structure, factor: float) -> Structure:
    """The same sites in a cell stretched along c: beyond ltol = 0.3 the matcher cannot match it."""
    matrix = s.lattice.matrix.copy()
    matrix[2] *= factor
    return Structure(Lattice(matrix), s.species, s.frac_coords)


def rattled(s: Structure, amount: float, seed: int = 0) -> Structure:
    rng = np.random.default_rng(seed)
    return Structure(s.lattice, s.species, (s.frac_coords + rng.uniform(-amount, amount, s.frac_coords.shape)) % 1.0)


def score(candidates, true, ks=(1, 2)):
    return csp_metrics(candidates, true, ks=ks, workers=0, progress=False)


def test_an_identical_structure_matches_with_rmse_zero():
    true = rock_salt()
    # a translated, supercell-free copy with the sites listed in another order is the same crystal
    same = Structure(true.lattice, list(reversed(true.species)), (list(reversed(true.frac_coords)) + np.array([0.1, 0.2, 0.3])) % 1.0)
    result = score([[same]], [true], ks=(1,))
    assert result["match_rate@1"] == 1.0
    assert result["rms_dist@1"] == pytest.approx(0.0, abs=1e-8)
    assert result["csp_n"] == 1 and result["csp_n_matched@1"] == 1


def test_a_distorted_structure_does_not_match():
    true = rock_salt()
    result = score([[stretched(true, 1.8)]], [true], ks=(1,))
    assert result["match_rate@1"] == 0.0 and math.isnan(result["rms_dist@1"])


def test_match_at_k_counts_a_match_among_the_first_k_and_keeps_the_best_rmse():
    salt, oxide = rock_salt(), perovskite()
    close, closer = rattled(oxide, 0.03, seed=1), rattled(oxide, 0.01, seed=2)
    candidates = [
        [stretched(salt, 1.8), salt],  # matches only with its second candidate
        [close, closer],  # both match: @2 keeps the smaller RMSE
    ]
    result = score(candidates, [salt, oxide])
    assert result["match_rate@1"] == 0.5 and result["match_rate@2"] == 1.0
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    rms_close, rms_closer = matcher.get_rms_dist(close, oxide)[0], matcher.get_rms_dist(closer, oxide)[0]
    assert 0 < rms_closer < rms_close
    assert result["rms_dist@1"] == pytest.approx(rms_close)
    assert result["rms_dist@2"] == pytest.approx((0.0 + rms_closer) / 2, abs=1e-6)


def test_failed_and_invalid_candidates_never_match():
    true = rock_salt()
    overlapping = Structure(true.lattice, ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]])  # atoms 0.06 A apart: invalid
    result = score([[None, overlapping]], [true])
    assert result["match_rate@2"] == 0.0 and result["csp_n_valid_candidates"] == 0


def test_one_candidate_counts_only_for_a_valid_true_crystal_as_in_diffcsp():
    """DiffCSP's one-sample evaluation asks the true crystal to be valid too; its k-sample one does not. A true crystal
    with two atoms 0.45 A apart (invalid) and a candidate with them 0.55 A apart (valid) match all the same."""
    true = Structure(Lattice.cubic(5.0), ["Na", "Na"], [[0, 0, 0], [0.09, 0, 0]])
    candidate = Structure(Lattice.cubic(5.0), ["Na", "Na"], [[0, 0, 0], [0.11, 0, 0]])
    result = score([[candidate, candidate]], [true])
    assert result["csp_n_true_valid"] == 0 and result["csp_n_valid_candidates"] == 2
    assert result["match_rate@1"] == 0.0
    assert result["match_rate@2"] == 1.0 and result["rms_dist@2"] > 0


def test_k_beyond_the_candidates_of_a_crystal_is_refused():
    with pytest.raises(ValueError, match="k must be between 1 and 1"):
        score([[rock_salt()]], [rock_salt()], ks=(1, 20))
    with pytest.raises(ValueError, match="one list of candidates per true crystal"):
        score([[rock_salt()]], [rock_salt(), rock_salt()])


def test_importing_the_csp_metric_leaves_the_lazy_exports_callable():
    """A submodule import sets the package attribute of its name; csp.py must not shadow `metrics.reconstruction`."""
    import subprocess
    import sys

    code = ("import crystalgen.metrics.csp; from crystalgen.metrics import reconstruction, csp_metrics; "
            "assert callable(reconstruction) and callable(csp_metrics)")
    subprocess.run([sys.executable, "-c", code], check=True)
