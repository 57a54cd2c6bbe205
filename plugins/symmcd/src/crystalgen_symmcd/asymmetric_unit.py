"""Crystal -> SymmCD's representation (paper section 4.1): space group G, conventional lattice, and one
representative per crystallographic orbit with its Wyckoff position, oriented site symmetry and element.

The Wyckoff analysis is pyxtal's (``from_seed``: spglib symmetry search at ``symprec`` Angstrom, conventional
standard cell, the ITA setting of pyxtal's tables). The representative of each orbit is the orbit member
nearest (Cartesian, periodic) to the fixed generic point :data:`REFERENCE_POINT`: the members closest to a
generic point form a Dirichlet domain of the space group, i.e. an asymmetric unit, so every representative
lies in one asymmetric unit around the cell centre (the official code takes the member nearest to
(1/2, 1/2, 1/2) plus a per-process random offset, in unwrapped fractional distance; see docs/symmcd.md).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from crystalgen_symmcd.symmetry.tables import SpaceGroupTable, WyckoffPosition, space_group_table

#: Generic point (fractional) whose Dirichlet domain is the asymmetric unit (checked generic for all 230 groups).
REFERENCE_POINT = np.array([0.5137, 0.5071, 0.5029])
#: How far (fractional) a site may lie from its Wyckoff position's subspace before we refuse the crystal.
ON_POSITION_TOL = 1e-3


class SymmetryAnalysisError(ValueError):
    """pyxtal could not analyse the crystal, or its answer is inconsistent with the Wyckoff tables."""


@dataclass(frozen=True)
class AsymmetricUnit:
    """SymmCD's C' = (G, L, X', S, A') of one crystal (plus bookkeeping).

    Attributes:
        spacegroup: international number 1..230.
        lattice: (3, 3) conventional cell, rows are lattice vectors, Angstrom.
        frac_coords: (M, 3) representatives X' in [0, 1), fractional.
        atom_types: (M,) atomic numbers A'.
        wyckoff: (M,) index of each representative's Wyckoff position in :func:`space_group_table`.
        member: (M,) which member of that position's orbit the representative is (its orientation).
        site_symmetry: (M, 15) oriented site-symmetry class indices S.
        multiplicity: (M,) atoms per conventional cell of each orbit.
    """

    spacegroup: int
    lattice: np.ndarray
    frac_coords: np.ndarray
    atom_types: np.ndarray
    wyckoff: np.ndarray
    member: np.ndarray
    site_symmetry: np.ndarray
    multiplicity: np.ndarray

    @property
    def num_atoms(self) -> int:
        """Atoms in the conventional cell."""
        return int(self.multiplicity.sum())


def analyse(structure: Structure, symprec: float = 0.1, angle_tolerance: float = 5.0) -> AsymmetricUnit:
    """The asymmetric-unit representation of an ordered crystal (Angstrom, fractional coordinates)."""
    from pyxtal import pyxtal

    crystal = pyxtal()
    errors = []
    for tol in (symprec, 1e-4):  # the official pipeline retries with 1e-4 when pyxtal rejects the first tolerance
        try:
            with _quiet_stderr():  # spglib prints C-level diagnostics for near-degenerate cells
                crystal.from_seed(structure, tol=tol, a_tol=angle_tolerance)
            break
        except Exception as exc:
            errors.append(f"tol {tol}: {type(exc).__name__}: {exc}")
    else:
        raise SymmetryAnalysisError("pyxtal.from_seed failed (" + "; ".join(errors) + ")")
    table = space_group_table(int(crystal.group.number))
    lattice = np.asarray(crystal.lattice.matrix, dtype=float)
    rows = [_representative(table, lattice, site) for site in crystal.atom_sites]
    return AsymmetricUnit(
        spacegroup=table.number,
        lattice=lattice,
        frac_coords=np.stack([r[0] for r in rows]),
        atom_types=np.array([r[1] for r in rows], dtype=np.int64),
        wyckoff=np.array([r[2].index for r in rows], dtype=np.int64),
        member=np.array([r[3] for r in rows], dtype=np.int64),
        site_symmetry=np.stack([r[2].site_symmetry[r[3]] for r in rows]),
        multiplicity=np.array([r[2].multiplicity for r in rows], dtype=np.int64),
    )


def _representative(table: SpaceGroupTable, lattice: np.ndarray, site) -> tuple[np.ndarray, int, WyckoffPosition, int]:
    """(representative, Z, Wyckoff position, member) of one pyxtal atom site."""
    from pymatgen.core import Element

    wp = table.wyckoff[int(site.wp.index)]
    orbit = orbit_of(table, np.asarray(site.position, dtype=float))
    if len(orbit) != wp.multiplicity:
        raise SymmetryAnalysisError(
            f"site {site.specie} at {np.round(site.position, 5)} of space group {table.number} has an orbit of "
            f"{len(orbit)} points, but pyxtal assigned Wyckoff position {wp.label}"
        )
    nearest = int(np.argmin(periodic_distances(orbit, REFERENCE_POINT, lattice)))
    rep = orbit[nearest]
    distances = member_distances(wp, rep, lattice)
    member = int(np.argmin(distances))
    if distances[member] > ON_POSITION_TOL * np.linalg.norm(lattice, axis=1).max():
        raise SymmetryAnalysisError(
            f"site {site.specie} at {np.round(rep, 5)} lies {distances[member]:.2e} A from every member of "
            f"Wyckoff position {wp.label} of space group {table.number}"
        )
    return rep, Element(str(site.specie)).Z, wp, member


def orbit_of(table: SpaceGroupTable, point: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Distinct images (in [0, 1)) of a fractional point under the general-position operations."""
    images = np.mod(np.einsum("gij,j->gi", table.rotations, point) + table.translations, 1.0)
    return unique_mod1(images, tol)


