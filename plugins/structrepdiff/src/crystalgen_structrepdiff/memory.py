"""StructRepDiff's memory estimate (GenerativeModel.memory_cost, memory_overhead).

Training and the sampler loop run the 1D U-Net over the fixed-size representation: per crystal, every level holds
its length (halved per level) times its channels in two ResNet blocks and a linear attention, whatever the crystal's
atoms. Decoding reconstructs positions by basin hopping over pair lists, in groups that the reconstruction keeps
within ``max_pairs`` (a crystal above it alone is refused): so decoding costs a per-batch overhead of max_pairs
times the bytes of one pair, whatever the batch (the pair estimate counts each atom of each trial once more, so its
positions and optimiser state are covered too). Float counts follow the configuration; ``FLOAT_COPIES`` and
``BYTES_PER_PAIR`` are calibrated on the small preset by bench/model_memory.py, results in
bench/results/model_memory_small.json (the largest measured ratio over every case plus 10 % for run-to-run noise,
rounded up to a half, so that the estimate is >= every measured point).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import Tensor

#: Bytes per counted U-Net float: training step (forward, backward, Adam), sampling step.
FLOAT_COPIES = {True: 19.0, False: 15.0}  # measured at most 16.96 and 13.42 (decoding included)
#: Bytes per (estimated) pair of a reconstruction group: pair indices, vectors, basis values and their gradients.
BYTES_PER_PAIR = 470.0  # measured at most 426.85


def unet_floats(length: int, u: DictConfig) -> float:
    """Floats per crystal in the U-Net: length x channels per level (two ResNet blocks with their skip inputs and an
    attention block), the length halving from level to level, down and up."""
    mults = [int(m) for m in u.dim_mults]
    attention = int(u.attention_heads) * int(u.attention_dim_head)
    return sum(length / 2**i * (6 * int(u.dim) * m + 3 * attention) for i, m in enumerate(mults)) * 2


def memory_cost(length: int, unet: DictConfig, num_nodes: Tensor, training: bool) -> Tensor:
    """Bytes per crystal (representation of ``length`` features, U-Net section ``unet``): the same for any
    ``num_nodes``, since the atoms' decoding cost is the per-batch :func:`decode_overhead`."""
    return torch.full(num_nodes.shape, FLOAT_COPIES[training] * unet_floats(length, unet), dtype=torch.float64)


def decode_overhead(max_pairs: int) -> float:
    """Bytes of one reconstruction group at its cap, ``max_pairs`` pairs."""
    return BYTES_PER_PAIR * max_pairs
