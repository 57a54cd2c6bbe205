"""SphereNet (Liu et al., ICLR 2022) on a periodic multigraph, in pure torch.

Messages run over edge triplets k -> j -> i of the multigraph handed in (the core's ``triplets``: periodic images
are told apart, so a small cell's atom can neighbour itself through another image). Each triplet message is
modulated by up to three geometric bases, chosen by ``basis``:

* ``distance``: a radial basis of |kj| only (the official score model, ``SphereNetLightDecoder``);
* ``angle``: plus the bond angle at j (DimeNet's spherical basis in spirit);
* ``torsion``: plus SphereNet's torsion, the dihedral angle between the plane (j->i, j->k) and the plane
  (j->i, j->k') of the nearest other neighbour k' of j in the sense of DIG's ``xyz_to_dat``: the smallest
  counter-clockwise dihedral in (0, 2 pi] over every other neighbour, so no neighbour needs to be chosen by index.

The bases are separable products, sine radial x Legendre P_l(cos angle) x Fourier(torsion), smoothly cut at the
cutoff, instead of DIG's spherical Bessel functions x real spherical harmonics: the same information (distance,
angle, torsion of every triplet, each expanded on a fixed basis), cheaper to evaluate and without sympy. Every
feature is built from distances, angles and torsions, so the outputs are invariant to permutation, rotation,
translation and the choice of periodic image; node outputs are summed over the initial block and every layer
(DIG's ``update_u``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from crystalgen import triplets

BASES = ("distance", "angle", "torsion")


class RadialBasis(nn.Module):
    """sqrt(2/c) sin(n pi d / c) / d, n = 1..num_radial, times DimeNet's polynomial envelope (zero at d = c)."""

    frequencies: Tensor

    def __init__(self, num_radial: int, cutoff: float, envelope_exponent: int = 5) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("frequencies", math.pi * torch.arange(1, num_radial + 1, dtype=torch.float32), persistent=False)
        p = envelope_exponent + 1
        self.p, self.a, self.b, self.c = p, -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2

    def forward(self, distance: Tensor) -> Tensor:
        x = (distance / self.cutoff).clamp(min=1e-6).unsqueeze(-1)
        envelope = 1 + self.a * x**self.p + self.b * x ** (self.p + 1) + self.c * x ** (self.p + 2)
        envelope = torch.where(x < 1, envelope, torch.zeros_like(x))
        frequencies = self.frequencies.to(x.dtype)
        return envelope * math.sqrt(2 / self.cutoff) * torch.sin(frequencies * x) / (x * self.cutoff)


def legendre(x: Tensor, degree: int) -> Tensor:
    """P_0(x) .. P_{degree-1}(x), shape (..., degree), by Bonnet's recursion."""
    out = [torch.ones_like(x), x]
    for n in range(1, degree - 1):
        out.append(((2 * n + 1) * x * out[n] - n * out[n - 1]) / (n + 1))
    return torch.stack(out[:degree], dim=-1)


def fourier(phi: Tensor, terms: int) -> Tensor:
    """1, cos phi, sin phi, cos 2 phi, sin 2 phi, ... (the first ``terms``), shape (..., terms)."""
    out = [torch.ones_like(phi)]
    m = 1
    while len(out) < terms:
        out += [torch.cos(m * phi), torch.sin(m * phi)]
        m += 1
    return torch.stack(out[:terms], dim=-1)


def bond_angles(edge_vec: Tensor, idx_kj: Tensor, idx_ji: Tensor) -> Tensor:
    """Angle at j between j -> i and j -> k, in [0, pi] (edge_vec: centre -> neighbour, neighbors.py)."""
    to_i, to_k = -edge_vec[idx_ji], edge_vec[idx_kj]
    return torch.atan2(torch.linalg.cross(to_i, to_k).norm(dim=-1), (to_i * to_k).sum(-1))


