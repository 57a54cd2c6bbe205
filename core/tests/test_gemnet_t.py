"""GemNet-T building blocks: interaction graph, triplets, bases and scale factors (the network's equivariance is
tested through CDVAE's decoder in plugins/cdvae/tests/test_invariance.py)."""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.polynomial import legendre

from crystalgen.denoisers.gemnet_t import GemNetT, fit_scale_factors, interaction_graph, shared_target_triplets
from crystalgen.denoisers.gemnet_t.bases import PolynomialEnvelope, zonal_spherical_harmonics
from crystalgen.denoisers.gemnet_t.layers import ScaleFactor


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    num_atoms = torch.tensor([3, 1, 5])
    frac = torch.rand(9, 3, generator=g, dtype=torch.float64)
    lattice = torch.eye(3, dtype=torch.float64) * 4.0 + 0.4 * torch.randn(3, 3, 3, generator=g, dtype=torch.float64)
    return frac, lattice, num_atoms


def test_interaction_graph_is_closed_under_reversal_and_keeps_the_capped_neighbours():
    frac, lattice, num_atoms = batch()
    graph = interaction_graph(frac, lattice, num_atoms, cutoff=6.0, max_neighbors=8)
    source, target = graph.edge_index
    assert (graph.id_swap >= 0).all()
    assert torch.equal(source[graph.id_swap], target) and torch.equal(target[graph.id_swap], source)
    assert torch.equal(graph.cell_offsets[graph.id_swap], -graph.cell_offsets)
    assert torch.allclose(graph.edge_vec[graph.id_swap], -graph.edge_vec)
    assert graph.distance.max() <= 6.0 + 1e-9
    degree = torch.bincount(target, minlength=9)
    assert (degree >= 8).all()  # every atom keeps at least its 8 nearest (cells are dense enough at 6 A)


