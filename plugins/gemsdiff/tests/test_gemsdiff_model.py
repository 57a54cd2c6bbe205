"""The model: its lattice coordinates, its losses, training that lowers them, and composition-conditioned sampling
that returns valid crystals carrying the requested composition."""

from __future__ import annotations

import pytest
import torch
from gemsdiff_testdata import small_config, train_briefly
from pymatgen.core import Composition

from crystalgen import SampleRequest, UnsupportedRequestError, collate, lattice_matrix_to_params
from crystalgen_gemsdiff.lattice_coords import (
    MIN_SINGULAR,
    ROTATION,
    coords_to_lattice,
    coords_to_matrix,
    lattice_to_coords,
    matrix_to_coords,
)
from crystalgen_gemsdiff.model import GemsDiff, cell_atomic_numbers


def test_polar_coordinates_keep_the_lattice_parameters_and_have_no_rotation_part(items):
    lattices = torch.cat([d.lattice for d in items]).double()
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    coords = lattice_to_coords(lattices @ q.T)  # a rotated copy has the same coordinates
    assert torch.allclose(coords, lattice_to_coords(lattices), atol=1e-9)
    assert bool((coords[:, ROTATION] == 0).all())
    back = coords_to_lattice(coords)
    for mine, theirs in zip(lattice_matrix_to_params(back), lattice_matrix_to_params(lattices), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-8)


def test_training_lowers_the_loss(trained):
    _, before, after = trained
    assert after < 0.5 * before, (before, after)


def test_position_target_is_the_shortest_path(items):
    model = GemsDiff(small_config().model)
    model.fit_statistics(items)
    x0 = torch.tensor([[0.02, 0.5, 0.97]])
    noised = model.processes["frac_coords"].add_noise(x0, torch.tensor([100]))
    displacement = noised.target - noised.x_t
    assert bool((displacement.abs() <= 0.5).all())
    assert torch.allclose(torch.remainder(noised.target, 1.0), x0, atol=1e-6)


def test_no_shortest_path_and_l1_switches_change_the_loss(items):
    batch = collate(items)
    losses = {}
    for overrides in ({}, {"shortest_path": False}, {"loss_norm": "l1"}, {"lattice_target": "posterior_mean"}):
        cfg = small_config().model
        cfg.update(overrides)
        torch.manual_seed(0)
        model = GemsDiff(cfg)
        model.fit_statistics(items)
        torch.manual_seed(1)
        losses[str(overrides)] = {k: float(v) for k, v in model.training_loss(batch).items()}
    base = losses["{}"]
    assert all(v != base for k, v in losses.items() if k != "{}")


def sample(model: GemsDiff, request: SampleRequest):
    from crystalgen.plugins import build_host

    sampler = build_host().get("sampler", "ancestral")()
    condition = model.prepare_sampling(request)
    state = sampler.run(model, condition, generator=torch.Generator().manual_seed(0))
    return model.decode(state, condition)


def test_sampled_crystals_carry_the_requested_composition(trained):
    model = trained[0]
    decoded = sample(model, SampleRequest(3, composition=["Li2MnO3", "NaCl", "Li2MnO3"]))
    assert all(d.ok for d in decoded), [d.reason for d in decoded]
    formulas = [d.structure.composition for d in decoded]
    assert formulas == [Composition("Li2MnO3"), Composition("NaCl"), Composition("Li2MnO3")]
    for d in decoded:
        assert d.structure.lattice.volume > 0
        assert all(0 <= x < 1 for site in d.structure for x in site.frac_coords)


def test_without_a_composition_sampling_draws_training_compositions(trained, items):
    model = trained[0]
    known = {Composition(dict(zip(*torch.unique(d.atom_types, return_counts=True)))) for d in items}
    condition = model.prepare_sampling(SampleRequest(6))
    counts = condition.data["num_atoms"].tolist()
    types = condition.data["atom_types"].split(counts)
    drawn = {Composition(dict(zip(*torch.unique(t, return_counts=True)))) for t in types}
    assert drawn <= known


def test_training_compositions_travel_with_the_state_dict(trained):
    model = trained[0]
    fresh = GemsDiff(small_config().model)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.train_types, model.train_types)
    assert torch.equal(fresh.train_counts, model.train_counts)
    assert fresh.log_volume_per_atom == model.log_volume_per_atom != 0.0


def test_cell_content_gives_one_atom_per_formula_unit_atom():
    assert sorted(cell_atomic_numbers(Composition("Li2MnO3"), 20, 100)) == [3, 3, 8, 8, 8, 25]


@pytest.mark.parametrize("formula, message", [("Li30O", "1 to 20 atoms"), ("Og2", "beyond the model's 100 element")])
def test_compositions_beyond_the_model_are_refused_with_the_reason(formula, message):
    """Fractional amounts and unknown elements are refused by the core's SampleRequest; the model refuses what its
    vocabulary cannot hold."""
    with pytest.raises(UnsupportedRequestError, match=message):
        cell_atomic_numbers(Composition(formula), 20, 100)


