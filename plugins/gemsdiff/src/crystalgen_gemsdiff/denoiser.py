"""The denoiser ``gemsnet``: GemsDiff's step-conditioned auto-encoder of two GemNet-T networks (section 4.1,
eqs. 7-11, appendix A).

    z_emb  = e(Z) + sinusoid(t)                             eq. 8 (``step_embedding``)
    h_enc  = GNN_enc(rho_t, x_t, z_emb)                     eq. 9b, k-nearest-neighbour graph on the noisy crystal
    z_enc  = Linear(h_enc || readout(messages_enc))         per-atom features plus a per-crystal embedding
    (y_rho, y_x) = GNN_dec(I, x_t, z_enc)                   eq. 11: decoded on the identity cell (``decode_from``)

y_x: each atom's displacement, sum over its edges of a learned invariant weight times the edge direction (GemNet's
direct vector output), fractional on the identity cell. y_rho: exp(Y), Y = the mean over the decoder's triplets of
invariant weights times the cell-gradients of the triplet's two edge lengths and its angle (lattice_action.py).
Predictions (both ``x0``): the clean coordinates as the lift x_t + y_x, and the gl(3) coordinates of the clean
lattice rho' = exp(Y) (from the identity; from the noisy cell: rho' = exp(Y) acting on rho_t, in its polar form).

Why exp(Y) rather than the paper's first-order I + Y: the two agree to first order; exp(Y) is a valid cell for every
Y and its coordinates are Y's own (Y is symmetric), so no logarithm is taken in training.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from crystalgen import (
    Condition,
    Denoiser,
    DenoiserSpec,
    GemNetT,
    GemNetTOutput,
    algebra_to_gl3_coords,
    interaction_graph,
    sinusoidal_embedding,
)
from crystalgen_gemsdiff.lattice_action import triplet_fields
from crystalgen_gemsdiff.lattice_coords import MIN_SINGULAR, ROTATION, coords_to_lattice, lattice_to_coords

DECODE_FROM = ("identity", "noisy")


class LatticeHead(nn.Module):
    """Per output block, three weights per triplet (lengths of its two edges, their angle) from the two edges'
    messages and radial bases and the triplet's angular basis (GemsDiff's code: concat -> 64 -> 64 -> 3, no bias).
    The first linear map of the concatenation is applied per edge, then gathered, which is the same map."""

    def __init__(self, emb_edge: int, num_radial: int, num_spherical: int, hidden: int) -> None:
        super().__init__()
        self.edge_ba = nn.Linear(emb_edge + num_radial, hidden, bias=False)
        self.edge_ca = nn.Linear(emb_edge + num_radial, hidden, bias=False)
        self.angle = nn.Linear(num_spherical, hidden, bias=False)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden, bias=False), nn.SiLU(), nn.Linear(hidden, 3, bias=False))

    def forward(self, m: Tensor, rbf: Tensor, sph: Tensor, id3_ba: Tensor, id3_ca: Tensor) -> Tensor:
        edge = torch.cat([m, rbf], dim=-1)
        return self.mlp(self.edge_ba(edge)[id3_ba] + self.edge_ca(edge)[id3_ca] + self.angle(sph))


class CrystalReadout(nn.Module):
    """The encoder's per-crystal embedding, read from its edge messages of every block as the energy head of
    GemsDiff's code reads them: per block, the mean of the messages into each atom weighted by a learned map of their
    radial basis; summed over blocks, mapped to ``features`` and averaged over the crystal's atoms. Reading every
    block's messages also gives every encoder parameter a gradient (DistributedDataParallel needs that)."""

    def __init__(self, emb_edge: int, num_radial: int, num_messages: int, features: int) -> None:
        super().__init__()
        self.radial = nn.ModuleList(nn.Linear(num_radial, emb_edge, bias=False) for _ in range(num_messages))
        self.out = nn.Sequential(nn.Linear(emb_edge, features), nn.SiLU(), nn.Linear(features, features))

    def forward(self, messages: list[Tensor], rbf: Tensor, target: Tensor, crystal: Tensor, num_crystals: int) -> Tensor:
        per_atom = sum(scatter(m * radial(rbf), target, dim=0, dim_size=crystal.shape[0], reduce="mean")
                       for m, radial in zip(messages, self.radial, strict=True))
        return scatter(self.out(per_atom), crystal, dim=0, dim_size=num_crystals, reduce="mean")  # type: ignore[arg-type]