def test_triplets_pair_every_two_distinct_edges_into_the_same_atom():
    edge_index = torch.tensor([[1, 2, 2, 0, 0], [0, 0, 0, 1, 2]])  # edges 0-2 into atom 0 (two from atom 2)
    id3_ba, id3_ca, ragged = shared_target_triplets(edge_index, 3)
    pairs = sorted(zip(id3_ba.tolist(), id3_ca.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert torch.equal(edge_index[1, id3_ba], edge_index[1, id3_ca])
    assert ragged.tolist() == [0, 1, 0, 1, 0, 1]


def test_zonal_harmonics_are_normalised_legendre_polynomials():
    x = torch.linspace(-1, 1, 11, dtype=torch.float64)
    values = zonal_spherical_harmonics(x, 7)
    for degree in range(7):
        coefficients = np.zeros(degree + 1)
        coefficients[degree] = 1
        expected = math.sqrt((2 * degree + 1) / (4 * math.pi)) * legendre.legval(x.numpy(), coefficients)
        assert np.allclose(values[:, degree].numpy(), expected)


def test_envelope_reaches_zero_smoothly_at_the_cutoff():
    envelope = PolynomialEnvelope(5)
    x = torch.tensor([0.0, 1.0 - 1e-4, 1.0, 1.3], dtype=torch.float64, requires_grad=True)
    u = envelope(x)
    (grad,) = torch.autograd.grad(u.sum(), x)
    assert float(u[0]) == 1.0 and abs(float(u[1])) < 1e-9 and float(u[2]) == 0.0 and float(u[3]) == 0.0
    assert abs(float(grad[1])) < 1e-5  # u and u' vanish at 1 (u = O((1-x)^3))


def test_scale_factor_fit_matches_the_reference_variance():
    factor = ScaleFactor("test")
    factor.observe()
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        ref = torch.randn(500, 8, generator=g)
        factor(7.0 * torch.randn(500, 8, generator=g), ref=ref)
    assert abs(factor.fit() - 1 / 7.0) < 0.01


def test_fitted_network_preserves_activation_scale():
    frac, lattice, num_atoms = batch(1)
    graph = interaction_graph(frac.float(), lattice.float(), num_atoms, cutoff=6.0, max_neighbors=8)
    torch.manual_seed(0)
    net = GemNetT(emb_atom=16, emb_edge=16, emb_trip=8, emb_bilinear=8, num_radial=16, num_blocks=2)
    h = torch.randn(9, 16)
    fitted = fit_scale_factors(net, lambda x: net(x, graph), [h])
    assert set(fitted) == {f.name for f in net.scale_factors()} and all(v > 0 for v in fitted.values())
    assert fitted == {f.name: float(f.scale) for f in net.scale_factors()}


def test_a_network_without_targets_builds_no_output_blocks_and_computes_the_same_messages():
    """num_targets 0 (a caller that reads only h and the messages): no output blocks, whose parameters no loss would
    reach; the atom embeddings and messages equal those of the same weights with outputs."""
    frac, lattice, num_atoms = batch(1)
    graph = interaction_graph(frac.float(), lattice.float(), num_atoms, cutoff=6.0, max_neighbors=8)
    sizes = {"emb_atom": 16, "emb_edge": 16, "emb_trip": 8, "emb_bilinear": 8, "num_radial": 16, "num_blocks": 2}
    torch.manual_seed(0)
    full = GemNetT(**sizes)
    bare = GemNetT(**sizes, num_targets=0)
    assert len(bare.outputs) == 0 and bare.mlp_rbf_out is None
    missing, unexpected = bare.load_state_dict(full.state_dict(), strict=False)
    assert missing == [] and unexpected and all(k.startswith(("outputs.", "mlp_rbf_out.")) for k in unexpected)
    h = torch.randn(9, 16)
    a, b = full.run(h, graph), bare.run(h, graph)
    assert b.vectors.shape == (9, 0, 3)
    torch.testing.assert_close(a.h, b.h)
    for x, y in zip(a.messages, b.messages, strict=True):
        torch.testing.assert_close(x, y)
    b.h.sum().add(b.messages[-1].sum()).backward()
    assert [name for name, p in bare.named_parameters() if p.grad is None] == []


def skewed_batch(seed: int = 1):
    """Cells with nearly parallel vectors (a diffusion model's noisy cells): the direct image search needs many images."""
    g = torch.Generator().manual_seed(seed)
    num_atoms = torch.tensor([2, 4])
    frac = torch.rand(6, 3, generator=g, dtype=torch.float64)
    reduced = torch.tensor([[[3.0, 0.2, 0.0], [0.1, 3.5, 0.3], [0.0, -0.4, 4.0]]] * 2, dtype=torch.float64)
    skew = torch.tensor([[[1, 0, 0], [7, 1, 0], [-5, 3, 1]], [[1, 4, 0], [0, 1, 0], [0, 6, 1]]], dtype=torch.float64)
    return frac, skew @ reduced, num_atoms


def test_knn_graph_without_cutoff_matches_the_direct_search_in_the_given_basis():
    """The kNN graph is searched on a reduced basis; its edges and offsets are those of the direct search."""
    from crystalgen.denoisers.gemnet_t.graph import symmetrize
    from crystalgen.geometry.neighbors import knn_graph_pbc

    frac, lattice, num_atoms = skewed_batch()
    graph = interaction_graph(frac, lattice, num_atoms, cutoff=None, max_neighbors=6)
    direct = knn_graph_pbc(frac, lattice, num_atoms, 6, keep_ties=True)
    edge_index, offsets = symmetrize(direct.edge_index, direct.cell_offsets, frac.shape[0])
    assert torch.equal(graph.edge_index, edge_index) and torch.equal(graph.cell_offsets, offsets)
    assert (torch.bincount(graph.edge_index[1], minlength=6) >= 6).all()


def test_basis_reduction_keeps_the_lattice_and_shortens_the_basis():
    from crystalgen.geometry.basis_reduction import reduce_basis

    _, lattice, _ = skewed_batch()
    reduced, transform = reduce_basis(lattice)
    assert torch.allclose(reduced, transform.double() @ lattice)
    assert torch.allclose(torch.linalg.det(transform.double()).abs(), torch.ones(2, dtype=torch.float64))
    assert (reduced.norm(dim=-1).max(-1).values < lattice.norm(dim=-1).max(-1).values).all()
    gram = reduced @ reduced.transpose(-1, -2)
    off = gram - torch.diag_embed(torch.diagonal(gram, dim1=-2, dim2=-1))
    assert (off.abs() <= 0.5 * torch.diagonal(gram, dim1=-2, dim2=-1).unsqueeze(-2) + 1e-9).all()  # Lagrange-reduced


def test_step_embedding_is_off_by_default_and_conditions_on_t_when_on():
    from crystalgen.denoisers.gemnet_t import GemNetTDenoiser
    from crystalgen.state import Condition

    frac, lattice, num_atoms = batch()
    types = torch.tensor([3, 8, 8, 26, 1, 6, 6, 7, 8])
    condition = Condition(3, {}, data={"lattice": lattice.float(), "num_atoms": num_atoms})
    sizes = {"hidden_dim": 16, "emb_trip": 8, "emb_bilinear": 8, "num_radial": 8, "num_blocks": 1, "cutoff": 6.0}
    for step_embedding in (False, True):
        torch.manual_seed(0)
        net = GemNetTDenoiser(num_elements=30, step_embedding=step_embedding, num_steps=100, **sizes).eval()
        with torch.no_grad():
            early = net({"frac_coords": frac.float(), "atom_types": types}, torch.tensor([1, 1, 1]), condition)
            late = net({"frac_coords": frac.float(), "atom_types": types}, torch.tensor([90, 90, 90]), condition)
        assert torch.equal(early["frac_coords"], late["frac_coords"]) != step_embedding

