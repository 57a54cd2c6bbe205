"""SyMat's memory estimate (GenerativeModel.memory_cost).

Both SphereNets run on neighbour graphs whose degree is capped (``max_neighbors`` per atom, whole distance shells
kept), so a crystal's edges, triplets and torsion pairs grow with its atoms, not with its density: per atom K
edges (edge embeddings and messages in every layer), K^2 triplets (interaction embeddings and the angle and
torsion bases) and, with the torsion basis, K^3 pairs of triplets (the vectors of the dihedral search). Those float
counts follow the configuration; ``FLOAT_COPIES`` (bytes per counted float) is calibrated on the small preset by
bench/model_memory.py, results in bench/results/model_memory_symat_small.json: the largest ratio of measured
working bytes to counted floats over every case plus 10 % (run-to-run noise), rounded up to a half. Ties at the cap
(symmetric crystals) can exceed K neighbours; the calibration crystals are random, so that margin is all there is
for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

#: Bytes per counted float: training step (both networks and the heads; forward, backward, Adam), and a sampling
#: step plus decoding (the encoder counted as well: reconstruction and optimisation run it).
FLOAT_COPIES = {True: 6.0, False: 0.5}  # measured at most 5.04 and 0.40
#: Floats per crystal besides its atoms: latent codes, heads, lattice and composition.
CRYSTAL_FLOATS = 4096
#: Floats per pair of triplets in the torsion search (vectors, cross products, angles).
TORSION_PAIR_FLOATS = 16


def network_floats(section: Mapping[str, Any]) -> int:
    """Floats per atom of one SphereNet section (``model.encoder`` or ``model.denoiser``)."""
    k = int(section.get("max_neighbors") or 12)
    hidden, int_emb = int(section["hidden_channels"]), int(section["int_emb_size"])
    radial, spherical, basis = int(section["num_radial"]), int(section["num_spherical"]), section.get("basis", "torsion")
    angle_dim = radial * spherical if basis != "distance" else 0
    torsion_dim = angle_dim * spherical if basis == "torsion" else 0
    edge = 4 * hidden + int_emb + radial
    triplet = int_emb * (1 + (angle_dim > 0) + (torsion_dim > 0)) + angle_dim + torsion_dim
    torsion_pairs = k**3 * TORSION_PAIR_FLOATS if basis == "torsion" else 0
    return int(section["num_layers"]) * (k * edge + k * k * triplet) + 3 * k * hidden + torsion_pairs


def memory_cost(encoder: Mapping[str, Any], denoiser: Mapping[str, Any], num_nodes: Tensor, training: bool) -> Tensor:
    """Bytes per crystal of ``num_nodes`` atoms for the model sections ``encoder`` and ``denoiser``."""
    per_atom = network_floats(encoder) + network_floats(denoiser)
    return FLOAT_COPIES[training] * (per_atom * num_nodes.double() + CRYSTAL_FLOATS)
