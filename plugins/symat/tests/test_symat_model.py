"""SyMat's model: the composition and lattice rebuild, the per-level distance std, training, sampling, the
coordinate-space ablation, property optimisation, and a property head fitted on the frozen latents."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from omegaconf import OmegaConf
from pymatgen.core import Composition as PymatgenComposition
from symat_testdata import rattled, tiny_config

from crystalgen import SampleRequest, collate, lattice_matrix_to_params, structure_to_data
from crystalgen.plugins import get
from crystalgen.runner.config import compose
from crystalgen_symat.heads import Composition
from crystalgen_symat.model import SyMat
from crystalgen_symat.targets import fit_distance_std


def data_of(structures, prop=None):
    items = [structure_to_data(s.get_reduced_structure("niggli")) for s in structures]
    if prop is not None:
        for d, value in zip(items, prop, strict=True):
            d["prop_energy"] = torch.tensor([value])
    return items


def test_composition_and_lattice_rebuild_round_trip(crystals):
    """Atom types -> atom-type set -> multiset, and lattice -> six standardised values -> lattice, are exact."""
    model = SyMat.from_config(tiny_config().model)
    data = data_of(crystals)
    model.fit_statistics(data)
    batch = collate(data)
    composition = Composition.of(batch.atom_types, batch.batch, batch.num_graphs, model.num_elements)
    assert composition.k.tolist() == [3, 2, 2, 2] and composition.num_atoms.tolist() == [5, 2, 2, 4]
    rebuilt = Composition.of(composition.atom_types(), torch.repeat_interleave(torch.arange(4), composition.num_atoms), 4, model.num_elements)
    assert torch.equal(rebuilt.counts, composition.counts)
    for s, start, n in zip(crystals, [0, 5, 7, 9], [5, 2, 2, 4], strict=True):  # same multiset, element by element
        types = composition.atom_types()[start:start + n].tolist()
        assert PymatgenComposition({int(z): types.count(z) for z in set(types)}) == s.composition
        assert types == sorted(types)
    standardised = (model.heads.lattice_features(batch.lattice, composition.num_atoms) - model.heads.lattice_mean) / model.heads.lattice_std
    decoded = model.heads.lattice_from_features(standardised, composition)
    assert bool(decoded.valid.all())
    lengths, angles = lattice_matrix_to_params(batch.lattice.double())
    torch.testing.assert_close(lattice_matrix_to_params(decoded.lattice)[0], lengths)
    torch.testing.assert_close(lattice_matrix_to_params(decoded.lattice)[1], angles)


def test_distance_std_is_deterministic_and_sqrt2_sigma_at_small_noise(crystals):
    """sigma_hat_t: the same on every fit; at small sigma a distance moves by the projection of two independent
    N(0, sigma^2 I) displacements on the bond, whose std is sqrt(2) sigma."""
    model = SyMat.from_config(tiny_config().model)
    data = data_of(crystals)
    process, score = model.processes["frac_coords"], model.score
    first = fit_distance_std(data, process, score.cutoff, score.max_neighbors, model.norm_crystals)
    assert torch.equal(first, fit_distance_std(data, process, score.cutoff, score.max_neighbors, model.norm_crystals))
    model.fit_statistics(data)
    assert torch.equal(first, model.distance_std)
    sigmas = process.sigmas
    ratio = first[1:11] / (math.sqrt(2) * sigmas[1:11])  # ten independent estimates from about 100 edges each
    assert abs(float(ratio.mean()) - 1) < 0.1, ratio
    assert first[50] > 10 * first[1]
    torch.testing.assert_close(model.score.output_scale[1:], sigmas[1:] / first[1:])


def test_sigma_hat_is_estimated_once_per_training_data_and_read_from_the_cache_after(crystals, tmp_path, monkeypatch):
    """The appendix's perturbation estimate is deterministic, so a second training run on the same crystals and
    settings reads it from the crystalgen cache; other crystals are estimated anew."""
    import crystalgen_symat.model as symat_model

    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path))
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return fit_distance_std(*args, **kwargs)

    monkeypatch.setattr(symat_model, "fit_distance_std", counted)
    data = data_of(crystals)
    first, second = (SyMat.from_config(tiny_config().model) for _ in range(2))
    first.fit_statistics(data)
    second.fit_statistics(data_of(crystals))
    assert len(calls) == 1 and torch.equal(first.distance_std, second.distance_std)
    assert len(list((tmp_path / "statistics").glob("symat-distance-std-*.pt"))) == 1
    second.fit_statistics(data[:3])
    assert len(calls) == 2


def train(model: SyMat, batch, steps: int) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for step in range(steps):
        torch.manual_seed(step)
        loss = model.training_loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize("target", ["distance", "coordinate"])
def test_loss_decreases_on_a_small_set(crystals, target):
    torch.manual_seed(0)
    model = SyMat.from_config(tiny_config(**{"model.score_target": target}).model)
    data = data_of(crystals)
    model.fit_statistics(data)
    losses = train(model, collate(data), 60)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10, losses
    if target == "coordinate":
        assert torch.equal(model.score.output_scale, torch.ones_like(model.score.output_scale))


def test_every_parameter_receives_a_gradient(crystals):
    """DistributedDataParallel refuses a model with parameters that the loss never reaches (the score network once
    carried SphereNet's unused node output blocks, and `torchrun ... train symat` failed on its first step)."""
    torch.manual_seed(0)
    model = SyMat.from_config(tiny_config().model)
    data = data_of(crystals)
    model.fit_statistics(data)
    model.training_loss(collate(data))["loss"].backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


@pytest.fixture(scope="module")
def trained(crystals) -> SyMat:
    torch.manual_seed(0)
    model = SyMat.from_config(tiny_config(**{"model.property": "energy"}).model)
    data = data_of(crystals, prop=[-1.0, 0.5, 0.2, -0.3])
    model.fit_statistics(data)
    train(model, collate(data), 150)
    return model.eval()


@pytest.mark.parametrize("sampler", ["langevin", "pc"])
def test_sampling_gives_crystals_with_the_decoded_composition(trained, sampler):
    """z -> composition and lattice -> coordinates: every crystal is built with the atoms the VAE decoded."""
    torch.manual_seed(4)
    condition = trained.prepare_sampling(SampleRequest(6))
    run = get("sampler", sampler)(steps=10, **({"n_steps_each": 2} if sampler == "langevin" else {}))
    state = run.run(trained, condition, generator=torch.Generator().manual_seed(0))
    decoded = trained.decode(state, condition)
    assert len(decoded) == 6
    start = 0
    for item, n in zip(decoded, condition.data["num_atoms"].tolist(), strict=True):
        assert item.ok, item.reason
        types = condition.data["atom_types"][start:start + n].tolist()
        assert sorted(site.specie.Z for site in item.structure) == sorted(types)
        start += n


def test_reconstructs_the_training_compositions_after_training(trained, crystals):
    batch = collate(data_of(crystals))
    with torch.no_grad():
        mu, _ = trained.encoder(batch)
    vae = trained.decode_latent(mu)
    target = Composition.of(batch.atom_types, batch.batch, batch.num_graphs, trained.num_elements)
    assert torch.equal(vae.composition.counts, target.counts)


def test_optimisation_moves_the_predicted_property(trained, crystals):
    batch = collate(data_of(crystals, prop=[-1.0, 0.5, 0.2, -0.3]))
    sampler = get("sampler", "langevin")(steps=5, n_steps_each=1)
    with torch.no_grad():
        mu, _ = trained.encoder(batch)
        before = trained.fc_property(mu).squeeze(-1).double() * trained.property_std + trained.property_mean
    decoded = trained.optimize(batch, sampler, direction="min", steps=30, generator=torch.Generator().manual_seed(0))
    after = torch.tensor([d.info["predicted_property"] for d in decoded], dtype=torch.float64)
    assert len(decoded) == 4 and (after < before).all()


# -- a property head fitted on the frozen latents (optimize --fit-head-on) ---------------------------------------
def volume_per_atom(structure) -> float:
    """An independent property of a decoded crystal: Angstrom^3 per atom of its lattice, computed by pymatgen."""
    return structure.volume / len(structure)


@pytest.fixture(scope="module")
def fit_batches(crystals):
    """Twenty strained copies of the four crystals (about 10 to 40 A^3 per atom) with their volume per atom."""
    copies = [rattled(s, 100 + 4 * seed + i, amount=0.05) for seed in range(5) for i, s in enumerate(crystals)]
    items = data_of(copies)
    for item, s in zip(items, copies, strict=True):
        item["prop_volume_per_atom"] = torch.tensor([volume_per_atom(s)], dtype=torch.float64)
    return [collate(items[:12]), collate(items[12:])]


def with_fitted_head(trained, fit_batches) -> tuple[SyMat, dict]:
    model = copy.deepcopy(trained)
    model.optimization["head_fit"] = {**model.optimization["head_fit"], "holdout": 0.25}
    torch.manual_seed(0)
    summary = model.fit_property_head(fit_batches, "volume_per_atom", generator=torch.Generator().manual_seed(0))
    return model, summary


def test_fitting_a_head_on_frozen_latents_changes_no_vae_weight(trained, fit_batches):
    def frozen(model):
        return {k: v.clone() for k, v in model.state_dict().items()
                if not k.startswith("fc_property.") and k not in ("property_mean", "property_std")}

    before = frozen(trained)
    model, summary = with_fitted_head(trained, fit_batches)
    after = frozen(model)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith("fc_property."))
    assert model.property == "volume_per_atom" and model.fc_property is not trained.fc_property
    assert (summary["n_fit"], summary["n_held_out"]) == (15, 5)
    assert summary["held_out_mae"] < summary["held_out_mae_of_the_mean"], summary  # it learned something
    assert trained.property == "energy"  # the original is untouched