def torsions(edge_vec: Tensor, idx_kj: Tensor, idx_ji: Tensor) -> Tensor:
    """SphereNet's torsion of each triplet (T,) in (0, 2 pi]: the smallest dihedral from the plane (j->i, j->k)
    to the plane (j->i, j->k') over the triplets k' -> j -> i of the same edge j -> i (2 pi when k is alone).
    Triplets must be ordered by idx_ji (as ``triplets`` returns them)."""
    num = idx_ji.numel()
    if num == 0:
        return edge_vec.new_zeros(0)
    _, group = torch.unique_consecutive(idx_ji, return_counts=True)
    size = torch.repeat_interleave(group, group)  # triplets sharing each triplet's edge j -> i
    first = torch.repeat_interleave(torch.cumsum(group, 0) - group, group)
    mine = torch.repeat_interleave(torch.arange(num, device=idx_ji.device), size)
    other = first[mine] + torch.arange(mine.numel(), device=idx_ji.device) - torch.repeat_interleave(torch.cumsum(size, 0) - size, size)
    to_i = -edge_vec[idx_ji[mine]]
    plane1 = torch.linalg.cross(to_i, edge_vec[idx_kj[mine]])
    plane2 = torch.linalg.cross(to_i, edge_vec[idx_kj[other]])
    a = (plane1 * plane2).sum(-1)
    b = (torch.linalg.cross(plane1, plane2) * to_i).sum(-1) / to_i.norm(dim=-1).clamp(min=1e-9)
    phi = torch.atan2(b, a)
    phi = torch.where(phi <= 0, phi + 2 * math.pi, phi)
    return scatter(phi, mine, dim=0, dim_size=num, reduce="min")


class Interaction(nn.Module):
    """One SphereNet edge update (update_e): triplet messages k -> j modulated by the bases, summed into j -> i,
    added to the edge embedding through a residual MLP."""

    def __init__(self, hidden: int, int_emb: int, basis_emb: int, num_radial: int, angle_dim: int, torsion_dim: int) -> None:
        super().__init__()
        act = nn.SiLU()
        self.act = act
        self.lin_ji, self.lin_kj = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.lin_rbf = nn.Sequential(nn.Linear(num_radial, basis_emb, bias=False), nn.Linear(basis_emb, hidden, bias=False))
        self.lin_angle = nn.Sequential(nn.Linear(angle_dim, basis_emb, bias=False), nn.Linear(basis_emb, int_emb, bias=False)) if angle_dim else None
        self.lin_torsion = nn.Sequential(nn.Linear(torsion_dim, basis_emb, bias=False), nn.Linear(basis_emb, int_emb, bias=False)) if torsion_dim else None
        self.down, self.up = nn.Linear(hidden, int_emb, bias=False), nn.Linear(int_emb, hidden, bias=False)
        self.residual = nn.Sequential(nn.Linear(hidden, hidden), act, nn.Linear(hidden, hidden))

    def forward(self, e: Tensor, rbf: Tensor, angle: Tensor | None, torsion: Tensor | None, idx_kj: Tensor, idx_ji: Tensor) -> Tensor:
        x_ji = self.act(self.lin_ji(e))
        x_kj = self.act(self.down(self.act(self.lin_kj(e)) * self.lin_rbf(rbf)))[idx_kj]
        if self.lin_angle is not None and angle is not None:
            x_kj = x_kj * self.lin_angle(angle)
        if self.lin_torsion is not None and torsion is not None:
            x_kj = x_kj * self.lin_torsion(torsion)
        message = self.act(self.up(scatter(x_kj, idx_ji, dim=0, dim_size=e.shape[0], reduce="sum")))
        return e + self.residual(x_ji + message)


class NodeOutput(nn.Module):
    """Edges -> their target atom (update_v): sum of rbf-gated edge embeddings, then an MLP."""

    def __init__(self, hidden: int, num_radial: int, out_channels: int) -> None:
        super().__init__()
        self.lin_rbf = nn.Linear(num_radial, hidden, bias=False)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, out_channels))

    def forward(self, e: Tensor, rbf: Tensor, target: Tensor, num_nodes: int) -> Tensor:
        return self.mlp(scatter(self.lin_rbf(rbf) * e, target, dim=0, dim_size=num_nodes, reduce="sum"))


