"""What the metric stages that build graphs or all-pairs arrays will cost in memory, known before they build them.

A generated crystal can be arbitrarily dense (a 20-atom Pb cell at 0.65 A^3 per atom gives CHGNet 600,000 bond
angles) or large (a 20,000-atom cell gives a 20,000 x 20,000 distance matrix), so each stage sizes its batches by
these estimates (crystalgen.resources.pack_by_cost) and refuses a crystal whose estimate alone exceeds the memory
budget, with crystalgen.resources.over_budget_reason.

Graph stages cost ``per_crystal + per_atom N + per_edge E + per_angle A`` bytes, with the neighbour counts of the
cell's number density (crystalgen.resources.neighbours_within): E = N n(edge_cutoff) directed edges,
A = N n(angle_cutoff)^2 pairs of bonds sharing an atom. All-pairs stages cost ``per_call + per_pair N1 N2``.

The constants are peak-RSS increases measured by bench/memory_costs.py (each point in a fresh process, one thread),
rounded up so that the estimate is at least the measurement at every calibration point, random dense cells and
MP-20 crystals alike: bench/results/memory_costs.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pymatgen.core import Structure

from crystalgen.resources import neighbours_within

MB = 1024**2
KB = 1024


@dataclass(frozen=True)
class GraphCost:
    """Bytes a graph stage needs per crystal, atom, edge within ``edge_cutoff`` and angle within ``angle_cutoff``.

    ``volume_factor`` < 1 prices the crystal as if compressed that much (a relaxation may shrink the cell).
    """

    what: str
    edge_cutoff: float
    angle_cutoff: float
    per_crystal: float
    per_atom: float
    per_edge: float
    per_angle: float
    volume_factor: float = 1.0

    def counts(self, num_atoms: int, volume: float) -> tuple[float, float]:
        """Expected (directed edges, bond angles) of a cell of ``num_atoms`` atoms in ``volume`` A^3."""
        volume = volume * self.volume_factor
        edges = num_atoms * neighbours_within(num_atoms, volume, self.edge_cutoff)
        angles = num_atoms * neighbours_within(num_atoms, volume, self.angle_cutoff) ** 2
        return edges, angles

    def estimate(self, num_atoms: int, volume: float) -> float:
        """Bytes for one crystal; infinite when the cell has no usable volume."""
        edges, angles = self.counts(num_atoms, volume)
        cost = self.per_crystal + self.per_atom * num_atoms + self.per_edge * edges + self.per_angle * angles
        return cost if math.isfinite(cost) else math.inf

    def of(self, structure: Structure) -> float:
        try:
            return self.estimate(len(structure), float(structure.volume))
        except (ValueError, ArithmeticError):  # a broken lattice: no graph can be built, refuse it
            return math.inf


@dataclass(frozen=True)
class PairCost:
    """Bytes per call and per pair of atoms of a stage that holds all pairs at once (distance matrices, matching)."""

    what: str
    per_pair: float
    per_call: float = 0.0

    def estimate(self, num_atoms_a: int, num_atoms_b: int) -> float:
        return self.per_call + self.per_pair * num_atoms_a * num_atoms_b


# Constants from bench/results/memory_costs.json (commit 781c418, one thread): peak-RSS increase / estimate is at
# most 0.96 over its 27 points (dense random Pb cells 0.65-16 A^3 per atom, fcc supercells, batches of 64 MP-20
# test crystals); re-run bench/memory_costs.py after changing a stage or a constant.

#: CHGNet energies and crystal features (graph conversion + a forward pass without autograd); CHGNet's graphs:
#: atoms within 6 A, bond angles between bonds within 3 A.
CHGNET_PREDICT = GraphCost("its CHGNet graph", edge_cutoff=6.0, angle_cutoff=3.0,
                           per_crystal=1 * MB, per_atom=64 * KB, per_edge=2 * KB, per_angle=6 * KB)
#: One CHGNet relaxation (forces and stress through autograd, the optimiser's state), priced at 70% of the
#: starting volume because the cell relaxes too.
CHGNET_RELAX = GraphCost("its CHGNet relaxation", edge_cutoff=6.0, angle_cutoff=3.0,
                         per_crystal=4 * MB, per_atom=256 * KB, per_edge=12 * KB, per_angle=48 * KB,
                         volume_factor=0.7)
#: CDVAE's DimeNet++ property model per CrystalNN edge and triplet (counted on the built graph, before triplets
#: are listed; see cdvae_property.predictor).
DIMENET_PER_EDGE = 8 * KB
DIMENET_PER_TRIPLET = 2 * KB
DIMENET_PER_ATOM = 16 * KB
#: pymatgen's minimum-image distance matrix (Structure.distance_matrix: 27 images per pair, float64).
DISTANCE_MATRIX = PairCost("its distance matrix", per_pair=48)
#: pymatgen's StructureMatcher on two crystals (its all-pairs distance arrays over lattice candidates).
STRUCTURE_MATCHER = PairCost("structure matching", per_pair=256, per_call=1 * MB)


def dimenet_cost(num_atoms: int, num_edges: int, num_triplets: int) -> float:
    """Bytes of one crystal's DimeNet++ forward pass (triplet listing included)."""
    return DIMENET_PER_ATOM * num_atoms + DIMENET_PER_EDGE * num_edges + DIMENET_PER_TRIPLET * num_triplets


def refusal_summary(metric: str, reasons: Sequence[str]) -> dict[str, int | str]:
    """``<metric>_n_refused`` and, when there is one, ``<metric>_refused_reason`` (the first) for metrics.json."""
    refused = [r for r in reasons if r]
    out: dict[str, int | str] = {f"{metric}_n_refused": len(refused)}
    if refused:
        out[f"{metric}_refused_reason"] = refused[0]
    return out
