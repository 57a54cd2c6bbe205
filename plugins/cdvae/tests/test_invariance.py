"""Physical invariances (CDVAE appendix C): the encoder's z and the aggregate predictions are invariant, and the
decoder's coordinate output is equivariant, under permutation, rotation, translation and the choice of unit cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from conftest import tiny_config
from crystalgen.data.crystal import collate, structure_to_data
from crystalgen.state import Condition
from crystalgen_cdvae.model import CDVAE
from crystalgen_cdvae.transform import CDVAETransform

ROTATION = Rotation.from_euler("zyx", [37.0, -21.0, 64.0], degrees=True).as_matrix()


def rotated(s: Structure) -> Structure:
    return Structure(Lattice(s.lattice.matrix @ ROTATION.T), s.species, s.frac_coords)


def translated(s: Structure) -> Structure:
    return Structure(s.lattice, s.species, (s.frac_coords + [0.31, -0.17, 0.52]) % 1.0)


def permuted(s: Structure) -> tuple[Structure, np.ndarray]:
    order = np.random.default_rng(1).permutation(len(s))
    return Structure(s.lattice, [s.species[i] for i in order], s.frac_coords[order]), order


def shifted_images(s: Structure) -> Structure:
    """Some atoms replaced by periodic images (fractional coordinates outside [0, 1))."""
    shift = np.zeros_like(s.frac_coords)
    shift[::2] = [1, -2, 1]
    return Structure(s.lattice, s.species, s.frac_coords + shift, to_unit_cell=False)


def other_cell(s: Structure) -> Structure:
    """The same crystal on another primitive cell: a unimodular change of basis (a, b, c) -> (a, a + b, c - b)."""
    m = np.array([[1, 0, 0], [1, 1, 0], [0, -1, 1]])
    lattice = Lattice(m @ s.lattice.matrix)
    return Structure(lattice, s.species, s.cart_coords, coords_are_cartesian=True)


def supercell(s: Structure) -> Structure:
    return s * (2, 1, 1)


def raw(s: Structure):
    """The structure as given, without the model's Niggli reduction (the networks must not rely on it)."""
    return structure_to_data(s)


@pytest.fixture(scope="module")
def model() -> CDVAE:
    torch.manual_seed(0)
    net = CDVAE.from_config(tiny_config().model).double().eval()
    for p in net.parameters():  # a random but non-degenerate network: the zero-initialised encoder output is perturbed
        p.data.add_(0.05 * torch.randn_like(p))
    return net


def encode(model: CDVAE, structures: list[Structure]) -> dict[str, torch.Tensor]:
    batch = collate([raw(s) for s in structures])
    with torch.no_grad():
        mu, logvar = model.encoder(batch)
        return {"mu": mu, "logvar": logvar, "num_atoms": model.heads.num_atoms_logits(mu),
                "lattice": model.heads.standardised_lattice(mu), "composition": model.heads.composition_logits(mu)}


@pytest.mark.parametrize("change", [rotated, translated, lambda s: permuted(s)[0], shifted_images, other_cell, supercell],
                         ids=["rotation", "translation", "permutation", "periodic_images", "other_cell", "supercell"])
def test_latent_and_aggregate_predictions_are_invariant(model, crystals, change):
    before = encode(model, crystals)
    after = encode(model, [change(s) for s in crystals])
    assert before["mu"].abs().max() > 1e-3  # not trivially zero
    for key in before:
        assert torch.allclose(before[key], after[key], atol=1e-8), key


def test_latent_is_invariant_through_the_crystalnn_graph(crystals):
    torch.manual_seed(0)
    net = CDVAE.from_config(tiny_config(**{"model.encoder.graph": "crystalnn"}).model).double().eval()
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    transform = CDVAETransform(max_atoms=40, encoder_graph="crystalnn")

    def mu(structures):
        with torch.no_grad():
            return net.encoder(collate([transform(s) for s in structures]))[0]

    reference = mu(crystals)
    for change in (rotated, translated, lambda s: permuted(s)[0], other_cell):
        assert torch.allclose(reference, mu([change(s) for s in crystals]), atol=1e-8)


def decode(model: CDVAE, structures: list[Structure], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    batch = collate([raw(s) for s in structures])
    condition = Condition(batch.num_graphs, {}, data={"z": z, "num_atoms": batch.num_atoms, "lattice": batch.lattice})
    levels = torch.ones(batch.num_graphs, dtype=torch.long)  # the decoder is not conditioned on the level
    with torch.no_grad():
        out = model.decoder({"frac_coords": batch.frac_coords, "atom_types": batch.atom_types}, levels, condition)
    return out["frac_coords"], out["atom_types"]


@pytest.fixture(scope="module")
def latent(model) -> torch.Tensor:
    return torch.randn(4, model.latent_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(5))


def test_coordinate_score_rotates_with_the_crystal_and_types_do_not_change(model, crystals, latent):
    vec, logits = decode(model, crystals, latent)
    vec_r, logits_r = decode(model, [rotated(s) for s in crystals], latent)
    assert vec.abs().max() > 1e-3
    assert torch.allclose(vec @ torch.as_tensor(ROTATION).T, vec_r, atol=1e-8)
    assert torch.allclose(logits, logits_r, atol=1e-8)


@pytest.mark.parametrize("change", [translated, shifted_images, other_cell], ids=["translation", "periodic_images", "other_cell"])
def test_coordinate_score_is_invariant_to_translation_and_periodic_shifts(model, crystals, latent, change):
    vec, logits = decode(model, crystals, latent)
    vec_c, logits_c = decode(model, [change(s) for s in crystals], latent)
    assert torch.allclose(vec, vec_c, atol=1e-8) and torch.allclose(logits, logits_c, atol=1e-8)


def test_coordinate_score_is_permutation_equivariant_and_supercell_consistent(model, crystals, latent):
    vec, logits = decode(model, crystals, latent)
    permutations = [permuted(s) for s in crystals]
    vec_p, logits_p = decode(model, [p[0] for p in permutations], latent)
    offsets = np.cumsum([0] + [len(s) for s in crystals])
    order = torch.as_tensor(np.concatenate([offsets[i] + p[1] for i, p in enumerate(permutations)]))
    assert torch.allclose(vec[order], vec_p, atol=1e-8) and torch.allclose(logits[order], logits_p, atol=1e-8)
    # a 2x1x1 supercell: every copy of an atom gets that atom's output
    vec_s, _ = decode(model, [supercell(crystals[0])], latent[:1])
    n = len(crystals[0])
    assert torch.allclose(vec_s.reshape(n, 2, 3), vec[:n].unsqueeze(1).expand(n, 2, 3), atol=1e-8)