class SphereNet(nn.Module):
    """Atoms and a periodic multigraph -> per-atom outputs (N, out_channels) and final edge embeddings (E, hidden).

    Args:
        out_channels: width of the per-atom outputs; None builds no node output blocks (a user of the edge
            embeddings only, such as the distance score, would otherwise hold parameters that never receive a
            gradient, which DistributedDataParallel refuses).
        basis: ``distance``, ``angle`` or ``torsion`` (module docstring).
        hidden_channels, num_layers, int_emb_size, basis_emb_size: widths (paper: hidden 128, 4 layers; official
            int_emb 64, basis_emb 8).
        num_radial, num_spherical: radial functions and angular orders (official 6 and 7).
        cutoff: Angstrom, where the radial basis and its envelope reach zero.
        num_elements: rows of the atom-type embedding (atomic numbers 1..num_elements).
    """

    def __init__(self, out_channels: int | None, basis: str = "torsion", hidden_channels: int = 128, num_layers: int = 4,
                 int_emb_size: int = 64, basis_emb_size: int = 8, num_radial: int = 6, num_spherical: int = 7,
                 cutoff: float = 5.0, envelope_exponent: int = 5, num_elements: int = 100) -> None:
        super().__init__()
        if basis not in BASES:
            raise ValueError(f"SphereNet basis must be one of {BASES}, got {basis!r}")
        self.basis = basis
        self.num_spherical = int(num_spherical)
        self.rbf = RadialBasis(num_radial, cutoff, envelope_exponent)
        angle_dim = num_radial * num_spherical if basis != "distance" else 0
        torsion_dim = num_radial * num_spherical * num_spherical if basis == "torsion" else 0
        self.embedding = nn.Embedding(num_elements + 1, hidden_channels)
        self.lin_rbf0 = nn.Linear(num_radial, hidden_channels)
        self.init_edge = nn.Linear(3 * hidden_channels, hidden_channels)
        self.interactions = nn.ModuleList(Interaction(hidden_channels, int_emb_size, basis_emb_size, num_radial, angle_dim, torsion_dim)
                                          for _ in range(num_layers))
        self.outputs = nn.ModuleList(NodeOutput(hidden_channels, num_radial, out_channels) for _ in range(num_layers + 1)) \
            if out_channels is not None else None

    def forward(self, atom_types: Tensor, edge_index: Tensor, cell_offsets: Tensor, edge_vec: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        """(per-atom outputs (N, out) or None without node outputs, edge embeddings (E, hidden), radial basis (E, num_radial)).

        edge_index (2, E) source j / target i, cell_offsets (E, 3), edge_vec (E, 3) Angstrom centre -> neighbour
        (the conventions of ``crystalgen.radius_graph_pbc``)."""
        source, target = edge_index
        num_nodes = atom_types.shape[0]
        act = nn.functional.silu
        distance = edge_vec.norm(dim=-1)
        rbf = self.rbf(distance)
        trip = triplets(edge_index, cell_offsets, num_nodes)
        idx_kj, idx_ji = trip.idx_kj, trip.idx_ji
        angle_basis = torsion_basis = None
        if self.basis != "distance":
            radial_kj = rbf[idx_kj]
            cos_angle = torch.cos(bond_angles(edge_vec, idx_kj, idx_ji))
            angular = legendre(cos_angle, self.num_spherical)
            angle_basis = (radial_kj.unsqueeze(-1) * angular.unsqueeze(-2)).flatten(1)
            if self.basis == "torsion":
                dihedral = fourier(torsions(edge_vec, idx_kj, idx_ji), self.num_spherical)
                torsion_basis = (angle_basis.unsqueeze(-1) * dihedral.unsqueeze(-2)).flatten(1)
        h = self.embedding(atom_types)
        e = act(self.init_edge(torch.cat([h[target], h[source], act(self.lin_rbf0(rbf))], dim=-1)))
        if self.outputs is None:
            for interaction in self.interactions:
                e = interaction(e, rbf, angle_basis, torsion_basis, idx_kj, idx_ji)
            return None, e, rbf
        per_atom = self.outputs[0](e, rbf, target, num_nodes)
        for interaction, output in zip(self.interactions, self.outputs[1:], strict=True):
            e = interaction(e, rbf, angle_basis, torsion_basis, idx_kj, idx_ji)
            per_atom = per_atom + output(e, rbf, target, num_nodes)
        return per_atom, e, rbf
