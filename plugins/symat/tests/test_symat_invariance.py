"""SyMat's symmetries (to float32 round-off: Data stores float32 coordinates): the encoder's latents are invariant (section 3.3), the coordinate score of eq. (3) is
translation-invariant, rotation- and permutation-equivariant and independent of the periodic images the atoms are
stored as (Proposition 3.2); the distance-space target is invariant where the coordinate-space one is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation
from symat_testdata import tiny_config

from crystalgen import collate, minimum_image, radius_graph_pbc, structure_to_data
from crystalgen.state import Condition
from crystalgen_symat.model import SyMat
from crystalgen_symat.score import per_atom
from crystalgen_symat.targets import aligned_displacement, distance_change

ROTATION = Rotation.from_euler("zyx", [37.0, -21.0, 64.0], degrees=True).as_matrix()
SHIFT = np.array([0.31, -0.17, 0.52])


def rotated(s: Structure) -> Structure:
    return Structure(Lattice(s.lattice.matrix @ ROTATION.T), s.species, s.frac_coords)


def translated(s: Structure) -> Structure:
    return Structure(s.lattice, s.species, (s.frac_coords + SHIFT) % 1.0)


def permuted(s: Structure) -> Structure:
    order = np.random.default_rng(1).permutation(len(s))
    return Structure(s.lattice, [s.species[i] for i in order], s.frac_coords[order])


def shifted_images(s: Structure) -> Structure:
    shift = np.zeros_like(s.frac_coords)
    shift[::2] = [1, -2, 1]
    return Structure(s.lattice, s.species, s.frac_coords + shift, to_unit_cell=False)


def other_cell(s: Structure) -> Structure:
    """The same crystal on another cell of the same size: (a, b, c) -> (a, a + b, c - b)."""
    m = np.array([[1, 0, 0], [1, 1, 0], [0, -1, 1]])
    return Structure(Lattice(m @ s.lattice.matrix), s.species, s.cart_coords, coords_are_cartesian=True)


def supercell(s: Structure) -> Structure:
    return s * (2, 1, 1)


@pytest.fixture(scope="module")
def model() -> SyMat:
    torch.manual_seed(0)
    net = SyMat.from_config(tiny_config(**{"model.encoder.num_layers": 2, "model.denoiser.basis": "torsion"}).model).double().eval()
    for p in net.parameters():  # random, non-degenerate: the zero-initialised log-variance layer is perturbed
        p.data.add_(0.05 * torch.randn_like(p))
    return net


def encode(model: SyMat, structures: list[Structure]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(model.encoder(collate([structure_to_data(s) for s in structures])), dim=-1)


@pytest.mark.parametrize("change", [rotated, translated, permuted, shifted_images, other_cell],
                         ids=["rotation", "translation", "permutation", "periodic_images", "other_cell"])
def test_encoder_latents_are_invariant(model, crystals, change):
    before, after = encode(model, crystals), encode(model, [change(s) for s in crystals])
    assert before.abs().max() > 1e-3
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-5)


def test_mean_readout_is_supercell_invariant_and_sum_readout_counts_cells(model, crystals):
    """Mean pooling gives the same latents for a supercell; the paper's sum pooling gives the pooled features of
    the supercell as twice those of the cell (the atom counts to reconstruct double too)."""
    big = [supercell(s) for s in crystals]
    mu_cell, _ = model.encoder(collate([structure_to_data(s) for s in crystals]))
    mu_big, _ = model.encoder(collate([structure_to_data(s) for s in big]))
    bias = model.encoder.fc_mu.bias
    torch.testing.assert_close(mu_big - bias, 2 * (mu_cell - bias), atol=1e-6, rtol=1e-5)
    model.encoder.readout = "mean"
    try:
        torch.testing.assert_close(encode(model, big), encode(model, crystals), atol=1e-6, rtol=1e-5)
    finally:
        model.encoder.readout = "sum"


def coordinate_score(model: SyMat, structures: list[Structure], t: int = 20) -> torch.Tensor:
    batch = collate([structure_to_data(s) for s in structures])
    condition = Condition(len(structures), {}, data={"atom_types": batch.atom_types, "lattice": batch.lattice.double(),
                                                     "num_atoms": batch.num_atoms})
    with torch.no_grad():
        return model.denoise({"frac_coords": batch.frac_coords.double()}, torch.full((len(structures),), t), condition)["frac_coords"]


def test_coordinate_score_symmetries(model, crystals):
    """Proposition 3.2 on a random network: translation and periodic images change nothing, rotation rotates,
    permutation permutes."""
    score = coordinate_score(model, crystals)
    assert score.abs().max() > 1e-3
    torch.testing.assert_close(coordinate_score(model, [translated(s) for s in crystals]), score, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(coordinate_score(model, [shifted_images(s) for s in crystals]), score, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(coordinate_score(model, [rotated(s) for s in crystals]), score @ torch.tensor(ROTATION).T,
                               atol=1e-6, rtol=1e-5)
    s = crystals[0]
    order = np.random.default_rng(1).permutation(len(s))
    permuted_score = coordinate_score(model, [Structure(s.lattice, [s.species[i] for i in order], s.frac_coords[order])])
    torch.testing.assert_close(permuted_score, coordinate_score(model, [s])[order], atol=1e-6, rtol=1e-5)


def targets(clean: torch.Tensor, noisy: torch.Tensor, lattice: torch.Tensor, num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance-space target mapped to the atoms by eq. (3), coordinate-space target), both per atom."""
    graph = radius_graph_pbc(noisy, lattice, num_atoms, 5.0)
    displacement = aligned_displacement(clean, noisy, lattice, num_atoms)
    change = distance_change(graph.edge_index, graph.edge_vec, displacement)
    scored = graph.edge_index[0] != graph.edge_index[1]
    return per_atom(change, graph.edge_index, graph.edge_vec, scored, noisy.shape[0]), displacement


def test_distance_target_is_translation_invariant_and_the_coordinate_target_is_not(crystals):
    """Translating the noisy crystal (the same material) leaves the distance-space target unchanged and moves the
    coordinate-space (ablation, CDVAE) target by the translation: the reason the method scores distances."""
    batch = collate([structure_to_data(s) for s in crystals])
    clean, lattice = batch.frac_coords.double(), batch.lattice.double()
    generator = torch.Generator().manual_seed(3)
    noisy = clean + 0.04 * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    shift = torch.tensor([0.013, -0.021, 0.017], dtype=torch.float64)  # small: every atom keeps its aligned image
    distance, coordinate = targets(clean, noisy, lattice, batch.num_atoms)
    distance_moved, coordinate_moved = targets(clean, noisy + shift, lattice, batch.num_atoms)
    torch.testing.assert_close(distance_moved, distance, atol=1e-10, rtol=1e-10)
    moved, _ = minimum_image(-shift.expand_as(clean), lattice, batch.num_atoms)
    torch.testing.assert_close(coordinate_moved, coordinate + moved, atol=1e-10, rtol=1e-10)
    assert (coordinate_moved - coordinate).norm(dim=-1).min() > 0.05  # the change is the shift, in Angstrom
