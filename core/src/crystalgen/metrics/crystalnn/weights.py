"""CrystalNN coordination-number weights of one site from its Voronoi faces (pymatgen ``CrystalNN.get_nn_data``).

With matminer's settings (``weighted_cn=False, cation_anion=False, distance_cutoffs=(0.5, 1), x_diff_weight=3,
porous_adjustment=True``) and sites without oxidation states, a face's weight is

    solid_angle / max solid_angle                           (VoronoiNN, weight="solid_angle")
  * solid_angle / area                                      (porous adjustment)
  * (1 + 3 sqrt(|X_i - X_j| / 3.3))                         (Pauling electronegativities; 1 if either is NaN)
  / the largest of these
  * 1 below r_i + r_j + 0.5 A, 0 above r_i + r_j + 1 A, a half cosine between (covalent radii)

rounded to 3 decimals. Each distinct weight w_k (descending, w_{K+1} = 0) defines a coordination shell of the
neighbours with weight >= w_k, of probability (area of the unit quarter circle between w_{k+1} and w_k) / (pi/4).
The scalar steps below are pymatgen's own expressions, in the same order, so the roundings agree bit for bit.
"""

from __future__ import annotations

import math
import warnings
from functools import cache

import numpy as np

DISTANCE_CUTOFFS = (0.5, 1.0)  # A beyond the sum of covalent radii: full weight / zero weight
X_DIFF_WEIGHT = 3.0
TIE = 1e-10  # relative difference below which two weights are equal to rounding
AMBIGUOUS_ROUNDING = 1e-9  # thousandths: weights agree with pymatgen's to ~1e-13 relative


@cache
def element_tables() -> tuple[np.ndarray, np.ndarray]:
    """(Pauling electronegativity, pymatgen's CrystalNN default radius in A) indexed by atomic number (NaN: none)."""
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core import Element

    electronegativity = np.full(119, np.nan)
    radius = np.full(119, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no Pauling electronegativity for He" and the like
        for z in range(1, 119):
            element = Element.from_Z(z)
            electronegativity[z] = element.X
            covalent = CovalentRadius.radius.get(element.symbol)
            atomic = element.atomic_radius
            radius[z] = covalent if covalent is not None else (float(atomic) if atomic is not None else np.nan)
    return electronegativity, radius


def _semicircle_integral(bins: list[float], idx: int) -> float:
    x1, x2 = bins[idx], bins[idx + 1]
    area1 = 0.25 * math.pi if x1 == 1 else 0.5 * ((x1 * math.sqrt(1 - x1**2)) + (math.atan(x1 / math.sqrt(1 - x1**2))))
    area2 = 0.5 * ((x2 * math.sqrt(1 - x2**2)) + (math.atan(x2 / math.sqrt(1 - x2**2))))
    return (area1 - area2) / (0.25 * math.pi)


def coordination_shells(
    solid_angle: np.ndarray, area: np.ndarray, distance: np.ndarray, z_site: int, z_neighbours: np.ndarray
) -> tuple[list[int], list[float], np.ndarray, np.ndarray] | None:
    """(coordination numbers, their probabilities, face order by decreasing weight, sorted weights), or None.

    The shell of coordination number ``cn`` is ``order[:cn]``. No shell (every weight 0) gives ``([], [], order)``.
    None when pymatgen's own rounding or ordering decides (a weight that is not finite, or within 1e-12 of a
    rounding boundary), so the caller defers to pymatgen.
    """
    electronegativity, radius = element_tables()
    max_angle = float(solid_angle.max())
    keep = solid_angle > 0  # VoronoiNN with tol=0
    weight = (solid_angle / max_angle) * (solid_angle / area)
    x1, x2 = electronegativity[z_site], electronegativity[z_neighbours]
    chemical = np.where(np.isnan(x1) | np.isnan(x2), 1.0, 1 + X_DIFF_WEIGHT * np.sqrt(np.abs(x1 - x2) / 3.3))
    weight = weight * chemical
    if not np.all(np.isfinite(weight[keep])):
        return None
    weight = np.where(keep, weight, 0.0)
    highest = float(weight.max())
    if highest == 0:
        return [], [], np.argsort(-weight, kind="stable"), np.sort(weight)[::-1]
    weight = weight / highest
    diameter = radius[z_site] + radius[z_neighbours]
    if not np.all(np.isfinite(diameter[keep])):
        return None  # pymatgen raises here (an element without a radius); let it
    low, high = diameter + DISTANCE_CUTOFFS[0], diameter + DISTANCE_CUTOFFS[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        taper = (np.cos((distance - low) / (high - low) * math.pi) + 1) * 0.5
    weight = weight * np.where(distance <= low, 1.0, np.where(distance < high, taper, 0.0))
    if float(weight.max()) == 0:
        return [], [], np.argsort(-weight, kind="stable"), np.sort(weight)[::-1]
    thousandths = weight * 1000
    if np.any(np.abs(thousandths - np.floor(thousandths) - 0.5) < AMBIGUOUS_ROUNDING):
        return None  # a weight on a rounding boundary: the last bits decide, so pymatgen must
    rounded = np.array([round(float(w), 3) for w in weight])  # Python's decimal rounding, as pymatgen
    order = np.argsort(-weight, kind="stable")  # pymatgen sorts by the weight before rounding
    bins = sorted({float(w) for w in rounded if w > 0}, reverse=True) + [0.0]
    counts = np.searchsorted(-rounded[order], -np.array(bins[:-1]), side="right")
    return [int(c) for c in counts], [_semicircle_integral(bins, i) for i in range(len(bins) - 1)], order, weight[order]


def tie_groups(weight: np.ndarray) -> np.ndarray:
    """Group label per entry of weights sorted in decreasing order; equal labels for weights equal to rounding.

    pymatgen orders such neighbours by its own last bits (and qhull's ridge order), which only matters to an
    order parameter that depends on the neighbour order (bcc): see order_parameters.order_sensitive.
    """
    scale = max(float(weight[0]), 1e-300) if len(weight) else 1.0
    return np.cumsum(np.concatenate([[0], np.diff(weight) < -TIE * scale]))
