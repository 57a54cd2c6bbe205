"""Periodic pair lists over Cartesian positions, for the EAD sums and d_min.

The neighbour search is the core's exact ``radius_graph_pbc``; here its image offsets become fixed Cartesian shifts
(offset @ lattice), so that pair vectors are ``positions[j] + shift - positions[i]`` and gradients reach the
Cartesian positions directly. A list built with a radius ``cutoff + skin`` stays complete while no atom has moved
more than ``skin / 2`` from where it was built (a Verlet list), which lets the reconstruction reuse it across many
optimiser steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from crystalgen import radius_graph_pbc


@dataclass(frozen=True)
class PairList:
    """Every (centre i, neighbour j, image) within ``radius`` of a batch of periodic systems.

    Attributes:
        centre, neighbour: (P,) atom indices into the batch's positions.
        shift: (3, P) Cartesian lattice translation of the neighbour's image, Angstrom (component-major).
        radius: search radius in Angstrom.
        reference: (N, 3) positions the list was built at (for the Verlet displacement test).
    """

    centre: Tensor
    neighbour: Tensor
    shift: Tensor
    radius: float
    reference: Tensor

    def vectors(self, positions: Tensor) -> Tensor:
        """(3, P) Cartesian vectors centre -> neighbour image for ``positions`` (N, 3) in Angstrom.

        Component-major: gathering and scattering (the gradient) whole rows of length P is several times faster
        than 3-wide rows per pair."""
        by_axis = positions.T
        return by_axis.index_select(1, self.neighbour) + self.shift - by_axis.index_select(1, self.centre)

    def still_complete(self, positions: Tensor, cutoff: float) -> bool:
        """True while every pair within ``cutoff`` is in the list: no atom moved more than (radius - cutoff) / 2."""
        moved = (positions.detach() - self.reference).norm(dim=-1).max() if positions.shape[0] else positions.new_zeros(())
        return bool(2 * moved <= self.radius - cutoff)


def lengths(vec: Tensor) -> Tensor:
    """(P,) lengths of component-major vectors (3, P): contiguous passes, where norm(dim=0) strides. Floored at
    1e-6 A so that two coincident atoms give a finite gradient."""
    return (vec[0] * vec[0] + vec[1] * vec[1] + vec[2] * vec[2]).clamp_min(1e-12).sqrt()


def system_index(num_atoms: Tensor) -> Tensor:
    """(N,) system of each atom for ``num_atoms`` (S,)."""
    return torch.repeat_interleave(torch.arange(num_atoms.numel(), device=num_atoms.device), num_atoms)


@torch.no_grad()
def build_pairs(positions: Tensor, lattice: Tensor, num_atoms: Tensor, radius: float) -> PairList:
    """Pair list of systems with Cartesian ``positions`` (N, 3), cells ``lattice`` (S, 3, 3) (rows are lattice
    vectors, Angstrom) and ``num_atoms`` (S,), within ``radius`` Angstrom."""
    positions = positions.detach()
    system = system_index(num_atoms)
    inverse = torch.linalg.inv(lattice.double())
    frac = torch.bmm(positions.double().unsqueeze(1), inverse.index_select(0, system)).squeeze(1)
    graph = radius_graph_pbc(frac, lattice.double(), num_atoms, radius)
    neighbour, centre = graph.edge_index
    shift = torch.bmm(graph.cell_offsets.double().unsqueeze(1), lattice.double().index_select(0, system.index_select(0, centre))).squeeze(1)
    return PairList(centre, neighbour, shift.T.to(positions.dtype).contiguous(), float(radius), positions.clone())
