"""CDVAE's memory estimate (GenerativeModel.memory_cost).

Both networks work on neighbour graphs whose degree is capped (``max_neighbors`` per atom, whole distance shells
kept), so a crystal's edges and triplets grow with its atoms, not with its density: the DimeNet++ encoder holds per
atom K edges (hidden + radial basis) and K^2 triplets (interaction embedding + spherical x radial basis) in every
block; the GemNet-T decoder's graph is closed under reversal (about 2K edges per atom, (2K)^2 triplets) with edge,
radial and triplet embeddings in every block. Those float counts follow the configuration; ``FLOAT_COPIES`` (bytes
per counted float) is calibrated on the small preset by bench/model_memory.py, results in
bench/results/model_memory_small.json: the largest ratio of measured working bytes to counted floats over every
case plus 10 % (run-to-run noise), rounded up to a half, so that the estimate is >= every measured point. Ties at
the cap (symmetric crystals) can exceed K neighbours; the calibration crystals are random, so that margin is all
there is for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

#: Bytes per counted float: training step (encoder, decoder, heads; forward, backward, Adam), sampling step (the
#: encoder counted as well: reconstruction and optimisation run it) plus decoding.
FLOAT_COPIES = {True: 11.0, False: 2.5}  # measured at most 9.94 and 1.97
#: Floats per crystal besides its atoms: latent code, aggregate heads, lattice and composition.
CRYSTAL_FLOATS = 4096


def encoder_floats(e: Mapping[str, Any]) -> int:
    """Floats per atom in the DimeNet++ encoder (K = max_neighbors)."""
    k = int(e.get("max_neighbors", 20))  # the encoder's default
    edge = int(e["hidden_channels"]) + int(e["num_radial"]) + int(e["out_emb_channels"])
    triplet = int(e["int_emb_size"]) + int(e["basis_emb_size"]) + int(e["num_spherical"]) * int(e["num_radial"])
    return int(e["num_blocks"]) * (k * edge + k * k * triplet)


def decoder_floats(d: Mapping[str, Any]) -> int:
    """Floats per atom in the GemNet-T decoder (2K edges and (2K)^2 triplets after closing under reversal)."""
    k = 2 * int(d.get("max_neighbors", 20))  # the decoder's default
    edge = 2 * int(d["hidden_dim"]) + int(d["num_radial"]) + int(d["emb_rbf"]) + int(d["emb_bilinear"])
    triplet = int(d["emb_trip"]) + int(d["emb_cbf"]) + int(d["num_spherical"])
    return int(d["num_blocks"]) * (k * edge + k * k * triplet) + int(d["hidden_dim"])


def memory_cost(encoder: Mapping[str, Any], decoder: Mapping[str, Any], num_nodes: Tensor, training: bool) -> Tensor:
    """Bytes per crystal of ``num_nodes`` atoms for the model sections ``encoder`` and ``decoder``."""
    per_atom = encoder_floats(encoder) + decoder_floats(decoder)
    return FLOAT_COPIES[training] * (per_atom * num_nodes.double() + CRYSTAL_FLOATS)