@pytest.mark.parametrize("denoiser, model", [({}, {}), ({"decode_from": "noisy"}, {}), ({"step_embedding": False}, {}),
                                             ({"encoder": False}, {}), ({}, {"lattice_space": "matrix"})])
def test_the_model_and_table_4_ablations_give_every_parameter_a_finite_gradient(items, denoiser, model):
    """The paper's model and ablations (a) from the noisy cell, (b) without the step embedding, (c) without the
    encoder, (d) without the Lie algebra: finite losses, and a finite gradient for every parameter (DistributedDataParallel
    refuses a parameter the loss never reaches: `torchrun ... train gemsdiff` once failed on its first step because
    the encoder carried GemNet-T's unused output blocks). (e), no shortest path, is a model switch tested above."""
    cfg = small_config().model
    cfg.denoiser.update(denoiser)
    cfg.update(model)
    cfg.volume_prior = denoiser.get("decode_from", "identity") == "identity"  # the offset is for the identity cell
    torch.manual_seed(0)
    gemsdiff = GemsDiff(cfg)
    gemsdiff.fit_statistics(items)
    loss = gemsdiff.training_loss(collate(items))["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert [name for name, p in gemsdiff.named_parameters() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in gemsdiff.parameters() if p.grad is not None)


def test_a_noisy_matrix_reaches_the_denoiser_as_a_cell_the_knn_search_can_take(items):
    """Ablation (d): a reflected cell keeps its lengths and angles; a singular one gets singular values >= the floor;
    a clean cell's entries go to coordinates and back unchanged."""
    lattice = items[0].lattice[0].double()
    reflected = lattice @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))  # a mirror image
    assert torch.linalg.det(reflected) < 0
    cell = coords_to_lattice(matrix_to_coords(reflected.flatten()))
    assert torch.linalg.det(cell) > 0
    for mine, theirs in zip(lattice_matrix_to_params(cell[None]), lattice_matrix_to_params(lattice[None]), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-8)
    singular = torch.tensor([[4.0, 0.0, 0.0], [0.0, 3.0, 0.0], [8.0, 0.0, 0.0]], dtype=torch.float64)
    values = torch.linalg.svdvals(coords_to_lattice(matrix_to_coords(singular.flatten())))
    assert torch.isfinite(values).all() and float(values.min()) == pytest.approx(MIN_SINGULAR, rel=1e-6)
    polar = coords_to_matrix(lattice_to_coords(lattice))
    assert torch.allclose(coords_to_matrix(matrix_to_coords(polar)), polar, atol=1e-9)


def test_ablation_d_without_the_lie_algebra_trains_and_samples_finite_cells(items):
    """Ablation (d) (appendix F): DDPM on the cell's matrix entries. The loss falls, and ancestral sampling from the
    N(0, I) matrix prior (noisy cells singular or left-handed along the way) ends in finite cells of positive
    volume, decoded from the identity cell's prediction."""
    cfg = small_config().model
    cfg.lattice_space = "matrix"
    torch.manual_seed(0)
    model = GemsDiff(cfg)
    model.fit_statistics(items)
    before, after = train_briefly(model, items, 40)
    assert after < 0.7 * before, (before, after)
    decoded = sample(model, SampleRequest(4, composition=["Li2MnO3", "NaCl", "SrTiO3", "Si2"]))
    assert all(d.ok for d in decoded), [d.reason for d in decoded]
    for d in decoded:
        matrix = torch.tensor(d.structure.lattice.matrix)
        assert torch.isfinite(matrix).all() and d.structure.lattice.volume > 0.1


def test_ablation_d_noises_every_matrix_entry(items):
    """Under (d) the lattice variable is the polar form's 9 entries with no rotation constraint; in gl(3) the three
    rotation coordinates are held at zero."""
    cfg = small_config().model
    cfg.lattice_space = "matrix"
    model = GemsDiff(cfg)
    condition = model.prepare_sampling(SampleRequest(2, composition="NaCl"))
    assert "lattice" not in condition.constraints
    assert "lattice" in GemsDiff(small_config().model).prepare_sampling(SampleRequest(2, composition="NaCl")).constraints


def test_ddim_at_fewer_steps_is_a_sampler_swap(trained):
    from crystalgen.plugins import build_host

    model = trained[0]
    sampler = build_host().get("sampler", "ddim")(steps=10)
    condition = model.prepare_sampling(SampleRequest(2, composition="SrTiO3"))
    decoded = model.decode(sampler.run(model, condition, generator=torch.Generator().manual_seed(0)), condition)
    assert [d.structure.composition for d in decoded if d.ok] == [Composition("SrTiO3")] * 2


def test_a_section_saved_before_the_volume_prior_samples_as_trained():
    cfg = small_config().model
    del cfg["volume_prior"]
    del cfg["lattice_space"]
    upgraded = GemsDiff.upgrade_config(cfg)
    assert upgraded.volume_prior is False
    assert upgraded.lattice_space == "lie_algebra"
    assert GemsDiff.upgrade_config(small_config().model) == small_config().model
