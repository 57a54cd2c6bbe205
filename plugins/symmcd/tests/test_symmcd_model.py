"""The SymmCD model: training loss, sampling conditions, and generation from a small trained model."""

from __future__ import annotations

import numpy as np
import pytest
import spglib
import torch
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer, SymmetryUndeterminedError

from crystalgen.data.crystal import collate
from crystalgen.samplers.ancestral import AncestralSampler
from crystalgen.samplers.ddim import DDIMSampler
from crystalgen.state import SampleRequest
from crystalgen_symmcd.model import TOP10_SPACEGROUPS, SymmCD
from crystalgen_symmcd.symmetry import space_group_table


def test_training_loss_has_the_four_weighted_parts(prototype_items, small_config):
    torch.manual_seed(0)
    model = SymmCD(small_config.model)
    model.fit_statistics(prototype_items)
    out = model.training_loss(collate(prototype_items[:8]))
    assert set(out) == {"loss", "lattice_k", "frac_coords", "atom_types", "site_symmetry"}
    w = model.loss_weights
    torch.testing.assert_close(out["loss"], sum(w[v] * out[v] for v in w))
    out["loss"].backward()
    assert all(p.grad is not None for p in model.denoiser.parameters() if p.requires_grad)


def test_statistics_and_sampling_conditions(prototype_items, small_config):
    model = SymmCD(small_config.model)
    model.fit_statistics(prototype_items)
    seen = {int(item.spacegroup) for item in prototype_items}
    assert {g for g in range(231) if model.spacegroup_probs[g] > 0} == seen
    torch.manual_seed(0)
    cond = model.prepare_sampling(SampleRequest(50))
    assert set(cond.data["spacegroup"].tolist()) <= seen
    hexagonal = model.prepare_sampling(SampleRequest(3, spacegroup=186))
    k = hexagonal.constrain("lattice_k", torch.zeros(3, 6))
    torch.testing.assert_close(k[:, 0], torch.full((3,), -np.log(3) / 4, dtype=torch.float32))
    assert hexagonal.process_args["site_symmetry"]["marginal"].shape == (hexagonal.shapes["site_symmetry"][0], 15, 13)
    top10 = model.prepare_sampling(SampleRequest(40, options={"spacegroup_prior": "top10"}))
    assert set(top10.data["spacegroup"].tolist()) <= set(TOP10_SPACEGROUPS)


def test_clipping_the_lattice_prediction_bounds_the_implied_clean_k(prototype_items, small_config):
    model = SymmCD(small_config.model)
    model.fit_statistics(prototype_items)
    t = torch.tensor([900, 10])
    k_t = torch.randn(2, 6)
    proc = model.processes["lattice_k"]
    a, s = proc.marginal(t, k_t)
    inside = (k_t - a * model.lattice_k_range.mean(0).float()) / s  # eps implying the middle of the range
    torch.testing.assert_close(model.clip_lattice_eps(inside, k_t, t), inside)
    wild = model.clip_lattice_eps(inside + 1.0, k_t, t)
    x0 = (k_t - s * wild) / a
    lo, hi = model.lattice_k_range.float()
    assert bool(((x0 >= lo - 1e-3) & (x0 <= hi + 1e-3)).all())


def invariant_under(structure, spacegroup: int, tol: float = 1e-3) -> bool:
    """Every operation of G maps each atom onto an atom of the same species (fractional tolerance)."""
    table = space_group_table(spacegroup)
    x = np.mod(structure.frac_coords, 1.0)
    z = np.array([site.specie.Z for site in structure])
    for W, w in zip(table.rotations, table.translations):
        images = x @ W.T + w
        d = images[:, None, :] - x[None, :, :]
        close = np.all(np.abs(d - np.rint(d)) < tol, axis=-1) & (z[:, None] == z[None, :])
        if not close.any(axis=1).all():
            return False
    return True


def spglib_number(structure) -> int | None:
    """Space group found by spglib at 0.1 A, or None when it cannot decide (e.g. two atoms on one site)."""
    try:
        return SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number()
    except SymmetryUndeterminedError:
        return None


def spglib_finds_all_operations_of(structure, spacegroup: int, tol: float = 1e-4) -> bool:
    """Every operation (W, w) of G is among the operations spglib finds at symprec 0.1 A in the crystal's own cell
    (G's conventional cell), i.e. G is a subgroup of the found group; spglib may find a supergroup when atoms
    sit on special positions."""
    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    found = spglib.get_symmetry(cell, symprec=0.1)
    if found is None:
        return False
    table = space_group_table(spacegroup)
    for W, w in zip(table.rotations, table.translations):
        same_rotation = np.all(found["rotations"] == W, axis=(1, 2))
        d = found["translations"][same_rotation] - w
        if not np.all(np.abs(d - np.rint(d)) < tol, axis=1).any():
            return False
    return True


def generate(model, sampler, n=24, seed=0):
    torch.manual_seed(seed)
    cond = model.prepare_sampling(SampleRequest(n))
    state = sampler.run(model, cond, generator=torch.Generator().manual_seed(seed))
    return cond, model.decode(state, cond)


def structurally_valid(structure) -> bool:
    if len(structure) < 2:
        return structure.volume > 0.1
    d = structure.distance_matrix
    return bool(d[np.triu_indices(len(structure), 1)].min() >= 0.5 and structure.volume > 0.1)


#: Exact spglib match among the structurally valid crystals, as measured (22 of 27 for both samplers).
EXACT_MATCH_MEASURED = {"ancestral": 22 / 27, "ddim": 22 / 27}


@pytest.mark.parametrize("sampler", [AncestralSampler(steps=100), DDIMSampler(steps=10)], ids=["ancestral-100", "ddim-10"])
def test_trained_model_generates_crystals_of_the_sampled_space_group(trained_model, sampler):
    """Both the default sampler (the small preset's 100 ancestral steps) and DDIM with 10x fewer steps give
    decodable crystals; every one is invariant under its sampled G (replication guarantees it), and for every
    structurally valid one spglib at 0.1 A finds all operations of G in the crystal's cell (the issue's check).

    spglib may report a higher group than G when the sampled atoms sit on a more symmetric arrangement (zinc
    blende's 4a + 4b is rock salt, Fm-3m), so the exact match is a rate, asserted just under what it measures.
    Structurally invalid crystals are almost all two representatives projected onto the same site; spglib cannot
    decide on those. An untrained model reaches about 0.2 structural validity here (docs/symmcd.md).
    """
    cond, decoded = generate(trained_model, sampler, n=48)
    groups = cond.data["spacegroup"].tolist()
    assert all(d.ok for d in decoded), [d.reason for d in decoded if not d.ok]
    assert all(invariant_under(d.structure, g) for d, g in zip(decoded, groups))
    valid = [(d.structure, g) for d, g in zip(decoded, groups) if structurally_valid(d.structure)]
    not_subgroup = [(g, s.composition.formula) for s, g in valid if not spglib_finds_all_operations_of(s, g)]
    assert not not_subgroup, f"spglib (0.1 A) misses operations of the sampled G for {not_subgroup}"
    exact = np.mean([spglib_number(s) == g for s, g in valid])
    print(f"\n{sampler.name} x{sampler.steps}: structurally valid {len(valid)}/{len(decoded)}; G a subgroup of the "
          f"spglib (0.1 A) group for all of them; spglib group == G for {exact:.3f} of them")
    assert len(valid) / len(decoded) >= 0.5
    assert exact >= EXACT_MATCH_MEASURED[sampler.name] - 0.02
