"""matminer's ``ElementProperty.from_preset("magpie")`` composition fingerprint for many compositions at once.

matminer loops in Python over 22 elemental properties x 6 statistics per composition (~10 ms each). Here the
properties come from a table indexed by atomic number, read once from the featuriser's own data source (matminer's
Magpie data files, with its NaN imputation), and the statistics are arrays over all compositions with the same
number of elements, with matminer's expressions (``PropertyStats``) evaluated in the same order, so the values are
the same bit for bit (tested against matminer on every composition of the three benchmark test splits):

- minimum, maximum, range: of the element values (NaN if any is NaN);
- mean: ``np.average(values, weights=amounts)``; avg_dev: the same average of ``|value - mean|``;
- mode: the smallest value among the elements whose amount is ``np.isclose`` to the largest.

``np.average`` sums with numpy's own reduction, which for fewer than 8 terms adds them left to right; a
composition of 8 or more elements is handed to matminer.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

STATS = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
MAX_VECTORISED_ELEMENTS = 7  # numpy sums up to 7 terms left to right; pairwise (another order) from 8
MAX_Z = 118

#: A composition as (atomic numbers in matminer's element order (first appearance), amounts), one entry per element.
ElementAmounts = tuple[np.ndarray, np.ndarray]


@cache
def _featuriser():
    from matminer.featurizers.composition.composite import ElementProperty

    return ElementProperty.from_preset("magpie")


@cache
def property_table() -> np.ndarray:
    """(119, 22) Magpie elemental properties by atomic number (row 0 unused), from matminer's data source."""
    from pymatgen.core import Element

    featuriser = _featuriser()
    if tuple(featuriser.stats) != STATS:
        raise RuntimeError(f"matminer's magpie preset changed its statistics to {featuriser.stats}; this reproduces "
                           f"{STATS}: use fingerprint_backend='matminer'")
    table = np.full((MAX_Z + 1, len(featuriser.features)), np.nan)
    for z in range(1, MAX_Z + 1):
        element = Element.from_Z(z)
        table[z] = [featuriser.data_source.get_elemental_property(element, name) for name in featuriser.features]
    return table


def _left_to_right(terms: np.ndarray) -> np.ndarray:
    """Sum over axis 1 of (G, k, P), term by term from the first: numpy's order for k <= 7."""
    total = terms[:, 0]
    for j in range(1, terms.shape[1]):
        total = total + terms[:, j]
    return total


def _statistics(values: np.ndarray, amounts: np.ndarray) -> np.ndarray:
    """(G, P, 6) statistics of (G, k, P) element values weighted by (G, k) amounts, matminer's expressions."""
    nan = np.isnan(values).any(axis=1)
    low = np.where(nan, np.nan, values.min(axis=1))
    high = np.where(nan, np.nan, values.max(axis=1))
    weights = amounts[:, :, None]
    total_weight = _left_to_right(np.broadcast_to(weights, values.shape))
    mean = _left_to_right(values * weights) / total_weight
    avg_dev = _left_to_right(np.abs(values - mean[:, None, :]) * weights) / total_weight
    most = np.isclose(amounts, amounts.max(axis=1, keepdims=True))[:, :, None]
    mode = np.where(most, values, np.inf).min(axis=1)  # NaN among the most frequent propagates, as in matminer
    return np.stack([low, high, high - low, mean, avg_dev, mode], axis=-1)


def magpie_fingerprints(compositions: Sequence[ElementAmounts]) -> np.ndarray:
    """Raw Magpie fingerprints (n, 132), matminer's column order (property-major, then ``STATS``)."""
    table = property_table()
    out = np.full((len(compositions), table.shape[1] * len(STATS)), np.nan)
    by_size: dict[int, list[int]] = {}
    for i, (numbers, _) in enumerate(compositions):
        by_size.setdefault(len(numbers), []).append(i)
    for size, rows in by_size.items():
        if size == 0:
            continue
        if size > MAX_VECTORISED_ELEMENTS:
            for i in rows:
                out[i] = _matminer(compositions[i])
            continue
        numbers = np.stack([compositions[i][0] for i in rows]).astype(np.int64)
        amounts = np.stack([compositions[i][1] for i in rows]).astype(np.float64)
        out[rows] = _statistics(table[numbers], amounts).reshape(len(rows), -1)
    return out


def _matminer(composition: ElementAmounts) -> np.ndarray:
    from pymatgen.core import Composition, Element

    numbers, amounts = composition
    mapping = {Element.from_Z(int(z)): float(a) for z, a in zip(numbers, amounts, strict=True)}
    return np.asarray(_featuriser().featurize(Composition(mapping)), dtype=np.float64)


def element_amounts(atomic_numbers: np.ndarray) -> ElementAmounts:
    """The elements of a crystal's sites in order of first appearance (matminer's order) and their counts."""
    numbers, first, counts = np.unique(np.asarray(atomic_numbers), return_index=True, return_counts=True)
    order = np.argsort(first)
    return numbers[order], counts[order].astype(np.float64)
