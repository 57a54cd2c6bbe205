"""Asymmetric unit -> full crystal (paper appendix A and Algorithm 2, lines 11-13).

1. Project each generated site symmetry S onto the nearest one that occurs in the space group G (Frobenius
   norm of the one-hot difference = sqrt(2 x the number of rows that differ)); the candidates are the oriented
   site symmetries of every orbit member of every Wyckoff position of G.
2. Move the representative X' to the nearest point (Cartesian, periodic) of a candidate orbit member with that
   site symmetry; among tied candidates the nearest point wins.
3. Replicate: the orbit of free parameters p is {A_j p + b_j} over the members j of the Wyckoff position
   (pyxtal's tables write every member as a function of the same free parameters), so the projected point's
   own parameters give the whole orbit with the right multiplicity. The official code instead applied the
   members' operations to the projected point itself, which duplicates and misses orbit members whenever the
   point is not on the first member (SymmCD's official code); the tests check the replicated orbit
   against the images under all general-position operations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from crystalgen_symmcd.asymmetric_unit import closest_on_member, unique_mod1
from crystalgen_symmcd.symmetry.tables import SpaceGroupTable, WyckoffPosition, space_group_table


@dataclass(frozen=True)
class Candidates:
    """Every (Wyckoff position, orbit member) of a group with its oriented site-symmetry classes."""

    wyckoff: np.ndarray  # (C,) index into table.wyckoff
    member: np.ndarray  # (C,)
    classes: np.ndarray  # (C, 15)
    dof: np.ndarray  # (C,)


@functools.cache
def candidates(number: int) -> Candidates:
    table = space_group_table(number)
    w, k, c, d = [], [], [], []
    for wp in table.wyckoff:
        for member in range(wp.multiplicity):
            w.append(wp.index)
            k.append(member)
            c.append(wp.site_symmetry[member])
            d.append(wp.dof)
    return Candidates(np.array(w), np.array(k), np.stack(c), np.array(d))


@dataclass(frozen=True)
class ProjectedSite:
    """One representative after projection.

    Attributes:
        wyckoff: the chosen Wyckoff position.
        member: orbit member whose subspace the point was moved onto.
        params: free parameters p of the orbit.
        displacement: how far X' moved (Angstrom).
        rows_changed: rows of S that differed from the nearest valid site symmetry (0: S was valid in G).
    """

    wyckoff: WyckoffPosition
    member: int
    params: np.ndarray
    displacement: float
    rows_changed: int

    def orbit(self) -> np.ndarray:
        """(multiplicity, 3) fractional coordinates of the replicated orbit, in [0, 1)."""
        return self.wyckoff.orbit(self.params)


def project_site(table: SpaceGroupTable, lattice: np.ndarray, x: np.ndarray, classes: np.ndarray) -> ProjectedSite:
    """Project one representative (fractional x, site-symmetry classes (15,)) onto a Wyckoff position of G."""
    cands = candidates(table.number)
    changed = (cands.classes != np.asarray(classes)[None, :]).sum(axis=1)
    tied = np.flatnonzero(changed == changed.min())
    best: tuple[float, int, np.ndarray] | None = None
    for c in tied[np.argsort(-cands.dof[tied], kind="stable")]:  # a general position (dof 3) is at distance 0
        wp = table.wyckoff[int(cands.wyckoff[c])]
        params, _, dist = closest_on_member(wp, int(cands.member[c]), x, lattice)
        if best is None or dist < best[0] - 1e-12:
            best = (dist, int(c), params)
        if dist < 1e-9:
            break
    assert best is not None
    dist, c, params = best
    return ProjectedSite(table.wyckoff[int(cands.wyckoff[c])], int(cands.member[c]), params, dist, int(changed.min()))


@dataclass
class ReplicatedCrystal:
    """A full conventional cell built from projected representatives, with what the projection did."""

    frac_coords: np.ndarray  # (N, 3)
    atom_types: np.ndarray  # (N,)
    sites: list[ProjectedSite]
    info: dict = field(default_factory=dict)


def replicate(spacegroup: int, lattice: np.ndarray, frac_coords: np.ndarray, atom_types: np.ndarray,
              site_symmetry: np.ndarray) -> ReplicatedCrystal:
    """Project every representative and replicate it over its orbit.

    Args:
        spacegroup: G, 1..230.
        lattice: (3, 3) rows are lattice vectors, Angstrom (conventional cell of G).
        frac_coords: (M, 3) representatives, fractional.
        atom_types: (M,) atomic numbers.
        site_symmetry: (M, 15) site-symmetry class indices.
    """
    table = space_group_table(int(spacegroup))
    sites = [project_site(table, lattice, np.asarray(x, dtype=float), s) for x, s in zip(frac_coords, site_symmetry)]
    coords, types, merged = [], [], 0
    for site, z in zip(sites, atom_types):
        orbit = site.orbit()
        distinct = unique_mod1(orbit)
        if len(distinct) < len(orbit):  # free parameters on a more special position: keep each point once
            merged += 1
        coords.append(distinct)
        types.extend([int(z)] * len(distinct))
    displacement = [s.displacement for s in sites]
    info = {
        "spacegroup": int(spacegroup),
        "num_representatives": len(sites),
        "wyckoff": [s.wyckoff.label for s in sites],
        "site_symmetry_projected": int(sum(s.rows_changed > 0 for s in sites)),
        "max_projection_distance": float(max(displacement, default=0.0)),
        "mean_projection_distance": float(np.mean(displacement)) if displacement else 0.0,
        "orbits_merged": merged,
    }
    return ReplicatedCrystal(np.concatenate(coords) if coords else np.zeros((0, 3)), np.array(types, dtype=np.int64), sites, info)
