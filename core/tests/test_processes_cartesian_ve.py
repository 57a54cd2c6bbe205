"""The Cartesian VE process on a lattice and composition mixing (CDVAE's coordinate and type processes, now the
core's): targets, periodic behaviour and updates checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from crystalgen.processes.cartesian_ve import CartesianVE
from crystalgen.processes.composition_mixing import CompositionMixing, TypeNoised, composition_types
from crystalgen.samplers.base import Sampler, role
from crystalgen.samplers.langevin import AnnealedLangevinSampler
from crystalgen.samplers.predictor_corrector import PredictorCorrectorSampler

LATTICE = torch.tensor([[[4.0, 0.0, 0.0], [1.0, 5.0, 0.0], [0.5, 0.3, 6.0]]], dtype=torch.float64)


def test_small_noise_target_is_minus_eps_and_large_noise_target_is_the_minimum_image():
    process = CartesianVE(50, 0.01, 10.0).double()
    x0 = torch.rand(400, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    num_atoms = torch.tensor([400])
    noised = process.add_noise(x0, torch.ones(400, dtype=torch.long), generator=torch.Generator().manual_seed(1),
                               lattice=LATTICE, num_atoms=num_atoms)
    eps = torch.randn(400, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(noised.target, -eps, atol=1e-9)  # sigma = 0.01 A never crosses a cell boundary here
    big = process.add_noise(x0, torch.full((400,), 50), lattice=LATTICE, num_atoms=num_atoms)
    displacement = big.target * 10.0
    # shortest over a generous box of images, by brute force
    images = torch.stack(torch.meshgrid(*[torch.arange(-3, 4)] * 3, indexing="ij"), -1).reshape(-1, 3).double()
    candidates = (x0 - big.x_t).unsqueeze(1) + images
    lengths = (candidates @ LATTICE[0]).norm(dim=-1)
    assert torch.allclose(displacement.norm(dim=-1), lengths.min(dim=1).values, atol=1e-9)
    assert (big.x_t >= 0).all() and (big.x_t < 1).all()


def test_target_does_not_depend_on_which_periodic_image_is_clean():
    process = CartesianVE(50).double()
    x0 = torch.rand(10, 3, dtype=torch.float64)
    t = torch.full((10,), 30)
    kwargs = {"lattice": LATTICE, "num_atoms": torch.tensor([10])}
    a = process.add_noise(x0, t, generator=torch.Generator().manual_seed(3), **kwargs)
    b = process.add_noise(x0 + torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64), t, generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.allclose(a.x_t, b.x_t, atol=1e-9) and torch.allclose(a.target, b.target, atol=1e-9)


def test_loss_is_half_the_squared_norm():
    process = CartesianVE(50)
    noised = process.add_noise(torch.rand(3, 3), torch.full((3,), 10), lattice=LATTICE.float(), num_atoms=torch.tensor([3]))
    prediction = noised.target + torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 4.0]])
    assert torch.allclose(process.loss(prediction, noised), torch.tensor([4.5, 0.0, 12.5]))


def test_langevin_and_posterior_steps_are_the_cartesian_ve_updates_wrapped_into_the_cell():
    process = CartesianVE(50).double()
    x = torch.tensor([[0.1, 0.95, 0.5], [0.02, 0.4, 0.99]], dtype=torch.float64)
    prediction = torch.tensor([[0.3, -0.2, 0.1], [-0.5, 0.4, 0.2]], dtype=torch.float64)
    kwargs = {"lattice": LATTICE, "num_atoms": torch.tensor([2])}
    t, s, h = 20, 12, 0.05
    z = torch.randn(2, 3, dtype=torch.float64)
    sigma_t, sigma_s = float(process.sigmas[t]), float(process.sigmas[s])
    cart = x @ LATTICE[0]
    expected = ((cart + h * prediction / sigma_t + math.sqrt(2 * h) * z) @ torch.linalg.inv(LATTICE[0])) % 1.0
    assert torch.allclose(process.langevin_step(x, t, prediction, h, noise=z, **kwargs), expected, atol=1e-12)
    # posterior mean of VE: x_t + (sigma_t^2 - sigma_s^2) * score; zero noise when s = 0
    mean = cart + (sigma_t**2 - sigma_s**2) * prediction / sigma_t
    std = math.sqrt((sigma_t**2 - sigma_s**2) * sigma_s**2 / sigma_t**2)
    draws = torch.stack([process.reverse_step(x, t, s, prediction, generator=torch.Generator().manual_seed(k), **kwargs)
                         for k in range(2000)])
    unwrapped = ((draws - (mean @ torch.linalg.inv(LATTICE[0]))) + 0.5) % 1.0 - 0.5  # fractional residuals
    residual = unwrapped @ LATTICE[0]
    assert residual.mean(0).abs().max() < 4 * std / math.sqrt(2000)
    assert residual.std(0).sub(std).abs().max() < 0.1 * std
    final = process.reverse_step(x, t, 0, prediction, **kwargs)  # s = 0: Tweedie's x_t + sigma_t^2 score, no noise
    assert torch.allclose(final, ((cart + sigma_t * prediction) @ torch.linalg.inv(LATTICE[0])) % 1.0, atol=1e-12)


def test_type_noise_keeps_the_type_at_small_sigma_and_follows_the_composition_at_large_sigma():
    process = CompositionMixing(50, 0.01, 5.0, num_classes=4)
    composition = torch.tensor([[0.0, 0.7, 0.3, 0.0]])
    x0 = torch.full((20000,), 1)  # hydrogen everywhere
    kwargs = {"composition": composition, "num_atoms": torch.tensor([20000])}
    small = process.add_noise(x0, torch.ones(20000, dtype=torch.long), generator=torch.Generator().manual_seed(0), **kwargs)
    assert (small.x_t == 1).float().mean() > 0.98  # 1 / (1 + 0.01)
    large = process.add_noise(x0, torch.full((20000,), 50), generator=torch.Generator().manual_seed(0), **kwargs)
    frequencies = torch.bincount(large.x_t - 1, minlength=4).double() / 20000
    expected = torch.tensor([1.0, 3.5, 1.5, 0.0], dtype=torch.float64) / 6.0  # (onehot + 5 p) / (1 + 5)
    assert torch.allclose(frequencies, expected, atol=0.01)
    assert isinstance(large, TypeNoised) and torch.allclose(large.sigma, torch.full((20000,), 5.0))


def test_type_loss_is_cross_entropy_over_sigma_and_updates_are_argmax():
    process = CompositionMixing(50, 0.01, 5.0, num_classes=3)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    noised = TypeNoised(torch.tensor([1, 1]), torch.tensor([1, 3]), torch.tensor([0.5, 2.0]))
    ce = -torch.log_softmax(logits, -1)[[0, 1], [0, 2]]
    assert torch.allclose(process.loss(logits, noised), ce / torch.tensor([0.5, 2.0]))
    assert process.reverse_step(torch.tensor([2, 2]), 5, 4, logits).tolist() == [1, 3]
    assert process.corrector_step(torch.tensor([2, 2]), 5, logits).tolist() == [1, 3]


def test_composition_types_round_counts_and_fill_the_rest_from_the_residual():
    composition = torch.tensor([[0.6, 0.4, 0.0], [0.2, 0.2, 0.6]])
    types = composition_types(composition, torch.tensor([5, 4]), torch.Generator().manual_seed(0))
    first, second = types[:5], types[5:]
    assert sorted(first.tolist()) == [1, 1, 1, 2, 2]  # round(3.0), round(2.0)
    # round(0.8)=1, round(0.8)=1, round(2.4)=2: exactly 4
    assert sorted(second.tolist()) == [1, 2, 3, 3]


def test_samplers_see_the_right_capabilities():
    processes = {"frac_coords": CartesianVE(50), "atom_types": CompositionMixing(50)}
    assert role(processes["atom_types"]) == "rule" and role(processes["frac_coords"]) == "continuous"
    for sampler in (AnnealedLangevinSampler, PredictorCorrectorSampler):
        assert sampler.missing(processes) == {}
    assert Sampler.num_training_steps(processes) == 50


@pytest.mark.parametrize("bad", ["lattice", "num_atoms"])
def test_coordinate_calls_need_the_lattice(bad):
    kwargs = {"lattice": LATTICE.float(), "num_atoms": torch.tensor([2])}
    del kwargs[bad]
    with pytest.raises(TypeError, match=bad):
        CartesianVE(50).add_noise(torch.rand(2, 3), torch.tensor([3, 3]), **kwargs)


@pytest.mark.parametrize("bad", ["lattice", "num_atoms"])
def test_every_coordinate_call_that_moves_atoms_names_the_missing_argument(bad):
    kwargs = {"lattice": LATTICE.float(), "num_atoms": torch.tensor([2])}
    del kwargs[bad]
    process, x = CartesianVE(50), torch.rand(2, 3)
    with pytest.raises(TypeError, match=f"missing {bad}"):
        process.conditional_score(x, x, 3, **kwargs)
    with pytest.raises(TypeError, match=f"missing {bad}"):
        process.reverse_step(x, 3, 2, torch.zeros(2, 3), **kwargs)


@pytest.mark.parametrize("bad", ["composition", "num_atoms"])
def test_type_noise_and_the_prior_name_the_missing_argument(bad):
    kwargs = {"composition": torch.tensor([[0.5, 0.5, 0.0]]), "num_atoms": torch.tensor([2])}
    del kwargs[bad]
    process = CompositionMixing(50, num_classes=3)
    with pytest.raises(TypeError, match=f"missing {bad}"):
        process.add_noise(torch.tensor([1, 2]), torch.tensor([3, 3]), **kwargs)
    with pytest.raises(TypeError, match=f"missing {bad}"):
        process.sample_prior((2,), **kwargs)
