"""The vectorised Magpie composition fingerprint against matminer's ``ElementProperty.from_preset("magpie")``.

Equality is bit for bit (NaN where matminer gives NaN): CI on ~200 compositions (embedded crystals, their
perturbed copies' element orders, hand-built edge cases), the slow test on every composition of the three
benchmark test splits (CRYSTALGEN_DATA).
"""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Element

from crystalgen.metrics.magpie import MAX_VECTORISED_ELEMENTS, ElementAmounts, element_amounts, magpie_fingerprints


def _matminer(compositions: list[ElementAmounts]) -> np.ndarray:
    from matminer.featurizers.composition.composite import ElementProperty

    featuriser = ElementProperty.from_preset("magpie")
    rows = []
    for numbers, amounts in compositions:
        mapping = {Element.from_Z(int(z)).symbol: float(a) for z, a in zip(numbers, amounts, strict=True)}
        rows.append(featuriser.featurize(Composition(mapping)))
    return np.asarray(rows, dtype=np.float64)


def _assert_bitwise(fast: np.ndarray, reference: np.ndarray, compositions: list[ElementAmounts]) -> None:
    same = (fast == reference) | (np.isnan(fast) & np.isnan(reference))
    bad = np.flatnonzero(~same.all(axis=1))
    assert not len(bad), (f"{len(bad)} compositions differ, first {compositions[bad[0]]}: columns "
                          f"{np.flatnonzero(~same[bad[0]]).tolist()}")


def test_equals_matminer_bitwise_on_embedded_and_edge_compositions():
    from crystalgen.data.embedded import build_embedded

    compositions = [element_amounts(np.array(c.structure.atomic_numbers)) for c in build_embedded()[:150]]
    rng = np.random.default_rng(0)
    for numbers, amounts in compositions[:30]:  # the same elements in another order: other sums, same as matminer
        order = rng.permutation(len(numbers))
        compositions.append((numbers[order], amounts[order]))
    compositions += [
        (np.array([26]), np.array([3.0])),  # one element
        (np.array([8, 26]), np.array([3.0, 2.0])),
        (np.array([1, 2, 10, 18, 36]), np.array([1.0, 1.0, 1.0, 1.0, 1.0])),  # noble gases: imputed properties
        (np.array([92, 94, 95, 98, 100, 103]), np.array([1.0, 2.0, 3.0, 5.0, 7.0, 11.0])),  # heavy, equal counts none
        (np.array([3, 11, 19, 37, 55, 87, 4]), np.array([2.0, 2.0, 1.0, 2.0, 1.0, 2.0, 3.0])),  # 7: largest vectorised
        (np.arange(20, 29), np.arange(1.0, 10.0)),  # 9 elements: handed to matminer
        (np.array([8, 14]), np.array([2.0000001, 2.0])),  # np.isclose decides the mode
    ]
    for size in range(1, MAX_VECTORISED_ELEMENTS + 2):
        for _ in range(4):
            numbers = rng.choice(np.arange(1, 104), size=size, replace=False)
            compositions.append((numbers, rng.integers(1, 9, size=size).astype(np.float64)))
    assert len(compositions) >= 200
    _assert_bitwise(magpie_fingerprints(compositions), _matminer(compositions), compositions)


def test_element_amounts_keep_the_order_of_first_appearance():
    numbers, amounts = element_amounts(np.array([8, 26, 8, 1, 26, 8]))
    assert numbers.tolist() == [8, 26, 1]
    assert amounts.tolist() == [3.0, 2.0, 1.0]


def test_the_suite_uses_it_for_the_fast_backend_and_matminer_for_the_reference():
    from pymatgen.core import Lattice, Structure

    from crystalgen.metrics.crystal_features import FeatureRequest, compact, compute_chunk

    s = Structure(Lattice.cubic(4.1), ["Ti", "O", "Sr", "O", "O"],
                  [[0.5, 0.5, 0.5], [0.5, 0.5, 0], [0, 0, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    fast, slow = compute_chunk([(compact(s), FeatureRequest(fingerprints=True)),
                                (compact(s), FeatureRequest(fingerprints=True, fingerprint_backend="matminer"))])
    np.testing.assert_array_equal(fast["comp_fp"], slow["comp_fp"])
    np.testing.assert_allclose(fast["struct_fp"], slow["struct_fp"], atol=1e-6)


@pytest.mark.slow
def test_equals_matminer_bitwise_on_every_test_composition():
    """All compositions (element order as read, which matminer's sums follow) of the three benchmark test splits."""
    from crystalgen.metrics import read_samples
    from crystalgen.testing import benchmark_csv

    compositions: dict[tuple, ElementAmounts] = {}
    for split in ("perov_5", "carbon_24", "mp_20"):
        structures, _, _ = read_samples(benchmark_csv(split, "test"), progress=False)
        for s in structures:
            if s is not None:
                numbers, amounts = element_amounts(np.array(s.atomic_numbers))
                compositions[(tuple(numbers.tolist()), tuple(amounts.tolist()))] = (numbers, amounts)
    unique = list(compositions.values())
    assert len(unique) > 5000
    _assert_bitwise(magpie_fingerprints(unique), _matminer(unique), unique)
