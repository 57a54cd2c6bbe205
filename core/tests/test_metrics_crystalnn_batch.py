"""The batched parts of the fast CrystalNN fingerprint against pymatgen's own per-site computation and brute force.

Shells of every site of a batch at once (weights.coordination_shells) against pymatgen's ``CrystalNN.get_nn_data``
site by site; the probability table against pymatgen's ``_semicircle_integral``; the threshold pre-check of the
order parameters against computing every shifted term; the pruned neighbour search against a search over a wide
image grid on tiny, skewed and long cells; small fast feature jobs staying in the calling process.
"""

from __future__ import annotations

import functools
import math
import os
import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.metrics.crystal_features import compact, rebuild
from crystalgen.metrics.crystalnn import order_parameters as ops
from crystalgen.metrics.crystalnn.fingerprint import batch_shells, crystalnn_fingerprints, preset_layout
from crystalgen.metrics.crystalnn.voronoi import SEARCH_CUTOFF, neighbour_shells
from crystalgen.metrics.crystalnn.weights import _quarter_circle_areas
from crystalgen.metrics.fingerprints import shell_order_parameters, site_fingerprints, structure_fingerprint
from crystalgen.metrics.parallel import WorkerPool, map_chunks


@functools.cache
def _crystals() -> list[Structure]:
    """Symmetric crystals (ties, exact angles) and strained, displaced copies (no ties)."""
    from crystalgen.data.embedded import build_embedded

    symmetric = [c.structure for c in build_embedded()[:8]]
    rng = np.random.default_rng(1)
    perturbed = []
    for s in symmetric:
        lattice = Lattice(s.lattice.matrix @ (np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))))
        cart = s.frac_coords @ lattice.matrix + rng.normal(scale=0.05, size=(len(s), 3))
        perturbed.append(Structure(lattice, s.species, cart, coords_are_cartesian=True))
    return symmetric + perturbed


def _site_shells(found, site: int) -> dict[int, tuple[float, np.ndarray]]:
    """cn -> (P(cn), sorted neighbour distances) of one site of a batch_shells result."""
    s = found.shells
    out = {}
    for k in np.flatnonzero(s.site == site):
        faces = s.order[s.first[k]:s.first[k] + s.cn[k]]
        out[int(s.cn[k])] = (float(s.probability[k]), np.sort(found.distance[faces]))
    return out


def test_batched_shells_equal_pymatgens_site_by_site():
    from crystalgen.metrics.fingerprints import _crystalnn

    structures = _crystals()
    found = batch_shells([compact(s) for s in structures])
    cnn = _crystalnn().cnn  # matminer's CrystalNN settings
    checked = 0
    for c, structure in enumerate(structures):
        for i in range(len(structure)):
            row = int(found.first_site[c]) + i
            if found.deferred[row]:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nndata = cnn.get_nn_data(structure, i)
            ours = _site_shells(found, row)
            theirs_cn = sorted(cn for cn in nndata.cn_weights if cn > 0)  # P(0): no fingerprint column
            assert sorted(ours) == theirs_cn, f"crystal {c} site {i}: coordination numbers"
            for cn, (probability, distances) in ours.items():
                assert probability == pytest.approx(nndata.cn_weights[cn], abs=1e-12)
                theirs = np.sort([np.linalg.norm(d["site"].coords - structure[i].coords) for d in nndata.cn_nninfo[cn]])
                np.testing.assert_allclose(distances, theirs, atol=1e-9)
            checked += 1
    assert checked > 0.9 * sum(len(s) for s in structures)


def test_a_batch_gives_each_crystal_the_shells_it_gets_alone():
    crystals = [compact(s) for s in _crystals()]
    together = batch_shells(crystals)
    for c, crystal in enumerate(crystals):
        alone = batch_shells([crystal])
        np.testing.assert_array_equal(alone.deferred, together.deferred[together.first_site[c]:together.first_site[c + 1]])
        for i in range(len(crystal[1])):
            a, b = _site_shells(alone, i), _site_shells(together, int(together.first_site[c]) + i)
            assert a.keys() == b.keys()
            for cn in a:
                assert a[cn][0] == b[cn][0]
                np.testing.assert_array_equal(a[cn][1], b[cn][1])


def test_probability_table_is_pymatgens_semicircle_integral_bit_for_bit():
    from pymatgen.analysis.local_env import CrystalNN

    areas = _quarter_circle_areas()
    rng = np.random.default_rng(0)
    for _ in range(200):
        ks = sorted(set(rng.integers(1, 1001, size=rng.integers(1, 6)).tolist()), reverse=True)
        bins = [k / 1000 for k in ks] + [0.0]
        for idx in range(len(ks)):
            below = ks[idx + 1] if idx + 1 < len(ks) else 0
            ours = (areas[ks[idx]] - areas[below]) / (0.25 * math.pi)
            assert ours == CrystalNN._semicircle_integral(bins, idx)


