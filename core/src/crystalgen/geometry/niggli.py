"""Cell choice for pymatgen Structures: Niggli reduction and the standard (from_parameters) orientation.

These act on Structures (at the data edge, before tensors are made), as CDVAE's preprocessing does:
``niggli_reduce`` then ``with_standard_orientation`` (CDVAE ``build_crystal`` with niggli=True).
"""

from __future__ import annotations

from pymatgen.core import Lattice, Structure

from crystalgen.geometry.lattice import InvalidLatticeError


def niggli_reduce(structure: Structure) -> Structure:
    """The same crystal on its Niggli-reduced cell (pymatgen, tolerance 1e-5 * V^(1/3)), sites wrapped into [0, 1).

    The lattice vectors keep their Cartesian orientation, so the matrix is in general not in the standard
    orientation (use :func:`with_standard_orientation` afterwards for that).
    """
    try:
        return structure.get_reduced_structure(reduction_algo="niggli")
    except (ValueError, RuntimeError) as exc:  # pymatgen gives up on degenerate or extreme cells
        params = ", ".join(f"{p:.6g}" for p in structure.lattice.parameters)
        raise InvalidLatticeError(f"Niggli reduction failed for the cell (a, b, c, alpha, beta, gamma) = ({params}): {exc}") from exc


def with_standard_orientation(structure: Structure) -> Structure:
    """The same crystal with its lattice rebuilt by ``Lattice.from_parameters`` (c along z, a in the xz plane).

    Fractional coordinates, species and site properties are kept, so the crystal is only rotated; a left-handed
    cell becomes its mirror image (parameters do not record handedness), as in CDVAE's preprocessing.
    """
    lattice = Lattice.from_parameters(*structure.lattice.parameters)
    return Structure(
        lattice,
        structure.species_and_occu,
        structure.frac_coords,
        coords_are_cartesian=False,
        site_properties=structure.site_properties,
        labels=structure.labels,
    )
