"""DimeNet++ as CDVAE's property models ran it (``cdvae/pl_modules/gnn.py::DimeNetPlusPlusWrap``), on a
periodic graph handed in from outside.

Reused from torch_geometric 2.8: EmbeddingBlock, InteractionPPBlock, BesselBasisLayer (their maths and
parameter names are those of PyG 2.0.1, which CDVAE pinned). The spherical basis is evaluated numerically
(spherical_basis.py) instead of through PyG's sympy construction, which takes 10-40 s per model. Two pieces
differ from current PyG and are written here so that the trained weights compute what they computed in training:

* :class:`OutputPPBlock`: CDVAE's own output block has a *biased* up-projection (``lin_up``,
  ``bias=True``); PyG's has none. The checkpoints hold non-zero ``output_blocks.*.lin_up.bias`` (mean
  |b| 0.04-0.10), so dropping them would change every prediction.
* :class:`PolynomialEnvelope`: PyG 2.0.1 applied the envelope u(d/c) without zeroing it beyond the cutoff
  (the ``x < 1`` mask arrived in PyG 2.0.5, pyg-team/pytorch_geometric#4506/#4562). CrystalNN bonds are not
  limited to the 7 A basis cutoff, so the unmasked form is the one the weights were trained with.

Angles follow the original: for a triplet k -> j -> i the angle is between v_ji = r_j - r_i (+ image offset)
and v_kj = r_k - r_j (+ offset), i.e. atan2(|v_ji x v_kj|, v_ji . v_kj).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn.inits import glorot_orthogonal
from torch_geometric.nn.models.dimenet import BesselBasisLayer, EmbeddingBlock, InteractionPPBlock
from torch_geometric.utils import scatter

from crystalgen.encoders.dimenet_pp.spherical_basis import SphericalBasis


class PolynomialEnvelope(nn.Module):
    """u(x) = 1/x + a x^(p-1) + b x^p + c x^(p+1) with p = exponent + 1 (DimeNet eq. 8), not cut at x = 1."""

    def __init__(self, exponent: int) -> None:
        super().__init__()
        self.p = exponent + 1
        self.a = -(self.p + 1) * (self.p + 2) / 2
        self.b = self.p * (self.p + 2)
        self.c = -self.p * (self.p + 1) / 2

    def forward(self, x: Tensor) -> Tensor:
        x_p0 = x.pow(self.p - 1)
        return 1.0 / x + self.a * x_p0 + self.b * x_p0 * x + self.c * x_p0 * x * x


class OutputPPBlock(nn.Module):
    """Per-atom output of DimeNet++ with CDVAE's biased up-projection (see the module docstring)."""

    def __init__(self, num_radial: int, hidden_channels: int, out_emb_channels: int, out_channels: int, num_layers: int) -> None:
        super().__init__()
        self.act = nn.SiLU()
        self.lin_rbf = nn.Linear(num_radial, hidden_channels, bias=False)
        self.lin_up = nn.Linear(hidden_channels, out_emb_channels, bias=True)
        self.lins = nn.ModuleList(nn.Linear(out_emb_channels, out_emb_channels) for _ in range(num_layers))
        self.lin = nn.Linear(out_emb_channels, out_channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        glorot_orthogonal(self.lin_rbf.weight, scale=2.0)
        glorot_orthogonal(self.lin_up.weight, scale=2.0)
        for name, param in self.lins.named_parameters():  # each Linear's weight, then its bias
            if name.endswith("weight"):
                glorot_orthogonal(param, scale=2.0)
            else:
                param.data.zero_()
        self.lin.weight.data.zero_()

    def forward(self, x: Tensor, rbf: Tensor, target: Tensor, num_nodes: int) -> Tensor:
        x = scatter(self.lin_rbf(rbf) * x, target, dim=0, dim_size=num_nodes, reduce="sum")
        x = self.lin_up(x)
        for lin in self.lins:
            x = self.act(lin(x))
        return self.lin(x)


class DimeNetPP(nn.Module):
    """DimeNet++ encoder with CDVAE's readout: the 1 + num_blocks output blocks are summed per atom, then
    pooled per crystal (``readout`` "mean" or "sum"). Parameter names match the checkpoints' ``encoder.*``."""

    def __init__(
        self,
        num_targets: int = 1,
        hidden_channels: int = 128,
        num_blocks: int = 4,
        int_emb_size: int = 64,
        basis_emb_size: int = 8,
        out_emb_channels: int = 256,
        num_spherical: int = 7,
        num_radial: int = 6,
        cutoff: float = 7.0,
        envelope_exponent: int = 5,
        num_before_skip: int = 1,
        num_after_skip: int = 2,
        num_output_layers: int = 3,
        readout: str = "mean",
    ) -> None:
        super().__init__()
        if readout not in ("mean", "sum"):
            raise ValueError(f"readout must be 'mean' or 'sum', got {readout!r}")
        self.readout = readout
        self.cutoff = cutoff
        act = nn.SiLU()  # CDVAE's swish
        self.rbf = BesselBasisLayer(num_radial, cutoff, envelope_exponent)
        self.rbf.envelope = PolynomialEnvelope(envelope_exponent)
        self.sbf = SphericalBasis(num_spherical, num_radial, cutoff, PolynomialEnvelope(envelope_exponent))
        self.emb = EmbeddingBlock(num_radial, hidden_channels, act)
        self.output_blocks = nn.ModuleList(
            OutputPPBlock(num_radial, hidden_channels, out_emb_channels, num_targets, num_output_layers) for _ in range(num_blocks + 1)
        )
        self.interaction_blocks = nn.ModuleList(
            InteractionPPBlock(hidden_channels, int_emb_size, basis_emb_size, num_spherical, num_radial, num_before_skip, num_after_skip, act)
            for _ in range(num_blocks)
        )

    def forward(
        self,
        atom_types: Tensor,
        edge_index: Tensor,
        edge_vectors: Tensor,
        idx_kj: Tensor,
        idx_ji: Tensor,
        batch: Tensor,
        num_graphs: int,
    ) -> Tensor:
        """Per-crystal outputs (num_graphs, num_targets) in the model's standardised units.

        atom_types (N,) atomic numbers; edge_index (2, E) rows (source j, target i); edge_vectors (E, 3) in
        Angstrom from atom i to the neighbouring image of j; triplets as edge-index pairs (idx_kj, idx_ji);
        batch (N,) crystal index of each atom.
        """
        source, target = edge_index
        num_nodes = atom_types.size(0)
        dist = edge_vectors.norm(dim=-1)
        v_ji, v_kj = edge_vectors[idx_ji], edge_vectors[idx_kj]
        angle = torch.atan2(torch.linalg.cross(v_ji, v_kj).norm(dim=-1), (v_ji * v_kj).sum(dim=-1))

        rbf = self.rbf(dist)
        sbf = self.sbf(dist, angle, idx_kj)
        x = self.emb(atom_types, rbf, target, source)
        per_atom = self.output_blocks[0](x, rbf, target, num_nodes)
        for interaction, output in zip(self.interaction_blocks, self.output_blocks[1:], strict=True):
            x = interaction(x, rbf, sbf, idx_kj, idx_ji)
            per_atom = per_atom + output(x, rbf, target, num_nodes)
        return scatter(per_atom, batch, dim=0, dim_size=num_graphs, reduce=self.readout)
