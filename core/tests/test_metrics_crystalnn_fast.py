"""The fast CrystalNN "ops" fingerprint against matminer's, crystal by crystal (the reference implementation).

CI: symmetric crystals of the embedded set (exact 90-degree angles, ties between neighbours: the cases where the
fast path must defer to matminer) and the same crystals with atoms displaced and cells strained (generated-like),
plus hand-built cases. The slow test compares every crystal of the three benchmark test splits.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.metrics.crystal_features import compact, rebuild
from crystalgen.metrics.crystalnn.fingerprint import crystalnn_fingerprints
from crystalgen.metrics.fingerprints import shell_order_parameters, site_fingerprints, structure_fingerprint
from crystalgen.metrics.options import EvaluationOptions

TOLERANCE = 1e-6  # per component, the bar (observed: ~1e-9)
N_EMBEDDED = 120


def _embedded(n: int) -> list[Structure]:
    from crystalgen.data.embedded import build_embedded

    return [c.structure for c in build_embedded()[:n]]


def _perturbed(structures: list[Structure], seed: int = 0) -> list[Structure]:
    rng = np.random.default_rng(seed)
    out = []
    for s in structures:
        lattice = Lattice(s.lattice.matrix @ (np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))))
        cart = s.frac_coords @ lattice.matrix + rng.normal(scale=0.05, size=(len(s), 3))
        out.append(Structure(lattice, s.species, cart, coords_are_cartesian=True))
    return out


class CountingFallback:
    """matminer for the deferred sites (call) and shells (``shells``), counting them."""

    def __init__(self) -> None:
        self.sites = 0
        self.shells_asked = 0

    def __call__(self, crystal, sites):
        self.sites += len(sites)
        return site_fingerprints(rebuild(crystal), sites)

    def shells(self, crystal, requests):
        self.shells_asked += len(requests)
        return shell_order_parameters(rebuild(crystal), requests)


def _reference(structures: list[Structure]) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for s in structures:
        try:
            out.append(structure_fingerprint(s))
        except Exception:  # noqa: BLE001 - as the suite: no fingerprint
            out.append(None)
    return out


def _assert_same(fast, reference, structures):
    for i, (a, b) in enumerate(zip(fast, reference, strict=True)):
        assert (a is None) == (b is None), f"crystal {i} {structures[i].composition}: fingerprint failed on one side"
        if a is not None:
            worst = np.abs(a - b).max()
            assert worst <= TOLERANCE, f"crystal {i} {structures[i].composition}: |fast - matminer| = {worst:.2e}"


@pytest.fixture(scope="module")
def embedded_pairs():
    symmetric = _embedded(N_EMBEDDED)
    return symmetric, _perturbed(symmetric)


@pytest.fixture(scope="module")
def symmetric_reference(embedded_pairs):
    return _reference(embedded_pairs[0])


def test_fast_equals_matminer_on_symmetric_crystals(embedded_pairs, symmetric_reference):
    structures = embedded_pairs[0]
    fallback = CountingFallback()
    fast = crystalnn_fingerprints([compact(s) for s in structures], fallback)
    _assert_same(fast, symmetric_reference, structures)
    n_sites = sum(len(s) for s in structures)
    assert fallback.sites < 0.2 * n_sites  # deferral is the exception, even on exact prototypes


def test_shell_fallback_asks_matminer_for_single_motifs_and_still_matches(embedded_pairs, symmetric_reference):
    """With the shell fallback, a site whose only doubt is one motif of one shell is not recomputed whole: the Pm
    sites of AcPm3 (I4/mmm, as mp-1183241) have 8 neighbours of equal weight whose order changes the bcc motif."""
    acpm3 = Structure.from_spacegroup("I4/mmm", Lattice.tetragonal(5.28, 10.594), ["Ac", "Pm", "Pm"],
                                      [[0, 0, 0], [0.5, 0, 0.75], [0.5, 0.5, 0]])
    structures = [*embedded_pairs[0], acpm3]
    whole_sites, by_shell = CountingFallback(), CountingFallback()
    crystalnn_fingerprints([compact(s) for s in structures], whole_sites)
    fast = crystalnn_fingerprints([compact(s) for s in structures], by_shell, by_shell.shells)
    _assert_same(fast, [*symmetric_reference, structure_fingerprint(acpm3)], structures)
    assert by_shell.shells_asked >= 4  # the four Pm sites of the conventional cell, one bcc value each
    assert by_shell.sites + 4 <= whole_sites.sites


def test_fast_equals_matminer_on_perturbed_crystals(embedded_pairs):
    structures = embedded_pairs[1]
    fallback = CountingFallback()
    fast = crystalnn_fingerprints([compact(s) for s in structures], fallback)
    _assert_same(fast, _reference(structures), structures)
    # few exact angles or equal weights survive the displacements (observed 19 of 616 sites)
    assert fallback.sites <= 0.05 * sum(len(s) for s in structures)


def test_bcc_metal_with_tied_neighbours_matches():
    # bcc iron: 8 neighbours of equal weight at 109.47 / 70.53 / 180 degrees, 6 second neighbours at 90 degrees
    iron = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    fallback = CountingFallback()
    fast = crystalnn_fingerprints([compact(iron)], fallback)[0]
    np.testing.assert_allclose(fast, structure_fingerprint(iron), atol=TOLERANCE)
    assert fast[0] == 0.0 and fast.max() > 0


def _bcc_value(unit: np.ndarray, ties: np.ndarray) -> tuple[float, bool]:
    from crystalgen.metrics.crystalnn.fingerprint import preset_layout
    from crystalgen.metrics.crystalnn.order_parameters import order_parameters

    motifs = preset_layout().motifs[8]
    column = [kind for kind, _ in motifs].index("bcc")
    values, unsure = order_parameters(unit[None], np.ones((1, len(unit))), motifs, ties[None])
    assert not unsure[0, np.arange(len(motifs)) != column].any()  # the other motifs do not depend on the order
    return float(values[0, column]), bool(unsure[0, column])


def test_bcc_of_tied_neighbours_is_computed_only_when_no_order_can_change_it():
    """Neighbours of equal weight may come in any order from pymatgen; the fast path keeps a bcc value only when
    every order gives the same one (checked here over random orders), and defers the others."""
    rng = np.random.default_rng(1)
    cube = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float) / np.sqrt(3)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    irregular = rng.normal(size=(8, 3))
    cases = {"cube": cube @ rotation.T, "irregular": irregular / np.linalg.norm(irregular, axis=1, keepdims=True)}
    kept = {}
    for name, unit in cases.items():
        one_group = np.zeros(8, dtype=np.int64)
        value, unsure = _bcc_value(unit, one_group)
        others = [_bcc_value(unit[order], one_group)[0] for order in (rng.permutation(8) for _ in range(20))]
        if not unsure:
            assert max(abs(v - value) for v in others) < 1e-12, name
        kept[name] = not unsure
        if name == "irregular":
            assert max(others) - min(others) > 1e-6  # the order matters here, so deferring was necessary
        # with all weights distinct the order is the weight order: never deferred for ties
        assert not _bcc_value(unit, np.arange(8))[1] or name == "cube"
    assert kept == {"cube": True, "irregular": False}


def test_rock_salt_is_octahedral_without_deferral():
    salt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    fallback = CountingFallback()
    fast = crystalnn_fingerprints([compact(salt.get_primitive_structure())], fallback)[0]
    np.testing.assert_allclose(fast, structure_fingerprint(salt), atol=TOLERANCE)
    from crystalgen.metrics.crystalnn.fingerprint import preset_layout

    layout = preset_layout()
    octahedral = layout.offset[6] + 1 + [k for k, _ in layout.motifs[6]].index("oct_max")
    assert fast[layout.offset[6]] == pytest.approx(1.0)  # CN 6 with certainty
    assert fast[octahedral] == pytest.approx(1.0, abs=1e-9)  # a perfect octahedron


def test_overlapping_atoms_are_left_to_matminer():
    # two atoms 1e-8 A apart: qhull's treatment decides, so the fast path defers the whole crystal's sites
    s = Structure(Lattice.cubic(4.0), ["Na", "Na", "Cl"], [[0, 0, 0], [1e-9, 0, 0], [0.5, 0.5, 0.5]])
    fallback = CountingFallback()
    fast = crystalnn_fingerprints([compact(s)], fallback)[0]
    reference = _reference([s])[0]
    assert fallback.sites >= 2
    assert (fast is None) == (reference is None)
    if fast is not None:
        np.testing.assert_allclose(fast, reference, atol=TOLERANCE)


@pytest.mark.parametrize("name", ["two atoms on one spot", "a duplicate in rock salt", "a duplicate, rattled"])
def test_atoms_on_exactly_the_same_spot_give_matminers_values(name):
    # Generated crystals put atoms on one spot (SymmCD's projection onto a Wyckoff position merges them): 20 of 100
    # samples of a short `crystalgen run symmcd` differed from matminer by up to 0.27 when the zero-length vector was
    # dropped as if it were the site itself, and matminer's failures on such crystals came out as fingerprints.
    if name == "two atoms on one spot":
        s = Structure(Lattice.cubic(4.942), ["Eu", "Pb"], [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    else:
        salt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        s = salt.copy()
        s.append("Cl", salt[0].frac_coords)
        if name == "a duplicate, rattled":
            s = _perturbed([s], seed=3)[0]
            s.replace(len(s) - 1, "Cl", s[0].frac_coords)
    fallback = CountingFallback()
    fast = crystalnn_fingerprints([compact(s)], fallback)[0]
    reference = _reference([s])[0]
    assert fallback.sites == len(s)  # the whole crystal goes to the reference implementation
    assert (fast is None) == (reference is None)
    if fast is not None:
        np.testing.assert_allclose(fast, reference, atol=TOLERANCE)


def test_backend_option_is_checked():
    assert EvaluationOptions().fingerprint_backend == "fast"
    assert EvaluationOptions(fingerprint_backend="matminer").fingerprint_backend == "matminer"
    with pytest.raises(ValueError, match="fingerprint_backend"):
        EvaluationOptions(fingerprint_backend="voronoi")


@pytest.mark.slow
@pytest.mark.parametrize("split", ["perov_5", "carbon_24", "mp_20"])
def test_fast_equals_matminer_on_every_test_crystal(split, tmp_path):
    """Every crystal of a benchmark test split (CRYSTALGEN_DATA); matminer's side comes from the metrics cache
    when a run has already computed it (same key as crystalgen's reference fingerprints). For a quicker check of
    the first crystals only, set CRYSTALGEN_FINGERPRINT_TEST_LIMIT=N."""
    from crystalgen.metrics import read_samples
    from crystalgen.metrics.cache import ArrayCache
    from crystalgen.metrics.reference import ReferenceSet
    from crystalgen.testing import benchmark_csv

    structures, _, _ = read_samples(benchmark_csv(split, "test"), progress=False)
    structures = [s for s in structures if s is not None][:int(os.environ.get("CRYSTALGEN_FINGERPRINT_TEST_LIMIT", 0)) or None]
    matminer = ReferenceSet(structures, name=split, progress=False)
    matminer.fingerprint_backend = "matminer"
    fast = ReferenceSet(structures, name=split, progress=False, cache=ArrayCache(tmp_path))  # never cached
    ref_struct, ref_comp = matminer.fingerprints
    fast_struct, fast_comp = fast.fingerprints
    np.testing.assert_array_equal(np.isnan(fast_struct).any(axis=1), np.isnan(ref_struct).any(axis=1))
    ok = ~np.isnan(ref_struct).any(axis=1)
    worst = np.abs(fast_struct[ok] - ref_struct[ok]).max(axis=1)
    assert worst.max() <= TOLERANCE, f"{split}: crystal {int(np.argmax(worst))} differs by {worst.max():.2e}"
    np.testing.assert_array_equal(fast_comp[ok], ref_comp[ok])


def test_the_neighbour_search_in_blocks_finds_the_same_shells(monkeypatch):
    """The search runs over blocks of sites to bound its memory (a 2,048-atom cell would need ~12 GB at once); the
    neighbours, their order and their vectors must not depend on the block size."""
    from crystalgen.metrics.crystalnn import voronoi

    crystal = _perturbed(_embedded(8))[7]
    crystal.make_supercell([2, 2, 1])
    lattice, frac = crystal.lattice.matrix, crystal.frac_coords
    whole = voronoi.neighbour_shells(lattice, frac)
    monkeypatch.setattr(voronoi, "_BLOCK_BYTES", 1)  # one site per block
    blocked = voronoi.neighbour_shells(lattice, frac)
    assert len(whole[0]) > 10 * len(frac)
    for a, b in zip(whole, blocked, strict=True):
        np.testing.assert_array_equal(a, b)
