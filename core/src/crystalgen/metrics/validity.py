"""Structure validity (CDVAE appendix G.2) and the reasons a sample is invalid.

A structure is valid when every pair of distinct sites is at least 0.5 Angstrom apart under periodic boundary
conditions (pymatgen's minimum-image distance matrix, in blocks that fit the memory budget; a site's distance to
its own images is not counted, as in CDVAE) and the cell volume is at least 0.1 Angstrom^3. Samples that cannot be built at all (a failed decode, an
empty or unreadable file, NaN in the lattice, an unknown element, a disordered site) are invalid too, and every
invalid sample is counted under one reason: the first failed check, in the order of ``REASONS``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Element, Structure

from crystalgen.metrics.composition_validity import DEFAULT_OXIDATION_STATES, composition_valid
from crystalgen.metrics.memory import DISTANCE_MATRIX
from crystalgen.resources import memory_budget

MIN_DISTANCE = 0.5  # Angstrom
MIN_VOLUME = 0.1  # Angstrom^3

#: Invalidity reasons, in the order they are checked (a sample is counted under the first that applies).
REASONS: dict[str, str] = {
    "decode_failed": "the model could not decode this sample into a crystal",
    "empty_file": "the sample file or entry is empty",
    "not_regular_file": "the sample file is a FIFO, device, socket or directory (or a symbolic link to one)",
    "too_large": "the sample file is above the size limit per input file (CRYSTALGEN_MAX_FILE_MB)",
    "unreadable": "the sample could not be parsed (CIF / extxyz / CSV row)",
    "no_atoms": "the structure has no sites",
    "unknown_element": "a site holds something that is not a chemical element",
    "disordered": "a site is disordered or partially occupied",
    "impossible_cell": "cell parameters no cell can have (a length <= 0, an angle outside (0, 180), no valid metric)",
    "non_finite": "NaN or infinity in the lattice or the coordinates",
    "small_volume": f"cell volume below {MIN_VOLUME} A^3",
    "overlapping_atoms": f"two sites closer than {MIN_DISTANCE} A",
    "not_charge_balanced": "composition fails SMACT charge neutrality + Pauling test",
    "fingerprint_failed": "the CrystalNN fingerprint could not be computed (CDVAE counts it invalid)",
}
_SLUG = re.compile(r"^([a-z_]+):")


def failure_reason_key(message: str | None) -> str:
    """Reason key of a failed sample's message: its ``"<key>: detail"`` prefix when known, else decode_failed."""
    match = _SLUG.match(message or "")
    return match.group(1) if match and match.group(1) in REASONS else "decode_failed"


@dataclass(frozen=True)
class SampleValidity:
    """Validity of one sample. ``reason`` is None exactly when the sample is valid."""

    struct_valid: bool
    comp_valid: bool
    reason: str | None
    composition: dict[str, int] | None  # element symbol -> number of sites, when the species are known


def _composition(structure: Structure) -> tuple[dict[str, int] | None, str | None]:
    counts: Counter[str] = Counter()
    for site in structure:
        species = site.species
        if len(species) != 1:
            return None, "disordered"
        ((specie, occupancy),) = species.items()
        element = getattr(specie, "element", specie)
        if not isinstance(element, Element):
            return None, "unknown_element"
        if abs(occupancy - 1.0) > 1e-6:
            return None, "disordered"
        counts[element.symbol] += 1
    return dict(counts), None


def structure_problem(structure: Structure) -> str | None:
    """Reason key why ``structure`` is not structurally valid, or None (see the module docstring)."""
    if len(structure) == 0:
        return "no_atoms"
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    frac = np.asarray(structure.frac_coords, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        gram = lattice @ lattice.T  # distances need squared lengths: beyond ~1e154 A they overflow
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all() and np.isfinite(gram).all()):
        return "non_finite"
    if abs(np.linalg.det(lattice)) < MIN_VOLUME:
        return "small_volume"
    if len(structure) > 1 and min_pair_distance(structure) < MIN_DISTANCE:
        return "overlapping_atoms"
    return None


def min_pair_distance(structure: Structure) -> float:
    """Smallest minimum-image distance between two distinct sites (pymatgen's ``distance_matrix`` values).

    The matrix is computed in blocks of rows that fit the memory budget: whole, it would take ~19 GB for a
    20,000-atom cell (crystalgen.metrics.memory.DISTANCE_MATRIX).
    """
    frac = np.asarray(structure.frac_coords, dtype=float)
    n = len(frac)
    rows = max(1, int(memory_budget() // DISTANCE_MATRIX.estimate(1, n)))
    smallest = np.inf
    for start in range(0, n, rows):
        block = structure.lattice.get_all_distances(frac[start:start + rows], frac)
        block[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf  # a site and itself
        smallest = min(smallest, float(block.min()))
    return smallest


def sample_validity(
    structure: Structure | None, failure: str | None = None, oxidation_states: str = DEFAULT_OXIDATION_STATES
) -> SampleValidity:
    """Structure and composition validity of one sample (None = a failed decode or read, ``failure`` says why).

    As in CDVAE, composition validity is judged whenever the species are known, even when the lattice is unusable.
    """
    if structure is None:
        return SampleValidity(False, False, failure_reason_key(failure), None)
    composition, problem = _composition(structure)
    if problem is None and not composition:
        problem = "no_atoms"
    comp_valid = composition is not None and bool(composition) and composition_valid(composition, oxidation_states)
    if problem is None:
        problem = structure_problem(structure)
    struct_valid = problem is None
    if problem is None and not comp_valid:
        problem = "not_charge_balanced"
    return SampleValidity(struct_valid, comp_valid, problem, composition)
