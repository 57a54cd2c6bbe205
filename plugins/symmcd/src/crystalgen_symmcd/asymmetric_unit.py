"""Crystal -> SymmCD's representation (paper section 4.1): space group G, conventional lattice, and one
representative per crystallographic orbit with its Wyckoff position, oriented site symmetry and element.

The Wyckoff analysis: spglib's symmetry search at ``symprec`` Angstrom gives G and the idealised conventional
standard cell, asked for in the ITA setting of pyxtal's tables (its Hall number); the cell's atoms are grouped into
orbits and Wyckoff positions with those tables. pyxtal's ``from_seed`` (three spglib calls and a symmetrisation
per crystal, about 4x slower) is the fallback when that fails. The representative of each orbit is the orbit member
nearest (Cartesian, periodic) to the fixed generic point :data:`REFERENCE_POINT`: the members closest to a
generic point form a Dirichlet domain of the space group, i.e. an asymmetric unit, so every representative
lies in one asymmetric unit around the cell centre (the official code takes the member nearest to
(1/2, 1/2, 1/2) plus a per-process random offset, in unwrapped fractional distance; see docs/symmcd.md).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymatgen.core import Structure

from crystalgen_symmcd.symmetry.tables import SpaceGroupTable, WyckoffPosition, hall_number, space_group_table

#: Generic point (fractional) whose Dirichlet domain is the asymmetric unit (checked generic for all 230 groups).
REFERENCE_POINT = np.array([0.5137, 0.5071, 0.5029])
#: How far (fractional) a site may lie from its Wyckoff position's subspace before we refuse the crystal.
ON_POSITION_TOL = 1e-3
#: Fractional tolerance for matching symmetrised atoms to orbit points.
ORBIT_TOL = 1e-3


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
    """The asymmetric-unit representation of an ordered crystal (Angstrom, fractional coordinates).

    spglib finds the space group and the idealised conventional standard cell, in the ITA setting of pyxtal's
    tables; the atoms of that cell are grouped into orbits with our tables. When spglib fails, pyxtal's
    ``from_seed`` (which wraps spglib differently and retries with 1e-4, as the official pipeline) is tried.
    """
    try:
        return _analyse_spglib(structure, symprec, angle_tolerance)
    except SymmetryAnalysisError as first:
        try:
            return _analyse_pyxtal(structure, symprec, angle_tolerance)
        except SymmetryAnalysisError as second:
            raise SymmetryAnalysisError(f"{first}; then {second}") from None


def _analyse_spglib(structure: Structure, symprec: float, angle_tolerance: float) -> AsymmetricUnit:
    import spglib

    cell: Any = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    with _quiet_stderr():  # spglib prints C-level diagnostics for near-degenerate cells
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=angle_tolerance)
        if dataset is None:
            raise SymmetryAnalysisError(f"spglib found no symmetry at symprec {symprec}")
        hall = hall_number(int(dataset.number))
        if dataset.hall_number != hall:
            dataset = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=angle_tolerance, hall_number=hall)
    if dataset is None or dataset.hall_number != hall:
        raise SymmetryAnalysisError(f"spglib could not give the standard cell in Hall setting {hall}")
    table = space_group_table(int(dataset.number))
    lattice = np.asarray(dataset.std_lattice, dtype=float)
    positions = np.mod(np.asarray(dataset.std_positions, dtype=float), 1.0)
    types = np.asarray(dataset.std_types)
    assigned = np.zeros(len(positions), dtype=bool)
    rows = []
    for i in range(len(positions)):
        if assigned[i]:
            continue
        orbit = orbit_of(table, positions[i], tol=ORBIT_TOL)
        members = _matching_atoms(orbit, positions, ORBIT_TOL)
        if members is None or bool(assigned[members].any()) or bool((types[members] != types[i]).any()):
            raise SymmetryAnalysisError(f"the standard cell's atom {i} ({types[i]}) does not form a clean orbit of space group {table.number}")
        assigned[members] = True
        rows.append(_representative(table, lattice, positions[i], int(types[i])))
    return _unit(table, lattice, rows)


def _analyse_pyxtal(structure: Structure, symprec: float, angle_tolerance: float) -> AsymmetricUnit:
    from pymatgen.core import Element
    from pyxtal import pyxtal

    crystal = pyxtal()
    errors = []
    for tol in (symprec, 1e-4):
        try:
            with _quiet_stderr():
                crystal.from_seed(structure, tol=tol, a_tol=angle_tolerance)
            break
        except Exception as exc:
            errors.append(f"tol {tol}: {type(exc).__name__}: {exc}")
    else:
        raise SymmetryAnalysisError("pyxtal.from_seed failed (" + "; ".join(errors) + ")")
    table = space_group_table(int(crystal.group.number))
    lattice = np.asarray(crystal.lattice.matrix, dtype=float)
    rows = [_representative(table, lattice, np.asarray(site.position, dtype=float), Element(str(site.specie)).Z)
            for site in crystal.atom_sites]
    return _unit(table, lattice, rows)


def _matching_atoms(orbit: np.ndarray, positions: np.ndarray, tol: float) -> np.ndarray | None:
    """Index of the atom at each orbit point, or None when some point has no atom."""
    d = orbit[:, None, :] - positions[None, :, :]
    close = np.all(np.abs(d - np.rint(d)) < tol, axis=-1)
    if not close.any(axis=1).all():
        return None
    return close.argmax(axis=1)


def _unit(table: SpaceGroupTable, lattice: np.ndarray, rows: list) -> AsymmetricUnit:
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


def _representative(table: SpaceGroupTable, lattice: np.ndarray, point: np.ndarray, z: int) -> tuple[np.ndarray, int, WyckoffPosition, int]:
    """(representative, Z, Wyckoff position, member) of the orbit of one (symmetrised) site.

    The Wyckoff position is the one whose multiplicity is the orbit's size and whose member subspaces pass
    through the point; the representative is put exactly on that subspace, so its orbit is exact.
    """
    orbit = orbit_of(table, point, tol=ORBIT_TOL)
    rep = orbit[int(np.argmin(periodic_distances(orbit, REFERENCE_POINT, lattice)))]
    best = None
    for wp in table.wyckoff:
        if wp.multiplicity != len(orbit):
            continue
        for k in range(wp.multiplicity):
            params, on, dist = closest_on_member(wp, k, rep, lattice)
            if best is None or dist < best[0]:
                best = (dist, wp, k, params)
            if dist < 1e-9:
                break
        if best is not None and best[0] < 1e-9:
            break
    scale = np.linalg.norm(lattice, axis=1).max()
    if best is None or best[0] > ON_POSITION_TOL * scale:
        raise SymmetryAnalysisError(
            f"site Z={z} at {np.round(rep, 5)} (orbit of {len(orbit)}) lies on no Wyckoff position of space group "
            f"{table.number}" + ("" if best is None else f" (nearest {best[1].label}, {best[0]:.2e} A away)")
        )
    _, wp, k, params = best
    exact = np.mod(wp.A[k] @ params + wp.b[k], 1.0)
    return exact, z, wp, k


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
