"""The expanded EAD representation R_str = [max-pool EAD, min-pool EAD, d_min] of periodic systems (paper eq. 1).

The same function serves preprocessing (one system per crystal) and reconstruction (one system per crystal and
trial, Cartesian positions requiring gradients), so the target and the reconstructed descriptor are computed
identically.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crystalgen_structrepdiff.ead import METHODS, EADParameters, RadialTable, ead
from crystalgen_structrepdiff.pairs import PairList, build_pairs, lengths, system_index


class StructureDescriptor:
    """Positions + types + cells -> R_str (S, 2 N_e + 1).

    Args:
        params: EAD hyper-parameters.
        method: ``table`` (interpolated radial basis, the default) or ``exact`` (see ead.py).
        table_spacing: grid spacing of the table in Angstrom.
        dtype: floating type of the computation (float64 for preprocessing, float32 for reconstruction).
    """

    def __init__(self, params: EADParameters, method: str = "table", table_spacing: float = 0.01,
                 dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> None:
        if method not in METHODS:
            raise ValueError(f"EAD method must be one of {METHODS}, got {method!r}")
        self.params = params
        self.method = method
        self.dtype = dtype
        self.table = RadialTable(params, table_spacing, dtype).to(device) if method == "table" else None

    @property
    def size(self) -> int:
        """2 N_e + 1."""
        return 2 * self.params.num_features + 1

    def to(self, device: torch.device | str) -> StructureDescriptor:
        if self.table is not None:
            self.table = self.table.to(device)
        return self

    def pairs(self, positions: Tensor, lattice: Tensor, num_atoms: Tensor, skin: float = 0.0) -> PairList:
        """Pair list within cutoff + ``skin`` Angstrom (see pairs.py)."""
        return build_pairs(positions, lattice, num_atoms, self.params.cutoff + skin)

    def __call__(self, positions: Tensor, atomic_numbers: Tensor, num_atoms: Tensor, pairs: PairList) -> Tensor:
        """R_str (S, 2 N_e + 1) of systems with Cartesian ``positions`` (N, 3) Angstrom, ``atomic_numbers`` (N,) and
        ``num_atoms`` (S,), from a pair list covering at least the cutoff.

        Max and min pooling over each system's atoms make it permutation invariant (eq. 1); d_min is the shortest
        distance between two atoms, periodic images included, capped at the cutoff (a system with no pair inside
        it, e.g. one atom in a cell wider than r_c, gets d_min = r_c).
        """
        vec = pairs.vectors(positions)
        features = ead(vec, pairs.centre, atomic_numbers.index_select(0, pairs.neighbour), positions.shape[0], self.params, self.table)
        system = system_index(num_atoms)
        S, F = num_atoms.numel(), features.shape[1]
        index = system.unsqueeze(1).expand(-1, F)
        pooled_max = features.new_zeros(S, F).scatter_reduce(0, index, features, "amax", include_self=False)
        pooled_min = features.new_zeros(S, F).scatter_reduce(0, index, features, "amin", include_self=False)
        return torch.cat([pooled_max, pooled_min, self._shortest_distance(vec, system.index_select(0, pairs.centre), S).unsqueeze(1)], dim=1)

    def _shortest_distance(self, vec: Tensor, pair_system: Tensor, num_systems: int) -> Tensor:
        """d_min (S,) capped at the cutoff. The closest pair of each system is found without gradient bookkeeping and
        only its length is differentiated: the gradient of a minimum flows to that one pair anyway."""
        cutoff = self.params.cutoff
        with torch.no_grad():
            distance = lengths(vec)
            shortest = distance.new_full((num_systems,), cutoff).scatter_reduce(0, pair_system, distance, "amin")
            is_closest = (distance == shortest.index_select(0, pair_system)) & (distance < cutoff)
            pair = torch.full((num_systems,), vec.shape[1], device=vec.device).scatter_reduce(
                0, pair_system[is_closest], is_closest.nonzero().squeeze(1), "amin")
        found = pair < vec.shape[1]
        closest = lengths(vec.index_select(1, pair[found]))
        return distance.new_full((num_systems,), cutoff).index_put((found.nonzero().squeeze(1),), closest)

    def of_cells(self, positions: Tensor, atomic_numbers: Tensor, lattice: Tensor, num_atoms: Tensor) -> Tensor:
        """R_str of fixed structures (no gradient bookkeeping): builds the pair list and evaluates."""
        positions = positions.to(self.dtype)
        return self(positions, atomic_numbers, num_atoms, self.pairs(positions, lattice.to(self.dtype), num_atoms))
