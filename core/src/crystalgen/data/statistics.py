"""What a loaded split holds: elements, atoms per cell, space groups, property ranges (``crystalgen data info``)."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import spglib

from crystalgen.data.records import CrystalRecord, LoadedSplit

#: spglib tolerance (Angstrom) for space groups, as in SymmCD's evaluation.
DEFAULT_SYMPREC = 0.1
TOP = 10


@dataclass
class SplitStatistics:
    crystals: int
    element_counts: Counter  # element -> crystals containing it
    atoms_per_cell: list[int]
    spacegroups: Counter = field(default_factory=Counter)  # number -> crystals (empty when not computed)
    properties: dict[str, list[float]] = field(default_factory=dict)
    symprec: float = DEFAULT_SYMPREC

    def lines(self) -> list[str]:
        out = [f"crystals: {self.crystals}"]
        if not self.crystals:
            return out
        top = ", ".join(f"{el} {n}" for el, n in self.element_counts.most_common(TOP))
        out.append(f"elements: {len(self.element_counts)} distinct; most frequent (crystals containing): {top}")
        n = np.array(self.atoms_per_cell)
        out.append(f"atoms per cell: min {n.min()}, median {int(np.median(n))}, mean {n.mean():.1f}, max {n.max()}")
        out.append("  histogram: " + ", ".join(f"{lo}-{hi}: {c}" for (lo, hi), c in _histogram(n)))
        if self.spacegroups:
            top_sg = ", ".join(f"{sg} ({c})" for sg, c in self.spacegroups.most_common(TOP))
            out.append(f"space groups (spglib, symprec {self.symprec} A): {len(self.spacegroups)} distinct; most frequent: {top_sg}")
        for name, values in self.properties.items():
            v = np.array(values)
            out.append(f"property {name}: n {len(v)}, mean {v.mean():.4g}, std {v.std():.4g}, min {v.min():.4g}, max {v.max():.4g}")
        return out


def _histogram(n: np.ndarray) -> list[tuple[tuple[int, int], int]]:
    edges = [1, 5, 9, 13, 17, 21, 31, 51, 101]
    bins = []
    for lo, hi in zip(edges, [*edges[1:], max(int(n.max()) + 1, edges[-1] + 1)], strict=True):
        count = int(((n >= lo) & (n < hi)).sum())
        if count:
            bins.append(((lo, hi - 1), count))
    return bins


def spacegroup_number(record: CrystalRecord, symprec: float = DEFAULT_SYMPREC) -> int | None:
    s = record.structure
    cell: Any = (s.lattice.matrix, s.frac_coords, [site.specie.Z for site in s])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib 2.8's OLD_ERROR_HANDLING notice
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    return None if dataset is None else int(dataset.number)


def describe(loaded: LoadedSplit, *, symmetry: bool = True, symprec: float = DEFAULT_SYMPREC) -> SplitStatistics:
    elements: Counter = Counter()
    for r in loaded.records:
        elements.update({el.symbol for el in r.structure.composition.elements})
    spacegroups: Counter = Counter()
    if symmetry:
        spacegroups.update(sg for sg in (spacegroup_number(r, symprec) for r in loaded.records) if sg is not None)
    properties: dict[str, list[float]] = {}
    for r in loaded.records:
        for name, value in r.properties.items():
            properties.setdefault(name, []).append(value)
    return SplitStatistics(len(loaded.records), elements, [len(r.structure) for r in loaded.records], spacegroups, properties, symprec)
