"""SymmCD's memory estimate (GenerativeModel.memory_cost).

The denoiser passes messages on the fully connected graph of each crystal's orbit representatives (denoiser.py):
M^2 ordered pairs, each holding an edge MLP's input (2 hidden + edge features), hidden and output in every layer;
per node the layer's norms, aggregates and update MLP, plus the embeddings of the inputs. Those float counts follow
the architecture; ``FLOAT_COPIES`` (bytes per counted float, i.e. float32 times the copies autograd, the allocator
and decoding keep) is calibrated on the small preset by bench/model_memory.py, results in
bench/results/model_memory_small.json: the largest ratio of measured working bytes to counted floats over every
case plus 10 % (run-to-run noise), rounded up to a half, so that the estimate is >= every measured point.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch import Tensor

from crystalgen_symmcd.denoiser import NUM_ELEMENTS
from crystalgen_symmcd.symmetry.axes import NUM_AXES
from crystalgen_symmcd.symmetry.site_symmetry import NUM_SITE_CLASSES

#: Bytes per counted float: training step (forward, backward, Adam), sampling step plus decoding.
FLOAT_COPIES = {True: 17.5, False: 4.0}  # measured at most 15.78 and 3.20
#: Floats per crystal besides its nodes: space-group encoding and its MLP, time embedding, k and its noise.
CRYSTAL_FLOATS = 397 + 3 * 128 + 64


def pair_floats(d: DictConfig) -> int:
    """Floats one ordered pair holds over all layers: Fourier features of x_j - x_i and k, then per layer the edge
    MLP's input (2 hidden + those), its hidden layer and its message."""
    edge = 6 + 6 * int(d.num_frequencies)
    return edge + int(d.num_layers) * (4 * int(d.hidden) + edge)


def node_floats(d: DictConfig) -> int:
    """Floats one representative holds: input embeddings (types, site symmetry, Fourier, space group), per layer
    norm, aggregate, update MLP input, hidden and output, and the output heads."""
    inputs = NUM_ELEMENTS + NUM_AXES * NUM_SITE_CLASSES + 6 * int(d.num_frequencies) + int(d.spacegroup_dim) \
        + int(d.site_symmetry_dim) + int(d.hidden)
    heads = NUM_ELEMENTS + NUM_AXES * NUM_SITE_CLASSES + 3
    return inputs + int(d.num_layers) * 6 * int(d.hidden) + heads


def memory_cost(d: DictConfig, num_nodes: Tensor, training: bool) -> Tensor:
    """Bytes per crystal of ``num_nodes`` representatives, for the denoiser config ``d`` (model.denoiser)."""
    n = num_nodes.double()
    return FLOAT_COPIES[training] * (pair_floats(d) * n * n + node_floats(d) * n + CRYSTAL_FLOATS)
