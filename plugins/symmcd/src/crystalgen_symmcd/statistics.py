"""Data-derived distributions of SymmCD, learned from the preprocessed training set (paper section 4.3, App. D).

p(G) (space-group frequencies), p(M | G) (number of orbit representatives given G), the marginal of atom types
over representatives, and, per space group and axis, the marginal of site-symmetry classes (the D3PM prior
of S). Space groups absent from training get uniform site-symmetry marginals (as in the official code) and
the overall distribution of M.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Data

from crystalgen_symmcd.denoiser import NUM_ELEMENTS
from crystalgen_symmcd.symmetry.axes import NUM_AXES
from crystalgen_symmcd.symmetry.site_symmetry import NUM_SITE_CLASSES

NUM_SPACE_GROUPS = 230


@dataclass
class TrainingStatistics:
    spacegroup_counts: Tensor  # (231,) index = SG number, row 0 unused
    representatives_counts: Tensor  # (231, max_M + 1)
    atom_type_counts: Tensor  # (94,)
    site_symmetry_counts: Tensor  # (231, 15, 13)

    def spacegroup_probs(self) -> Tensor:
        return self.spacegroup_counts / self.spacegroup_counts.sum()

    def representatives_probs(self) -> Tensor:
        """p(M | G) per row; rows of unseen groups fall back to the distribution of M over all groups."""
        overall = self.representatives_counts.sum(0)
        counts = torch.where(self.representatives_counts.sum(1, keepdim=True) > 0, self.representatives_counts, overall)
        return counts / counts.sum(1, keepdim=True)

    def atom_type_marginal(self) -> Tensor:
        return self.atom_type_counts / self.atom_type_counts.sum()

    def site_symmetry_marginals(self) -> Tensor:
        """(231, 15, 13): per-group, per-axis class frequencies; uniform for groups without data."""
        counts = self.site_symmetry_counts
        seen = counts.sum(-1, keepdim=True) > 0
        return torch.where(seen, counts / counts.sum(-1, keepdim=True).clamp(min=1), torch.full_like(counts, 1.0 / NUM_SITE_CLASSES))


def count(train: Sequence[Data], max_representatives: int) -> TrainingStatistics:
    """Counts over preprocessed items (see crystalgen_symmcd.transform); items with more than
    ``max_representatives`` orbits raise, since the model could never sample them."""
    if not train:
        raise ValueError("fit_statistics needs at least one training crystal")
    sg = torch.zeros(NUM_SPACE_GROUPS + 1, dtype=torch.float64)
    reps = torch.zeros(NUM_SPACE_GROUPS + 1, max_representatives + 1, dtype=torch.float64)
    types = torch.zeros(NUM_ELEMENTS, dtype=torch.float64)
    sites = torch.zeros(NUM_SPACE_GROUPS + 1, NUM_AXES, NUM_SITE_CLASSES, dtype=torch.float64)
    for item in train:
        g, m = int(item.spacegroup), int(item.atom_types.shape[0])
        if m > max_representatives:
            raise ValueError(f"training crystal {getattr(item, 'material_id', '?')} has {m} orbits, more than "
                             f"max_representatives={max_representatives}; raise the limit or filter the data")
        if int(item.atom_types.max()) > NUM_ELEMENTS:
            raise ValueError(f"training crystal {getattr(item, 'material_id', '?')} holds Z={int(item.atom_types.max())}; "
                             f"SymmCD models elements 1..{NUM_ELEMENTS}")
        sg[g] += 1
        reps[g, m] += 1
        types += torch.bincount(item.atom_types - 1, minlength=NUM_ELEMENTS).double()
        sites[g] += torch.nn.functional.one_hot(item.site_symmetry, NUM_SITE_CLASSES).sum(0).double()
    return TrainingStatistics(sg, reps, types, sites)
