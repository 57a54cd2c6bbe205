"""GemsNet's outputs follow the symmetries of appendix A.

The network run on the crystal's own cell (eq. 9c; ``decode_from: noisy``) is equivariant to E(3) x SL3(Z): under a
rotation or reflection Q (rows: L -> L Q^T) the lattice action's logarithm Y becomes Q Y Q^T and the Cartesian
displacements rotate; under a re-tiling M in SL3(Z) (L -> M L, x -> x M^-1) and under translations neither changes.
The paper's model decodes from the identity cell (eq. 11), which the paper notes breaks the re-tiling symmetry of
the output; it stays exactly invariant to rotations of the noisy cell and to translations."""

from __future__ import annotations

import pytest
import torch

from crystalgen import Condition
from crystalgen_gemsdiff.denoiser import GemsNetDenoiser
from crystalgen_gemsdiff.lattice_coords import MIN_SINGULAR, coords_to_lattice, lattice_to_coords

SIZES = {"knn": 8, "hidden": 16, "features": 16, "lattice_hidden": 16, "num_blocks": 2, "emb_trip": 8,
         "emb_bilinear": 8, "emb_rbf": 8, "emb_cbf": 8, "num_radial": 16, "num_spherical": 5}


def crystals() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Condition]:
    """Two crystals (3 and 4 atoms) on skewed cells, float64."""
    rng = torch.Generator().manual_seed(3)
    lattice = torch.tensor([[[4.0, 0.3, 0.1], [1.2, 3.5, 0.2], [0.4, -0.6, 5.0]],
                            [[3.1, 0.0, 0.0], [-1.5, 2.7, 0.0], [0.7, 0.9, 4.2]]], dtype=torch.float64)
    num_atoms = torch.tensor([3, 4])
    frac = torch.rand(7, 3, generator=rng, dtype=torch.float64)
    types = torch.tensor([3, 8, 8, 26, 26, 8, 14])
    crystal = torch.repeat_interleave(torch.arange(2), num_atoms)
    t = torch.tensor([17, 60])
    return lattice, frac, t, Condition(2, {}, data={"crystal": crystal, "num_atoms": num_atoms, "atom_types": types})


def network(decode_from: str) -> GemsNetDenoiser:
    torch.manual_seed(0)
    return GemsNetDenoiser(num_elements=30, num_steps=100, decode_from=decode_from, **SIZES).double().eval()


def rotation(reflect: bool) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    if (torch.linalg.det(q) < 0) != reflect:
        q = -q
    return q


@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_and_reflection_conjugate_the_action(reflect):
    lattice, frac, t, condition = crystals()
    net, q = network("noisy"), rotation(reflect)
    with torch.no_grad():
        y, d = net.act(lattice, frac, t, condition)
        y_rot, d_rot = net.act(lattice @ q.T, frac, t, condition)
    assert y.abs().max() > 1e-4 and d.abs().max() > 1e-4
    assert not torch.allclose(q @ y @ q.T, y, atol=1e-4)  # the check below can fail
    assert torch.allclose(y_rot, q @ y @ q.T, atol=1e-9)
    assert torch.allclose(d_rot, d @ q.T, atol=1e-9)


def test_retiling_changes_nothing():
    lattice, frac, t, condition = crystals()
    net = network("noisy")
    m = torch.tensor([[1, 1, 0], [0, 1, 0], [2, 1, 1]], dtype=torch.float64)  # det 1
    assert torch.linalg.det(m).round() == 1
    per_atom = torch.linalg.inv(m).expand(7, 3, 3)
    moved = torch.remainder(torch.bmm(frac.unsqueeze(1), per_atom).squeeze(1), 1.0)
    with torch.no_grad():
        y, d = net.act(lattice, frac, t, condition)
        y_tiled, d_tiled = net.act(m @ lattice, moved, t, condition)
    assert torch.allclose(y_tiled, y, atol=1e-9)
    assert torch.allclose(d_tiled, d, atol=1e-9)


@pytest.mark.parametrize("decode_from", ["noisy", "identity"])
def test_translation_changes_nothing(decode_from):
    lattice, frac, t, condition = crystals()
    net = network(decode_from)
    shift = torch.tensor([[0.31, 0.72, 0.05], [0.5, 0.25, 0.9]], dtype=torch.float64)[condition.data["crystal"]]
    with torch.no_grad():
        y, d = net.act(lattice, frac, t, condition)
        y_moved, d_moved = net.act(lattice, torch.remainder(frac + shift, 1.0), t, condition)
    assert torch.allclose(y_moved, y, atol=1e-9)
    assert torch.allclose(d_moved, d, atol=1e-9)


