"""The detail of an invalid sample: what exactly failed, in numbers, for per_sample.csv.

Why: validity.sample_validity decides a reason key (``overlapping_atoms``) for counting; a person looking at one
sample needs to know which sites, how close, what volume. Read failures carry their own detail (the failure string
of the reader); this module writes one for every reason that validity finds itself, so that no invalid row has an
empty detail.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

from crystalgen.metrics.validity import MIN_DISTANCE, MIN_VOLUME, REASONS


def _non_finite(structure: Structure) -> str:
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.isfinite(lattice).all():
        return f"lattice {np.round(lattice, 4).tolist()} contains NaN or infinity"
    frac = np.asarray(structure.frac_coords, dtype=float).reshape(-1, 3)
    bad = np.flatnonzero(~np.isfinite(frac).all(axis=1))
    if bad.size:
        return f"site {int(bad[0])} has coordinates {frac[bad[0]].tolist()}"
    return f"cell lengths {np.linalg.norm(lattice, axis=1).tolist()} A overflow floating point"


def _closest_pair(structure: Structure) -> str:
    distances = np.array(structure.distance_matrix, dtype=float)
    np.fill_diagonal(distances, np.inf)
    i, j = np.unravel_index(int(np.argmin(distances)), distances.shape)
    return (f"sites {i} ({structure[int(i)].species_string}) and {j} ({structure[int(j)].species_string}) are "
            f"{distances[i, j]:.3f} A apart (minimum {MIN_DISTANCE} A)")


def invalidity_detail(structure: Structure | None, reason: str | None, oxidation_states: str) -> str:
    """One line on why ``structure`` is invalid for ``reason`` (a validity.REASONS key); "" when it is valid."""
    if reason is None:
        return ""
    if structure is None:
        return REASONS.get(reason, reason)
    if reason == "non_finite":
        return _non_finite(structure)
    if reason == "small_volume":
        return f"cell volume {abs(float(np.linalg.det(structure.lattice.matrix))):.3g} A^3 (minimum {MIN_VOLUME} A^3)"
    if reason == "overlapping_atoms":
        return _closest_pair(structure)
    if reason == "not_charge_balanced":
        return (f"{structure.composition.reduced_formula} has no charge-neutral assignment of {oxidation_states} "
                "oxidation states that passes the Pauling electronegativity test")
    if reason == "fingerprint_failed":
        return f"the CrystalNN fingerprint of {structure.composition.reduced_formula} could not be computed"
    return REASONS.get(reason, reason)