def _brute_ambiguous(unit: np.ndarray, kind: str, params: dict) -> np.ndarray:
    """Every shifted term computed for every neighbour set (the definition the pre-check shortens)."""
    g = ops.Geometry(unit)
    below = ops._terms(g, kind, params, ops.AMBIGUOUS_ANGLE)
    above = ops._terms(g, kind, params, -ops.AMBIGUOUS_ANGLE)
    out = np.zeros(len(unit), dtype=bool)
    for a, b in ((below.pair_num, above.pair_num), (below.pair_count, above.pair_count),
                 (below.triple_num, above.triple_num), (below.triple_count, above.triple_count)):
        out |= (np.abs(a - b) > ops.AGREEMENT).reshape(len(out), -1).any(axis=1)
    return out


@pytest.mark.parametrize("cn", [4, 5, 6, 7, 8, 12])
def test_threshold_precheck_gives_the_full_comparisons_answer(cn):
    rng = np.random.default_rng(cn)
    random = rng.normal(size=(40, cn, 3))
    # Exact right angles, 135-degree angles and antipodes (cube, octahedron and face-diagonal directions): the
    # cases that sit on thresholds.
    axes = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    diagonals = np.array([[x, y, 0] for x in (-1, 1) for y in (-1, 1)], dtype=float)
    pool = np.concatenate([axes, corners, diagonals, rng.normal(size=(12, 3))])
    exact = np.stack([pool[rng.choice(len(pool), cn, replace=False)] for _ in range(40)])
    unit = np.concatenate([random, exact])
    unit /= np.linalg.norm(unit, axis=-1, keepdims=True)
    g = ops.Geometry(unit)
    flagged = 0
    for kind, params in preset_layout().motifs[cn]:
        if kind in ops.THRESHOLDED:
            expected = _brute_ambiguous(unit, kind, params or {})
            np.testing.assert_array_equal(ops.ambiguous(g, kind, params or {}), expected)
            flagged += int(expected.sum())
    if cn == 8:
        assert flagged > 0  # the exact sets do reach the thresholds (bcc's sign at 90 degrees)


def _brute_neighbours(lattice: np.ndarray, frac: np.ndarray, cutoff: float) -> set[tuple]:
    wrapped = frac - np.floor(frac)
    cart = wrapped @ lattice
    reach = 2 + np.ceil(cutoff * np.linalg.norm(np.linalg.inv(lattice), axis=0)).astype(int)
    found = set()
    for image in np.ndindex(*(2 * r + 1 for r in reach)):
        shift = (np.array(image) - reach) @ lattice
        for i in range(len(cart)):
            for j in range(len(cart)):
                vector = cart[j] + shift - cart[i]
                length = np.linalg.norm(vector)
                if length <= cutoff and not (i == j and not np.any(np.array(image) - reach)):
                    found.add((i, j, *np.round(vector, 9)))
    return found


@pytest.mark.parametrize("name, lattice, frac", [
    ("tiny cubic, one atom", np.eye(3) * 1.6, [[0.3, 0.1, 0.9]]),
    ("skewed", Lattice.from_parameters(3.1, 4.2, 3.7, 48, 61, 75).matrix, [[0, 0, 0], [0.45, 0.2, 0.7]]),
    ("long and thin", np.diag([2.1, 2.3, 17.0]), [[0.1, 0.2, 0.05], [0.6, 0.7, 0.95], [0.5, 0.5, 0.5]]),
])
def test_pruned_neighbour_search_finds_every_image_in_reach(name, lattice, frac):
    site, neighbour, vector = neighbour_shells(np.asarray(lattice, float), np.asarray(frac, float), SEARCH_CUTOFF)
    ours = {(int(i), int(j), *np.round(v, 9)) for i, j, v in zip(site, neighbour, vector, strict=True)}
    assert len(ours) == len(site)
    assert ours == _brute_neighbours(np.asarray(lattice, float), np.asarray(frac, float), SEARCH_CUTOFF), name
    assert np.all(np.diff(site) >= 0)


@pytest.mark.parametrize("lattice, species, frac", [
    (np.eye(3) * 2.3, ["Fe"], [[0.2, 0.4, 0.1]]),
    (Lattice.from_parameters(3.3, 4.1, 5.2, 52, 68, 103).matrix, ["Na", "Cl"], [[0, 0, 0], [0.47, 0.31, 0.62]]),
])
def test_tiny_and_skewed_cells_match_matminer(lattice, species, frac):
    structure = Structure(Lattice(lattice), species, frac)
    fast = crystalnn_fingerprints([compact(structure)], lambda c, s: site_fingerprints(rebuild(c), s),
                                  lambda c, r: shell_order_parameters(rebuild(c), r))[0]
    np.testing.assert_allclose(fast, structure_fingerprint(structure), atol=1e-6)


def _pid(items: list) -> list[int]:
    return [os.getpid() for _ in items]


def test_small_jobs_run_here_and_a_started_pool_is_used():
    assert set(map_chunks(_pid, list(range(30)), workers=2, progress=False, min_items_per_worker=16)) == {os.getpid()}
    with WorkerPool(2) as pool:
        pool.executor()
        assert pool.started
        pids = map_chunks(_pid, list(range(30)), pool=pool, progress=False, min_items_per_worker=16, chunk_size=4)
    assert os.getpid() not in set(pids)
