"""A handful of small textbook crystals, exact and strained, for checks that need real structures."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

#: (space group, cubic lattice constant in Angstrom, species, Wyckoff representatives in fractional coordinates)
PROTOTYPES: tuple[tuple[str, float, list[str], list[list[float]]], ...] = (
    ("Fm-3m", 5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    ("Pm-3m", 4.12, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    ("Pm-3m", 3.91, ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
    ("Fd-3m", 5.43, ["Si"], [[0, 0, 0]]),
)


def check_crystals(n: int = 8, seed: int = 0) -> list[Structure]:
    """``n`` primitive cells of the prototypes in turn (2 to 5 atoms): the first of each exact, the others strained
    (<= 3 %) and rattled (<= 0.02), so that a model's statistics see some spread."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        group, a, species, coords = PROTOTYPES[i % len(PROTOTYPES)]
        s = Structure.from_spacegroup(group, Lattice.cubic(a), species, coords).get_primitive_structure()
        if i >= len(PROTOTYPES):
            lattice = Lattice(s.lattice.matrix @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))))
            s = Structure(lattice, s.species, (s.frac_coords + rng.uniform(-0.02, 0.02, s.frac_coords.shape)) % 1.0)
        out.append(s)
    return out
