"""Lattices for the lattice tests: random valid cells, random rotations, and real cells of every crystal system
(MP-20 test split; skips without the data).

Cells are spglib's refined standard cells (pymatgen ``get_refined_structure``, symprec 0.1): the ITA settings
(monoclinic unique axis b, trigonal groups on hexagonal axes) whose constraints SymmCD's k masks express.
Rows are picked by the CSV's space-group column and kept only when spglib agrees on the crystal system.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from crystalgen.geometry.log_lattice import crystal_system
from crystalgen.testing import benchmark_csv

SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")


@cache
def _standard_cells(per_system: int) -> tuple[tuple[str, str, int, Structure], ...]:
    frame = pd.read_csv(benchmark_csv("mp_20", "test"), usecols=["material_id", "cif", "spacegroup.number"])
    frame["system"] = frame["spacegroup.number"].map(crystal_system)
    cells = []
    for system in SYSTEMS:
        candidates = frame[frame["system"] == system].sample(n=3 * per_system, random_state=0)
        kept = 0
        for material_id, cif in zip(candidates["material_id"], candidates["cif"]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                analyzer = SpacegroupAnalyzer(Structure.from_str(cif, fmt="cif"), symprec=0.1)
                space_group = analyzer.get_space_group_number()
                if crystal_system(space_group) != system:
                    continue
                cells.append((system, material_id, space_group, analyzer.get_refined_structure()))
            kept += 1
            if kept == per_system:
                break
    return tuple(cells)


def standard_cells(per_system: int = 20) -> list[tuple[str, str, int, Structure]]:
    """``(crystal system, material_id, space-group number, refined Structure)``, ``per_system`` of each system."""
    return list(_standard_cells(per_system))


def random_params(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid random cells: lengths 2-12 A, angles 50-130 deg with the cell condition enforced by rejection."""
    rng = np.random.default_rng(seed)
    lengths, angles = [], []
    while len(lengths) < n:
        ang = rng.uniform(50, 130, 3)
        ca, cb, cg = np.cos(np.radians(ang))
        if 1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg > 0.05:
            lengths.append(rng.uniform(2, 12, 3))
            angles.append(ang)
    return torch.tensor(np.array(lengths)), torch.tensor(np.array(angles))


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, 3) float64 proper rotations (det +1), reproducible from the seed."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return q * torch.sign(torch.linalg.det(q))[:, None, None]