class GemsNetDenoiser(Denoiser):
    """Noisy ``frac_coords`` (N, 3) and ``lattice`` (B, 9) gl(3) coordinates, with the conditions ``atom_types``
    (N,) atomic numbers, ``num_atoms`` (B,) and ``crystal`` (N,) -> ``frac_coords`` (N, 3) the clean coordinates as
    the lift x_t + y_x (fractional), ``lattice`` (B, 9) gl(3) coordinates of the clean lattice (rotation part 0).

    Args:
        num_elements: element classes Z = 1 .. num_elements (set by the model).
        num_steps: T (set by the model), the default period base of the step embedding.
        knn: neighbours per atom of both graphs (paper 32; whole distance shells kept, then closed under reversal).
        hidden: atom and edge widths of both GemNet-T networks (code 128).
        features: width of the per-crystal embedding of the encoder (code 256).
        lattice_hidden: width of the lattice head's MLP (code 64).
        encoder: run the encoder GNN (False: ablation (c) of Table 4, the decoder reads z_emb).
        step_embedding: add the sinusoidal step embedding (False: ablation (b)).
        step_period: base n of eq. 8 (0: num_steps, as the official code; the paper leaves n unnamed).
        decode_from: ``identity`` (eq. 11, the paper's model) or ``noisy`` (eq. 9c: ablation (a)).
        cutoff: envelope radius of the encoder's bases in Angstrom (code 6.0; the graph itself is kNN).
        decoder_cutoff: the same for the decoder, in the units of its cell (code: 6.0 also on the unit cube).
        gemnet: other GemNetT arguments (emb_trip, emb_bilinear, emb_rbf, emb_cbf, num_spherical, num_radial,
            num_blocks, num_before_skip, num_after_skip, num_concat, num_atom, envelope_exponent).
    """

    spec = DenoiserSpec(predicts={"frac_coords": frozenset({"x0"}), "lattice": frozenset({"x0"})},
                        reads=frozenset({"frac_coords", "lattice"}),
                        conditions=frozenset({"atom_types", "num_atoms", "crystal"}),
                        symmetries=frozenset({"permutation", "periodicity"}))

    def __init__(self, num_elements: int = 100, num_steps: int = 100, knn: int = 32, hidden: int = 128,
                 features: int = 256, lattice_hidden: int = 64, encoder: bool = True, step_embedding: bool = True,
                 step_period: float = 0.0, decode_from: str = "identity", cutoff: float = 6.0,
                 decoder_cutoff: float = 6.0, **gemnet: int) -> None:
        super().__init__()
        if decode_from not in DECODE_FROM:
            raise ValueError(f"model.denoiser.decode_from must be one of {DECODE_FROM}, got {decode_from!r}")
        self.knn = int(knn)
        self.use_encoder = bool(encoder)
        self.step_embedding = bool(step_embedding)
        self.step_period = float(step_period) if step_period > 0 else float(num_steps)
        self.decode_from = decode_from
        self.atom_embedding = nn.Embedding(num_elements, hidden)
        nn.init.uniform_(self.atom_embedding.weight, -math.sqrt(3), math.sqrt(3))  # unit variance, as GemNet's
        if self.use_encoder:
            self.encoder = GemNetT(emb_atom=hidden, emb_edge=hidden, cutoff=cutoff, num_targets=0, **gemnet)
            self.crystal_readout = CrystalReadout(hidden, self.encoder.radial_basis.offsets.numel(),
                                                  len(self.encoder.interactions) + 1, features)
            self.decoder_input = nn.Linear(hidden + features, hidden)
        self.decoder = GemNetT(emb_atom=hidden, emb_edge=hidden, cutoff=decoder_cutoff, num_targets=1, **gemnet)
        num_radial, num_spherical = self.decoder.radial_basis.offsets.numel(), self.decoder.num_spherical
        self.lattice_heads = nn.ModuleList(LatticeHead(hidden, num_radial, num_spherical, lattice_hidden)
                                           for _ in range(len(self.decoder.outputs)))

    def forward(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        x_t = torch.remainder(state["frac_coords"], 1.0)
        lattice_t = coords_to_lattice(state["lattice"].to(x_t.dtype))
        action, displacement = self.act(lattice_t, x_t, t, condition)
        if self.decode_from == "identity":
            coords = algebra_to_gl3_coords(action)
            coords = torch.cat([torch.zeros_like(coords[..., ROTATION]), coords[..., ROTATION.stop:]], dim=-1)
        else:  # rho' = exp(Y) acting on rho_t (rows: L' = L_t exp(Y)), in its polar form; y_x back to fractional.
            # In float64: early in the chain a noisy cell can be 100 A by 0.002 A, and float32 loses its thin side
            # (the metric's small eigenvalue is below float32's resolution of the large one), giving a flat cell.
            # Y read from a noisy cell's Angstrom-sized edges can be large enough that L_t exp(Y) is singular even
            # in float64 (the arm's loss went NaN at step 799 on MP-20): its singular values are raised to
            # MIN_SINGULAR, as for ablation (d)'s noisy matrices.
            crystal, cell = condition.data["crystal"], lattice_t.double()
            displacement = torch.linalg.solve(cell[crystal].transpose(-1, -2),
                                              displacement.double().unsqueeze(-1)).squeeze(-1).to(x_t.dtype)
            coords = lattice_to_coords(cell @ torch.linalg.matrix_exp(action.double()), MIN_SINGULAR).to(action.dtype)
        return {"frac_coords": x_t + displacement, "lattice": coords}

    def act(self, lattice_t: Tensor, x_t: Tensor, t: Tensor, condition: Condition) -> tuple[Tensor, Tensor]:
        """GemsNet's action on the noisy crystal (lattice_t (B, 3, 3) rows in Angstrom, x_t (N, 3) fractional):
        (Y (B, 3, 3), the Cartesian lattice action's logarithm in the decoder's cell; y_x (N, 3) each atom's
        displacement, Cartesian in the decoder's cell, i.e. fractional on the identity cell)."""
        num_atoms, crystal = condition.data["num_atoms"], condition.data["crystal"]
        num_crystals = int(num_atoms.shape[0])
        h = self.atom_embedding(condition.data["atom_types"] - 1)
        if self.step_embedding:
            h = h + sinusoidal_embedding(t[crystal], h.shape[-1], self.step_period).to(h.dtype)
        if self.use_encoder:
            graph = interaction_graph(x_t, lattice_t, num_atoms, None, self.knn)
            encoded = self.encoder.run(h, graph)
            per_crystal = self.crystal_readout(encoded.messages, encoded.rbf, graph.edge_index[1], crystal, num_crystals)
            h = self.decoder_input(torch.cat([encoded.h, per_crystal[crystal]], dim=-1))
        if self.decode_from == "identity":
            cell = torch.eye(3, dtype=x_t.dtype, device=x_t.device).expand(num_crystals, 3, 3)
        else:
            cell = lattice_t
        graph = interaction_graph(x_t, cell, num_atoms, None, self.knn)
        out = self.decoder.run(h, graph)
        action = self.lattice_action(out, graph.edge_vec, graph.id3_ba, graph.id3_ca, graph.edge_index[1], crystal,
                                     num_crystals)
        return action, out.vectors.squeeze(1)

    def lattice_action(self, out: GemNetTOutput, edge_vec: Tensor, id3_ba: Tensor, id3_ca: Tensor, target: Tensor,
                       crystal: Tensor, num_crystals: int) -> Tensor:
        """Y (B, 3, 3): the mean over each crystal's triplets of sum_k w_k lambda_k, w summed over output blocks."""
        weights = sum(head(m, out.rbf, out.angle_basis, id3_ba, id3_ca)
                      for head, m in zip(self.lattice_heads, out.messages, strict=True))
        fields = triplet_fields(edge_vec[id3_ba], edge_vec[id3_ca])  # (T, 3, 3, 3)
        per_triplet = (weights.unsqueeze(-1).unsqueeze(-1) * fields).sum(1)  # type: ignore[union-attr]
        return scatter(per_triplet, crystal[target[id3_ca]], dim=0, dim_size=num_crystals, reduce="mean")
