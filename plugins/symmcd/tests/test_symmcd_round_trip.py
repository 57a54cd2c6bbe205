"""Representation round trip: structure -> (G, k, X', S, A') -> structure (transform, then the sampler's decoder)."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure
from symmcd_testdata import from_spacegroup

from crystalgen.testing import benchmark_structures
from crystalgen_symmcd.asymmetric_unit import REFERENCE_POINT, analyse, orbit_of, periodic_distances
from crystalgen_symmcd.round_trip import round_trip
from crystalgen_symmcd.symmetry import site_symmetry_classes, space_group_table


def prototypes() -> dict[str, Structure]:
    return {
        "rocksalt": from_spacegroup(225, Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "perovskite": from_spacegroup(221, Lattice.cubic(3.9), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
        "wurtzite": from_spacegroup(186, Lattice.hexagonal(3.25, 5.2), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]),
        "rutile": from_spacegroup(136, Lattice.tetragonal(4.59, 2.96), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]),
        "monoclinic": from_spacegroup(14, Lattice.monoclinic(5.1, 6.3, 7.2, 104.0), ["Zr", "O"],
                                                [[0.27, 0.04, 0.21], [0.07, 0.33, 0.34]]),
        "triclinic": Structure(Lattice.from_parameters(4.1, 5.3, 6.2, 81, 97, 112), ["Cu", "O", "O"],
                               [[0.1, 0.2, 0.3], [0.6, 0.1, 0.8], [0.35, 0.7, 0.45]]),
        "spinel": from_spacegroup(227, Lattice.cubic(8.08), ["Mg", "Al", "O"],
                                            [[0.125, 0.125, 0.125], [0.5, 0.5, 0.5], [0.263, 0.263, 0.263]]),
    }


@pytest.mark.parametrize("name", list(prototypes()))
def test_prototype_round_trip(name):
    result = round_trip(prototypes()[name])
    assert result.status == "match", result.reason


def test_representatives_lie_in_the_asymmetric_unit_with_their_own_site_symmetry():
    """Each representative is the orbit member nearest to the reference point (a Dirichlet asymmetric unit)
    and its label S is the site symmetry of that very point (not of the Wyckoff position's first member)."""
    for structure in prototypes().values():
        unit = analyse(structure)
        table = space_group_table(unit.spacegroup)
        for x, s in zip(unit.frac_coords, unit.site_symmetry):
            orbit = orbit_of(table, x)
            assert periodic_distances(x[None], REFERENCE_POINT, unit.lattice)[0] <= periodic_distances(orbit, REFERENCE_POINT, unit.lattice).min() + 1e-9
            assert list(site_symmetry_classes(table.stabiliser(x, tol=1e-6))) == list(s)


def _rate(name: str, split: str, n: int | None) -> tuple[float, list]:
    pairs = benchmark_structures(name, split, n=n, seed=0)
    results = [(mid, round_trip(s)) for mid, s in pairs]
    failures = [(mid, r.status, r.reason) for mid, r in results if not r.ok]
    return 1 - len(failures) / len(results), failures


@pytest.mark.data
@pytest.mark.parametrize("name,n", [("perov_5", 100), ("mp_20", 150)])
def test_benchmark_round_trip_sample(name, n):
    rate, failures = _rate(name, "test", n)
    assert rate >= 0.99, failures


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("name", ["perov_5", "mp_20"])
def test_benchmark_round_trip_full(name):
    rate, failures = _rate(name, "test", None)
    assert rate >= 0.995, failures[:50]