def test_optimising_a_fitted_head_moves_the_independent_property_in_the_asked_direction(trained, fit_batches, crystals):
    """The head predicts volume per atom from z; after 200 Adam steps on z the decoded crystals' own volume per atom
    (measured on the decoded lattice, not predicted) is lower when minimising than when maximising, for every start."""
    model, _ = with_fitted_head(trained, fit_batches)
    batch = collate(data_of(crystals))
    sampler = get("sampler", "langevin")(steps=5, n_steps_each=1)
    volumes = {}
    for direction in ("min", "max"):
        decoded = model.optimize(batch, sampler, direction=direction, steps=200, generator=torch.Generator().manual_seed(0))
        assert all(d.ok for d in decoded), [d.reason for d in decoded]
        volumes[direction] = [volume_per_atom(d.structure) for d in decoded]
    assert all(low < high for low, high in zip(volumes["min"], volumes["max"], strict=True)), volumes


def test_the_trajectory_is_decoded_every_decode_every_steps(trained, crystals):
    model = copy.deepcopy(trained)
    model.optimization["decode_every"] = 4
    batch = collate(data_of(crystals[:2]))
    decoded = model.optimize(batch, get("sampler", "langevin")(steps=2, n_steps_each=1), steps=10,
                             generator=torch.Generator().manual_seed(0))
    assert [d.info["opt_step"] for d in decoded] == [1, 5, 9, 10] * 2  # input-major, as CDVAE's protocol


