"""GemNet-T (Gasteiger, Becker & Guennemann 2021, triplets only) with direct, rotation-equivariant vector outputs.

The network takes initial atom embeddings from its caller (so a model decides what an atom's input is, e.g.
CDVAE's MLP(element embedding || z)) and an :class:`InteractionGraph`, and returns the final atom embeddings and
one vector per atom and target, sum_c F_ca unit(a - c): invariant scalars times edge directions, so the vectors
rotate with the crystal and do not change under translations, permutations or periodic shifts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from crystalgen.denoisers.gemnet_t.bases import GaussianRadialBasis, zonal_spherical_harmonics
from crystalgen.denoisers.gemnet_t.blocks import (
    CircularBasisProjection,
    DirectForceOutput,
    EdgeEmbedding,
    InteractionBlock,
)
from crystalgen.denoisers.gemnet_t.graph import InteractionGraph
from crystalgen.denoisers.gemnet_t.layers import Dense, ScaleFactor


@dataclass(frozen=True)
class GemNetTOutput:
    """What one pass computes, for callers that build their own heads on the messages (GemsNet's lattice head).

    h (N, emb_atom) final atom embeddings; vectors (N, num_targets, 3) the direct vector output (None for a network
    built without readout); messages: the edge messages m (E, emb_edge) that each of the num_blocks + 1 output blocks
    read, in order (without readout, the last block's are not refreshed); rbf (E, num_radial)
    the enveloped radial basis of each edge; angle_basis (T, num_spherical) the zonal harmonics of each triplet's
    angle (triplets of ``graph.id3_ba``, ``graph.id3_ca``).
    """

    h: Tensor
    vectors: Tensor | None
    messages: list[Tensor]
    rbf: Tensor
    angle_basis: Tensor


class GemNetT(nn.Module):
    """Args (GemNet's names; OCP/CDVAE defaults in brackets):
        emb_atom, emb_edge: atom and message widths [128, 128 in CDVAE].
        emb_trip, emb_bilinear: triplet down-projection and bilinear output widths [64, 64].
        emb_rbf, emb_cbf: widths of the projected radial and circular bases [16, 16].
        num_spherical, num_radial: angular degrees and Gaussian radial functions [7, 128].
        num_blocks: interaction blocks [3]; num_blocks + 1 output blocks.
        num_before_skip, num_after_skip, num_concat, num_atom: residual layers in each stage [1, 2, 1, 3].
        cutoff: radius in Angstrom at which the envelope reaches zero [7.0 in CDVAE].
        envelope_exponent: polynomial envelope exponent [5].
        num_targets: vectors per atom [1].
        readout: False builds no output blocks, for a caller that reads only the final atom embeddings ``h`` (GemsNet's
            encoder): the output blocks, their radial projection and the last block's message refresh would hold
            parameters that never receive a gradient, which DistributedDataParallel refuses.
    """

    def __init__(self, emb_atom: int = 128, emb_edge: int = 128, emb_trip: int = 64, emb_bilinear: int = 64,
                 emb_rbf: int = 16, emb_cbf: int = 16, num_spherical: int = 7, num_radial: int = 128, num_blocks: int = 3,
                 num_before_skip: int = 1, num_after_skip: int = 2, num_concat: int = 1, num_atom: int = 3,
                 cutoff: float = 7.0, envelope_exponent: int = 5, num_targets: int = 1, readout: bool = True) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"GemNetT needs num_blocks >= 1, got {num_blocks}")
        self.emb_atom = emb_atom
        self.readout = readout
        self.num_spherical = num_spherical
        self.radial_basis = GaussianRadialBasis(num_radial, cutoff, envelope_exponent)
        # down-projections of the bases shared by all blocks (GemNet appendix)
        self.mlp_rbf3 = Dense(num_radial, emb_rbf)
        self.mlp_cbf3 = CircularBasisProjection(num_spherical, num_radial, emb_cbf)
        self.mlp_rbf_h = Dense(num_radial, emb_rbf)
        self.edge_embedding = EdgeEmbedding(emb_atom, num_radial, emb_edge)
        self.interactions = nn.ModuleList(
            InteractionBlock(emb_atom, emb_edge, emb_trip, emb_rbf, emb_cbf, emb_bilinear, num_before_skip,
                             num_after_skip, num_concat, num_atom, index=i + 1,
                             refresh_messages=readout or i < num_blocks - 1)
            for i in range(num_blocks)
        )
        if readout:
            self.mlp_rbf_out = Dense(num_radial, emb_rbf)
            self.outputs = nn.ModuleList(
                DirectForceOutput(emb_edge, emb_rbf, num_atom, num_targets, index=i)
                for i in range(num_blocks + 1)
            )
        else:
            self.register_load_state_dict_pre_hook(self._drop_readout)

    def forward(self, h: Tensor, graph: InteractionGraph) -> tuple[Tensor, Tensor]:
        """h (N, emb_atom) initial atom embeddings -> (final embeddings (N, emb_atom), vectors (N, num_targets, 3)).

        The vectors are in the units of the per-edge outputs (dimensionless); callers scale them. Needs readout.
        """
        out = self.run(h, graph)
        if out.vectors is None:
            raise RuntimeError("GemNetT.forward returns vectors: build the network with readout=True, or call run()")
        return out.h, out.vectors

    def run(self, h: Tensor, graph: InteractionGraph) -> GemNetTOutput:
        """The forward pass, keeping the per-block messages and the bases (see :class:`GemNetTOutput`)."""
        distance = graph.distance
        toward_target = -graph.edge_vec / distance.unsqueeze(-1)  # unit vector from the neighbour image to the atom
        cos_cab = (toward_target[graph.id3_ca] * toward_target[graph.id3_ba]).sum(-1).clamp(-1.0, 1.0)
        rbf = self.radial_basis(distance)
        sph = zonal_spherical_harmonics(cos_cab, self.num_spherical)
        cbf3 = self.mlp_cbf3(rbf, sph, graph.id3_ca, graph.id3_ragged)
        rbf3, rbf_h = self.mlp_rbf3(rbf), self.mlp_rbf_h(rbf)

        m = self.edge_embedding(h, rbf, graph.edge_index)
        if not self.readout:
            messages = [m]
            for block in self.interactions:
                h, m = block(h, m, rbf3, cbf3, rbf_h, graph.edge_index, graph.id_swap, graph.id3_ba, graph.id3_ca,
                             graph.id3_ragged)
                messages.append(m)
            return GemNetTOutput(h, None, messages, rbf, sph)
        rbf_out = self.mlp_rbf_out(rbf)
        per_edge = self.outputs[0](m, rbf_out)
        messages = [m]
        for block, output in zip(self.interactions, self.outputs[1:], strict=True):
            h, m = block(h, m, rbf3, cbf3, rbf_h, graph.edge_index, graph.id_swap, graph.id3_ba, graph.id3_ca, graph.id3_ragged)
            per_edge = per_edge + output(m, rbf_out)
            messages.append(m)
        vectors = scatter(per_edge.unsqueeze(-1) * toward_target.unsqueeze(1), graph.edge_index[1], dim=0,
                          dim_size=h.shape[0], reduce="sum")
        return GemNetTOutput(h, vectors, messages, rbf, sph)

    def scale_factors(self) -> list[ScaleFactor]:
        """All scale factors in the order the forward pass meets them (the order they must be fitted in)."""
        if not self.readout:
            return [f for block in self.interactions
                    for f in (block.triplet.scale_rbf, block.triplet.scale_cbf_sum, block.atom_update.scale_sum)]
        ordered = [self.outputs[0].scale_rbf]
        for block, output in zip(self.interactions, self.outputs[1:], strict=True):
            ordered += [block.triplet.scale_rbf, block.triplet.scale_cbf_sum, block.atom_update.scale_sum, output.scale_rbf]
        return ordered

    def _drop_readout(self, module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Before loading into a network without readout, drop the readout's tensors: a checkpoint saved when such
        networks still built it (GemsDiff before crystalgen-core 0.2.2) then loads as before."""
        last = f"{prefix}interactions.{len(self.interactions) - 1}."
        unbuilt = (f"{prefix}outputs.", f"{prefix}mlp_rbf_out.", f"{last}concat.", f"{last}after_concat.")
        for key in [k for k in state_dict if k.startswith(unbuilt)]:
            del state_dict[key]

    def set_scale_factors(self, values: Mapping[str, float]) -> None:
        """Set factors by name (e.g. the values OCP/CDVAE fitted, ``"TripInteraction_1_had_rbf"``); a name that
        names no factor of this network is an error."""
        factors = {f.name: f for f in self.scale_factors()}
        unknown = sorted(set(values) - set(factors))
        if unknown:
            raise KeyError(f"unknown GemNet-T scale factors {unknown}; this network has {sorted(factors)}")
        for name, value in values.items():
            factors[name].scale.fill_(float(value))


@torch.no_grad()
def fit_scale_factors(network: GemNetT, run: Callable[[Any], Any], inputs: Iterable[Any]) -> dict[str, float]:
    """Fit every scale factor of ``network`` in forward order, each over all ``inputs`` with the earlier ones
    fixed: ``run(x)`` must call the network once per input. Returns the fitted values by name.

    This is GemNet's variance-preserving initialisation: refit whenever widths, depth or bases change.
    """
    inputs = list(inputs)
    for factor in network.scale_factors():
        factor.scale.fill_(1.0)
    fitted = {}
    for factor in network.scale_factors():
        factor.observe()
        for x in inputs:
            run(x)
        fitted[factor.name] = factor.fit()
    return fitted