def unique_mod1(points: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Points that differ modulo 1 by more than ``tol`` in some coordinate (first occurrence kept)."""
    d = points[:, None, :] - points[None, :, :]
    close = np.all(np.abs(d - np.rint(d)) < tol, axis=-1)
    return points[~np.triu(close, k=1).any(axis=0)]


def periodic_distances(points: np.ndarray, target: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Minimum-image Cartesian distances (Angstrom) from each fractional point to ``target``."""
    d = points - target
    d -= np.rint(d)
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    cart = (d[:, None, :] + shifts[None]) @ lattice
    return np.linalg.norm(cart, axis=-1).min(axis=1)


def closest_on_member(wp: WyckoffPosition, k: int, x: np.ndarray, lattice: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(free parameters p, point A_k p + b_k, Cartesian distance in Angstrom) of the point of orbit member k of
    ``wp`` nearest to the fractional point x, over periodic images of x (metric of ``lattice``).

    Least squares in the lattice metric M = L L^T: p = (A^T M A)^+ A^T M (x - b - n), for the 27 images n.
    """
    A, b = wp.A[k], wp.b[k]
    metric = lattice @ lattice.T
    d0 = x - b
    targets = d0 - np.rint(d0) + _SHIFTS  # (27, 3)
    solve = np.linalg.pinv(A.T @ metric @ A, rcond=1e-10) @ A.T @ metric
    params = targets @ solve.T  # (27, 3)
    residual = targets - params @ A.T
    dist2 = np.einsum("ni,ij,nj->n", residual, metric, residual)
    i = int(np.argmin(dist2))
    return params[i], A @ params[i] + b, float(np.sqrt(max(dist2[i], 0.0)))


def member_distances(wp: WyckoffPosition, x: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Distance (Angstrom) from x to each orbit member's subspace."""
    return np.array([closest_on_member(wp, k, x, lattice)[2] for k in range(wp.multiplicity)])


_SHIFTS = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level writes to stderr (spglib's 'ssm_get_exact_positions failed' lines)."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)
