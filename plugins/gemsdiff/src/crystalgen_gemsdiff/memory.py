"""GemsDiff's memory estimate (GenerativeModel.memory_cost), counted from the denoiser's configuration.

Both GemNet-T networks run on a k-nearest-neighbour graph closed under reversal, so an atom has about k to 2k edges
(whole distance shells are kept; DEGREE takes 2k + 4) and degree^2 triplets. Per triplet and output block the
lattice head holds its gathered hidden layer, two more and the three fields' products; per triplet and interaction
block GemNet's bilinear layer holds the padded triplet messages. Per edge and block: the message, its residual
layers and the bases. ``FLOAT_COPIES`` (bytes per counted float) is calibrated on the small preset by
bench/model_memory.py, results in bench/results/model_memory_gemsdiff_small.json: the largest ratio of measured
working bytes to counted floats over every case plus 10 % (run-to-run noise), rounded up to a half. The paper preset
(kNN 32, width 128) was not measured: its counts follow the same formulas, the ratio is assumed to carry over.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch import Tensor

#: Bytes per counted float: training step (forward, backward, Adam) and a sampling step plus decoding.
FLOAT_COPIES = {True: 4.0, False: 1.0}  # measured at most 3.45 and 0.48
#: Floats per crystal besides its atoms: the per-crystal embedding, the lattice action and its 3x3 maps.
CRYSTAL_FLOATS = 4096


def degree(k: int) -> int:
    return 2 * k + 4


def atom_floats(d: DictConfig) -> int:
    """Floats one atom holds in both networks: its edges' and triplets' working values over all blocks."""
    k, hidden = int(d.get("knn", 32)), int(d.get("hidden", 128))
    blocks = int(d.get("num_blocks", 3))
    lattice_hidden = int(d.get("lattice_hidden", 64))
    emb_trip = int(d.get("emb_trip", 64))
    num_radial = int(d.get("num_radial", 128))
    edges = degree(k)
    triplets = edges * edges
    per_edge = blocks * 12 * hidden + 4 * num_radial
    per_triplet_gnn = blocks * 2 * emb_trip + 16
    per_triplet_head = (blocks + 1) * (3 * lattice_hidden + 3) + 27 + 9
    networks = 2 if d.get("encoder", True) else 1
    return networks * (edges * per_edge + triplets * per_triplet_gnn) + triplets * per_triplet_head + 8 * hidden


def memory_cost(d: DictConfig, num_nodes: Tensor, training: bool) -> Tensor:
    """Bytes per crystal of ``num_nodes`` atoms, for the denoiser config ``d`` (model.denoiser)."""
    return FLOAT_COPIES[training] * (atom_floats(d) * num_nodes.double() + CRYSTAL_FLOATS)
