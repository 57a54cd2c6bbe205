"""Space groups of crystals and the space-group distribution distance d_sg (SymmCD section 5.1).

d_sg is the Jensen-Shannon *distance* (square root of the divergence, natural log, so 0 <= d_sg <= sqrt(ln 2))
between the space-group histograms of the generated and the reference crystals, space groups found by spglib.

Default protocol (documented deviations from SymmCD's code, see docs/metrics.md):
- 230 bins, one per space group;
- the same symprec (0.1 Angstrom) on both sides.
``paper_protocol`` reproduces SymmCD's ``compute_metrics.py``: ``np.histogram(bins=range(1, 231))`` (229 bins,
groups 229 and 230 share the last), generated crystals at symprec 0.1 but the reference at pymatgen's default
``get_space_group_info()`` symprec 0.01.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure
from scipy.spatial.distance import jensenshannon

SYMPREC = 0.1  # Angstrom, SymmCD's tolerance for generated crystals
PAPER_REFERENCE_SYMPREC = 0.01  # Angstrom, pymatgen's default, used by SymmCD's code for the test set


def spacegroup_number(structure: Structure, symprec: float = SYMPREC, angle_tolerance: float = 5.0) -> int:
    """International space-group number found by spglib; 1 (P1) when spglib finds nothing, as in SymmCD's code."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        number = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance).get_space_group_number()
    except Exception:  # noqa: BLE001 - spglib fails on degenerate cells; SymmCD counts those as P1
        return 1
    return int(number) if number else 1


def spacegroup_histogram(numbers: Sequence[int] | np.ndarray, paper_protocol: bool = False) -> np.ndarray:
    """Counts per space group: 230 bins, or SymmCD's 229 (``np.histogram(bins=range(1, 231))``)."""
    values = np.asarray([int(n) for n in numbers], dtype=np.int64)
    if paper_protocol:
        return np.histogram(values, bins=range(1, 231))[0].astype(np.float64)
    if values.size and (values.min() < 1 or values.max() > 230):
        raise ValueError("space-group numbers must lie in 1..230")
    return np.bincount(values, minlength=231)[1:].astype(np.float64)


def spacegroup_distance(generated: Sequence[int] | np.ndarray, reference: Sequence[int] | np.ndarray,
                        paper_protocol: bool = False) -> float:
    """d_sg: Jensen-Shannon distance (natural log) between the two space-group histograms."""
    if len(generated) == 0 or len(reference) == 0:
        return float("nan")
    p = spacegroup_histogram(generated, paper_protocol)
    q = spacegroup_histogram(reference, paper_protocol)
    return float(jensenshannon(p, q))