def test_identity_decoding_is_invariant_to_rotating_the_noisy_cell():
    lattice, frac, t, condition = crystals()
    net, q = network("identity"), rotation(True)
    with torch.no_grad():
        y, d = net.act(lattice, frac, t, condition)
        y_rot, d_rot = net.act(lattice @ q.T, frac, t, condition)
    assert torch.allclose(y_rot, y, atol=1e-9)
    assert torch.allclose(d_rot, d, atol=1e-9)


@pytest.mark.parametrize("decode_from", ["noisy", "identity"])
def test_permuting_atoms_permutes_displacements(decode_from):
    lattice, frac, t, condition = crystals()
    net = network(decode_from)
    perm = torch.tensor([2, 0, 1, 6, 4, 3, 5])
    moved = Condition(2, {}, data={**condition.data, "atom_types": condition.data["atom_types"][perm]})
    with torch.no_grad():
        y, d = net.act(lattice, frac, t, condition)
        y_perm, d_perm = net.act(lattice, frac[perm], t, moved)
    assert torch.allclose(y_perm, y, atol=1e-9)
    assert torch.allclose(d_perm, d[perm], atol=1e-9)


def test_the_step_embedding_conditions_on_t_and_can_be_switched_off():
    lattice, frac, t, condition = crystals()
    with torch.no_grad():
        net = network("identity")
        assert not torch.allclose(net.act(lattice, frac, t, condition)[1], net.act(lattice, frac, t + 5, condition)[1])
        torch.manual_seed(0)
        blind = GemsNetDenoiser(num_elements=30, num_steps=100, step_embedding=False, **SIZES).double().eval()
        assert torch.equal(blind.act(lattice, frac, t, condition)[1], blind.act(lattice, frac, t + 5, condition)[1])


def test_decoding_from_a_flat_noisy_cell_keeps_its_thin_side():
    """Early in the chain the unit-cube prior gives cells like 100 A x 4 A x 0.002 A. In float32 (training's dtype)
    the polar log of L_t exp(Y) lost the thin side, and the cell came out flat (volume ~1e-13), which made the
    training loss of ablation (a) NaN on MP-20; the result must keep det(L_t exp(Y)) = det(L_t) e^tr(Y) (here for
    a thin side above MIN_SINGULAR, below which the decoded cell is raised on purpose)."""
    _, frac, t, condition = crystals()
    q = rotation(False)
    flat = (q @ torch.diag(torch.tensor([200.0, 4.0, 0.15], dtype=torch.float64))).expand(2, 3, 3)  # metric not diagonal
    net = network("noisy").float()
    state = {"frac_coords": frac.float(), "lattice": lattice_to_coords(flat).float()}
    with torch.no_grad():
        y, _ = net.act(coords_to_lattice(state["lattice"]), state["frac_coords"], t, condition)
        out = net(state, t, condition)
    volume = torch.linalg.det(coords_to_lattice(out["lattice"].double())).abs()
    expected = torch.linalg.det(coords_to_lattice(state["lattice"].double())).abs() * torch.exp(
        torch.diagonal(y.double(), dim1=-2, dim2=-1).sum(-1))
    assert torch.allclose(expected, torch.full_like(expected, 120.0), rtol=0.5)  # the cell really is this flat
    assert torch.isfinite(out["lattice"]).all() and torch.isfinite(out["frac_coords"]).all()
    assert torch.allclose(volume, expected, rtol=1e-3)


def test_a_collapsing_action_on_the_noisy_cell_still_gives_a_cell(monkeypatch):
    """Y read from a noisy cell's Angstrom-sized edges can be large enough that L_t exp(Y) is singular even in
    float64 (ablation (a)'s loss went NaN at step 799 on MP-20); the decoded cell keeps singular values of at
    least MIN_SINGULAR instead of collapsing."""
    lattice, frac, t, condition = crystals()
    net = network("noisy").float()
    collapse = torch.diag(torch.tensor([-60.0, 0.0, 0.0])).expand(2, 3, 3)
    monkeypatch.setattr(net, "act", lambda *args: (collapse, torch.zeros(7, 3)))
    with torch.no_grad():
        out = net({"frac_coords": frac.float(), "lattice": lattice_to_coords(lattice).float()}, t, condition)
    singular = torch.linalg.svdvals(coords_to_lattice(out["lattice"].double()))
    assert torch.isfinite(out["lattice"]).all()
    assert singular.min() >= MIN_SINGULAR * (1 - 1e-5)
