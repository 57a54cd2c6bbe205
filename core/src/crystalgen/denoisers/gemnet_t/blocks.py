"""GemNet-T's blocks: edge embedding, triplet interaction (efficient bilinear form), atom update, interaction
block and the direct-force output block (GemNet sections 3-4 and appendix; OCP's GemNet-T/dT layout).

Shapes: h (N, emb_atom) atom embeddings, m (E, emb_edge) messages on directed edges c -> a.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from crystalgen.denoisers.gemnet_t.layers import (
    INV_SQRT_2,
    Dense,
    ResidualLayer,
    ScaleFactor,
    he_orthogonal_,
    residual_mlp,
)


class EdgeEmbedding(nn.Module):
    """m_ca = act(W [h_c || h_a || x_ca]): messages from the two atoms and an edge feature (rbf or old message)."""

    def __init__(self, emb_atom: int, edge_features: int, emb_edge: int) -> None:
        super().__init__()
        self.dense = Dense(2 * emb_atom + edge_features, emb_edge, activation=True)

    def forward(self, h: Tensor, x: Tensor, edge_index: Tensor) -> Tensor:
        source, target = edge_index
        return self.dense(torch.cat([h[source], h[target], x], dim=-1))


class CircularBasisProjection(nn.Module):
    """Shared down-projection of the triplet basis rbf(d_ca) x Y_l(angle_cab) to ``emb_cbf`` channels, kept in
    the factorised "efficient" form: (E, emb_cbf, L) radial weights and a zero-padded (E, L, Kmax) angular part."""

    def __init__(self, num_spherical: int, num_radial: int, emb_cbf: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_spherical, num_radial, emb_cbf))
        he_orthogonal_(self.weight)

    def forward(self, rbf: Tensor, sph: Tensor, id3_ca: Tensor, id3_ragged: Tensor) -> tuple[Tensor, Tensor]:
        num_edges = rbf.shape[0]
        radial = (rbf.unsqueeze(0) @ self.weight).permute(1, 2, 0)  # (E, emb_cbf, L)
        kmax = int(id3_ragged.max()) + 1 if id3_ragged.numel() else 0
        angular = sph.new_zeros(num_edges, kmax, sph.shape[-1])
        angular[id3_ca, id3_ragged] = sph
        return radial, angular.transpose(1, 2)  # (E, L, Kmax)


class EfficientBilinear(nn.Module):
    """x_ca = sum_{b} W (cbf_cab (x) m_ba), summed over the triplets of edge c -> a without materialising the
    per-triplet outer product (GemNet appendix, "efficient bilinear layer")."""

    def __init__(self, emb_trip: int, emb_cbf: int, emb_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(emb_trip, emb_cbf, emb_out))
        he_orthogonal_(self.weight)

    def forward(self, basis: tuple[Tensor, Tensor], m_ba: Tensor, id3_ca: Tensor, id3_ragged: Tensor) -> Tensor:
        radial, angular = basis  # (E, emb_cbf, L), (E, L, Kmax)
        num_edges, kmax = radial.shape[0], angular.shape[-1]
        padded = m_ba.new_zeros(num_edges, kmax, m_ba.shape[-1])
        padded[id3_ca, id3_ragged] = m_ba
        summed = radial @ (angular @ padded)  # (E, emb_cbf, emb_trip)
        trip, cbf, out = self.weight.shape
        return summed.transpose(1, 2).reshape(num_edges, trip * cbf) @ self.weight.reshape(trip * cbf, out)


class TripletInteraction(nn.Module):
    """Message update of edge c -> a from the edges b -> a (GemNet-T's directional message passing)."""

    def __init__(self, emb_edge: int, emb_trip: int, emb_bilinear: int, emb_rbf: int, emb_cbf: int, name: str) -> None:
        super().__init__()
        self.dense_ba = Dense(emb_edge, emb_edge, activation=True)
        self.mlp_rbf = Dense(emb_rbf, emb_edge)
        self.scale_rbf = ScaleFactor(f"{name}_had_rbf")
        self.down_projection = Dense(emb_edge, emb_trip, activation=True)
        self.bilinear = EfficientBilinear(emb_trip, emb_cbf, emb_bilinear)
        self.scale_cbf_sum = ScaleFactor(f"{name}_sum_cbf")
        self.up_projection_ca = Dense(emb_bilinear, emb_edge, activation=True)
        self.up_projection_ac = Dense(emb_bilinear, emb_edge, activation=True)

    def forward(self, m: Tensor, rbf3: Tensor, cbf3: tuple[Tensor, Tensor], id_swap: Tensor, id3_ba: Tensor,
                id3_ca: Tensor, id3_ragged: Tensor) -> Tensor:
        x_ba = self.dense_ba(m)
        x_ba = self.scale_rbf(x_ba * self.mlp_rbf(rbf3), ref=x_ba)
        x_ba = self.down_projection(x_ba)[id3_ba]  # (T, emb_trip)
        x = self.scale_cbf_sum(self.bilinear(cbf3, x_ba, id3_ca, id3_ragged), ref=x_ba)
        # the same triplet sum feeds edge c -> a and, through its reverse, edge a -> c
        return (self.up_projection_ca(x) + self.up_projection_ac(x)[id_swap]) * INV_SQRT_2


class AtomUpdate(nn.Module):
    """h_a <- MLP(scale * sum_c m_ca * W rbf_ca): messages into each atom, modulated by the distance."""

    def __init__(self, emb_atom: int, emb_edge: int, emb_rbf: int, num_residual: int, name: str) -> None:
        super().__init__()
        self.dense_rbf = Dense(emb_rbf, emb_edge)
        self.scale_sum = ScaleFactor(f"{name}_sum")
        self.mlp = residual_mlp(emb_edge, emb_atom, num_residual)

    def forward(self, h: Tensor, m: Tensor, rbf: Tensor, target: Tensor) -> Tensor:
        x = scatter(m * self.dense_rbf(rbf), target, dim=0, dim_size=h.shape[0], reduce="sum")
        return self.mlp(self.scale_sum(x, ref=m))


class InteractionBlock(nn.Module):
    """One GemNet-T interaction block (triplets only): messages from triplets, residual layers, atom update,
    then messages refreshed from the updated atoms. ``index`` (1-based) names its scale factors;
    ``refresh_messages=False`` leaves out the refresh (a last block whose messages nothing reads)."""

    def __init__(self, emb_atom: int, emb_edge: int, emb_trip: int, emb_rbf: int, emb_cbf: int, emb_bilinear: int,
                 num_before_skip: int, num_after_skip: int, num_concat: int, num_atom: int, index: int,
                 refresh_messages: bool = True) -> None:
        super().__init__()
        self.refresh_messages = refresh_messages
        self.dense_ca = Dense(emb_edge, emb_edge, activation=True)
        self.triplet = TripletInteraction(emb_edge, emb_trip, emb_bilinear, emb_rbf, emb_cbf, f"TripInteraction_{index}")
        self.before_skip = nn.Sequential(*(ResidualLayer(emb_edge) for _ in range(num_before_skip)))
        self.after_skip = nn.Sequential(*(ResidualLayer(emb_edge) for _ in range(num_after_skip)))
        self.atom_update = AtomUpdate(emb_atom, emb_edge, emb_rbf, num_atom, f"AtomUpdate_{index}")
        if refresh_messages:
            self.concat = EdgeEmbedding(emb_atom, emb_edge, emb_edge)
            self.after_concat = nn.Sequential(*(ResidualLayer(emb_edge) for _ in range(num_concat)))

    def forward(self, h: Tensor, m: Tensor, rbf3: Tensor, cbf3: tuple[Tensor, Tensor], rbf_h: Tensor,
                edge_index: Tensor, id_swap: Tensor, id3_ba: Tensor, id3_ca: Tensor, id3_ragged: Tensor) -> tuple[Tensor, Tensor]:
        x = (self.dense_ca(m) + self.triplet(m, rbf3, cbf3, id_swap, id3_ba, id3_ca, id3_ragged)) * INV_SQRT_2
        m = (m + self.before_skip(x)) * INV_SQRT_2
        m = self.after_skip(m)
        h = (h + self.atom_update(h, m, rbf_h, edge_index[1])) * INV_SQRT_2
        if self.refresh_messages:
            m = (m + self.after_concat(self.concat(h, m, edge_index))) * INV_SQRT_2
        return h, m


class DirectForceOutput(nn.Module):
    """Per-edge scalars F_ca = W (scale * MLP(m_ca) * W' rbf_ca), one per target, from which the network builds
    per-atom vectors sum_c F_ca * unit(a - c) (GemNet's direct force head, ``direct_forces=True``)."""

    def __init__(self, emb_edge: int, emb_rbf: int, num_residual: int, num_targets: int, index: int) -> None:
        super().__init__()
        self.mlp = residual_mlp(emb_edge, emb_edge, num_residual)
        self.dense_rbf = Dense(emb_rbf, emb_edge)
        self.scale_rbf = ScaleFactor(f"OutBlock_{index}_had")
        self.out = Dense(emb_edge, num_targets)

    def forward(self, m: Tensor, rbf: Tensor) -> Tensor:
        x = self.mlp(m)
        return self.out(self.scale_rbf(x * self.dense_rbf(rbf), ref=x))