def test_a_head_fit_on_crystals_without_the_property_names_the_ones_they_have(trained, crystals):
    model = copy.deepcopy(trained)
    batch = collate(data_of(crystals, prop=[-1.0, 0.5, 0.2, -0.3]))
    with pytest.raises(ValueError, match="property 'heat_ref'.*they have: energy"):
        model.fit_property_head([batch], "heat_ref")


def test_a_saved_section_without_the_new_optimisation_keys_gets_the_presets_values():
    for preset in SyMat.presets():
        section = OmegaConf.load(SyMat.presets()[preset]).model
        assert OmegaConf.to_container(SyMat.upgrade_config(section)) == OmegaConf.to_container(section), preset
        old = OmegaConf.to_container(section)
        old["optimization"] = {"steps": old["optimization"]["steps"], "lr": old["optimization"]["lr"]}
        upgraded = OmegaConf.to_container(SyMat.upgrade_config(OmegaConf.create(old)))
        assert upgraded == OmegaConf.to_container(section), preset


def test_the_count_heads_fit_carbon_24s_largest_cells():
    """On Carbon-24 (cells of 6 to 24 atoms) the presets size k and the per-element counts for 24 atoms, so the
    22- and 24-atom cells are trained on and can be sampled; elsewhere the published 20."""
    for dataset, classes in (("carbon_24", 24), ("mp_20", 20)):
        for preset in ("small", "paper"):
            cfg = compose(SyMat.presets(), preset, model_name="symat", overrides=[f"data.dataset={dataset}"])
            model = SyMat.from_config(cfg.model)
            assert model.max_atoms == classes
            assert model.heads.fc_count[-1].out_features == classes
