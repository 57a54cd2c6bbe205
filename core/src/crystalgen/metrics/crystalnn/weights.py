"""CrystalNN coordination-number weights of many sites from their Voronoi faces (pymatgen ``CrystalNN.get_nn_data``).

With matminer's settings (``weighted_cn=False, cation_anion=False, distance_cutoffs=(0.5, 1), x_diff_weight=3,
porous_adjustment=True``) and sites without oxidation states, a face's weight is

    solid_angle / max solid_angle                           (VoronoiNN, weight="solid_angle")
  * solid_angle / area                                      (porous adjustment)
  * (1 + 3 sqrt(|X_i - X_j| / 3.3))                         (Pauling electronegativities; 1 if either is NaN)
  / the largest of these
  * 1 below r_i + r_j + 0.5 A, 0 above r_i + r_j + 1 A, a half cosine between (covalent radii)

rounded to 3 decimals. Each distinct weight w_k (descending, w_{K+1} = 0) defines a coordination shell of the
neighbours with weight >= w_k, of probability (area of the unit quarter circle between w_{k+1} and w_k) / (pi/4).
The steps below are pymatgen's own expressions, in the same order, as arrays over the faces of every site of a
batch, so the roundings agree bit for bit.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
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


@cache
def _quarter_circle_areas() -> np.ndarray:
    """Area under the unit circle from 0 to x = k / 1000 (k = 0..1000), with pymatgen's scalar expressions.

    Rounded weights are multiples of 1/1000, so a table of their areas gives pymatgen's ``_semicircle_integral``
    bit for bit, for every shell at once.
    """
    areas = [0.5 * ((x * math.sqrt(1 - x**2)) + (math.atan(x / math.sqrt(1 - x**2)))) for x in
             (k / 1000 for k in range(1000))]
    return np.array([*areas, 0.25 * math.pi])


@dataclass(frozen=True)
class Shells:
    """CrystalNN coordination shells of many sites (pymatgen ``CrystalNN.get_nn_data``'s ``cn_weights``).

    Faces are put in pymatgen's neighbour order: by site, then by decreasing weight (before rounding, stable). The
    shell with coordination number ``cn[s]`` of ``site[s]`` is the faces ``order[first[s]:first[s] + cn[s]]``.
    """

    order: np.ndarray  # (F,) face indices
    tie_group: np.ndarray  # (F,) per ordered face; equal labels within a site: weights equal to rounding
    site: np.ndarray  # (S,) one row per shell
    cn: np.ndarray  # (S,)
    probability: np.ndarray  # (S,) P(cn)
    first: np.ndarray  # (S,) position in ``order`` of the site's first neighbour
    exact: np.ndarray  # (n_sites,) False: pymatgen's own rounding decides, the caller must defer the site


def _per_site(reduce: np.ufunc, values: np.ndarray, starts: np.ndarray, fill: float) -> np.ndarray:
    """``reduce`` over each site's faces (``starts``: (n_sites + 1,) face offsets), ``fill`` for a site without."""
    out = np.full(len(starts) - 1, fill, dtype=values.dtype)
    nonempty = np.diff(starts) > 0
    if nonempty.any():
        out[nonempty] = reduce.reduceat(values, starts[:-1][nonempty])
    return out


def coordination_shells(
    site: np.ndarray, solid_angle: np.ndarray, area: np.ndarray, distance: np.ndarray, z_site: np.ndarray,
    z_neighbour: np.ndarray, n_sites: int,
) -> Shells:
    """The shells of ``n_sites`` sites from their faces (``site`` (F,) non-decreasing; solid angles sr, areas A^2,
    distances A, atomic numbers of the face's site and neighbour).

    A site is not ``exact`` when pymatgen's own rounding or ordering decides (a weight that is not finite, an
    element without a radius, a weight within 1e-9 thousandths of a rounding boundary). A site whose weights are
    all 0 has no shell.
    """
    electronegativity, radius = element_tables()
    starts = np.searchsorted(site, np.arange(n_sites + 1))
    keep = solid_angle > 0  # VoronoiNN with tol=0
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = (solid_angle / _per_site(np.maximum, solid_angle, starts, np.nan)[site]) * (solid_angle / area)
        x1, x2 = electronegativity[z_site], electronegativity[z_neighbour]
        chemical = np.where(np.isnan(x1) | np.isnan(x2), 1.0, 1 + X_DIFF_WEIGHT * np.sqrt(np.abs(x1 - x2) / 3.3))
        weight = weight * chemical
    bad = keep & ~np.isfinite(weight)
    weight = np.where(keep & ~bad, weight, 0.0)
    highest = _per_site(np.maximum, weight, starts, 0.0)[site]
    weight = weight / np.where(highest > 0, highest, 1.0)
    diameter = radius[z_site] + radius[z_neighbour]
    bad |= keep & (highest > 0) & ~np.isfinite(diameter)  # pymatgen raises here (an element without a radius)
    low, high = diameter + DISTANCE_CUTOFFS[0], diameter + DISTANCE_CUTOFFS[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        taper = (np.cos((distance - low) / (high - low) * math.pi) + 1) * 0.5
    weight = weight * np.where(distance <= low, 1.0, np.where(distance < high, taper, 0.0))
    weight = np.where(bad, 0.0, weight)
    thousandths = weight * 1000
    bad |= np.abs(thousandths - np.floor(thousandths) - 0.5) < AMBIGUOUS_ROUNDING  # the last bits decide
    exact = ~_per_site(np.logical_or, bad, starts, False)
    # Away from a boundary, rint(w * 1000) / 1000 is Python's decimal round(w, 3), which pymatgen uses.
    rounded = np.rint(thousandths).astype(np.int64)
    order = np.lexsort((-weight, site))  # stable: pymatgen sorts by the weight before rounding
    ordered_site, ordered_rounded, ordered_weight = site[order], rounded[order], weight[order]
    # Each distinct positive rounded weight w_k of a site closes the shell of the neighbours with weight >= w_k.
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (ordered_site[1:] != ordered_site[:-1]) | (ordered_rounded[1:] != ordered_rounded[:-1])
    same_site_next = np.zeros(len(order), dtype=bool)
    same_site_next[:-1] = ordered_site[1:] == ordered_site[:-1]
    closes = last & (ordered_rounded > 0) & exact[ordered_site]
    end = np.flatnonzero(closes)
    shell_site = ordered_site[end]
    below = np.where(same_site_next[end], ordered_rounded[np.minimum(end + 1, len(order) - 1)], 0)
    areas = _quarter_circle_areas()
    probability = (areas[ordered_rounded[end]] - areas[below]) / (0.25 * math.pi)
    # Tie groups: a new label wherever the weight drops by more than TIE relative to the site's largest.
    scale = np.maximum(_per_site(np.maximum, weight, starts, 0.0), 1e-300)[ordered_site]
    step = np.ones(len(order), dtype=bool)
    step[1:] = ~same_site_next[:-1] | (np.diff(ordered_weight) < -TIE * scale[1:])
    return Shells(order, np.cumsum(step), shell_site, end - starts[shell_site] + 1, probability,
                  starts[shell_site], exact)
