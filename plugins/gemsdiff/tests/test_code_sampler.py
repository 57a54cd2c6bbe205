"""gemsdiff_code, the official code's reverse update: on the torus it jumps to the clean estimate and forgets x_t, on
gl(3) it keeps the posterior mean with the chain's one-step variance; ``code_for`` gives either difference alone."""

from __future__ import annotations

import pytest
import torch
from gemsdiff_testdata import small_config
from pymatgen.core import Composition

from crystalgen import SampleRequest
from crystalgen_gemsdiff.code_sampler import GemsDiffCodeSampler, step_variance
from crystalgen_gemsdiff.model import GemsDiff

T, S = 50, 49
DRAWS = 20_000


@pytest.fixture(scope="module")
def processes():
    return GemsDiff(small_config().model).processes


def wrapped(x: torch.Tensor) -> torch.Tensor:
    """Differences on the torus, in [-0.5, 0.5)."""
    return torch.remainder(x + 0.5, 1.0) - 0.5


def test_on_the_torus_the_step_forgets_x_t_and_spreads_around_the_clean_estimate(processes):
    torus = processes["frac_coords"]
    x0_hat = torch.full((DRAWS, 3), 0.3)
    steps = [GemsDiffCodeSampler.code_step(torus, x_t, T, S, x0_hat, {}, torch.Generator().manual_seed(0))
             for x_t in (torch.full((DRAWS, 3), 0.7), torch.full((DRAWS, 3), 0.05))]
    assert torch.equal(steps[0], steps[1])
    spread = wrapped(steps[0] - x0_hat)
    assert abs(spread.mean().item()) < 0.01 * spread.std().item() + 1e-4
    assert spread.std().item() == pytest.approx(step_variance(torus, S) ** 0.5, rel=0.02)


@pytest.mark.parametrize("t, s", [(50, 49), (50, 10)])
def test_on_gl3_the_step_keeps_the_posterior_mean_with_the_one_step_variance(processes, t, s):
    """For a variance-preserving process the one-step variance is beta_s = 1 - abar_s / abar_(s-1); the exact
    posterior step (``reverse_step``) has the same mean and the posterior's variance: nearly beta_s on the full grid
    (50 -> 49), far larger on a coarse one (50 -> 10), where the code keeps the one-step variance."""
    lattice = processes["lattice"]
    (a_t, s_t), (a_s, s_s), (a_prev, _) = lattice.scales(t), lattice.scales(s), lattice.scales(s - 1)
    beta = step_variance(lattice, s)
    assert beta == pytest.approx(1 - a_s**2 / a_prev**2, rel=1e-9)
    posterior_var = (s_t**2 - (a_t / a_s) ** 2 * s_s**2) * s_s**2 / s_t**2
    x_t = torch.randn(1, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64).expand(DRAWS, 9)
    prediction = torch.randn(1, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64).expand(DRAWS, 9)
    code = GemsDiffCodeSampler.code_step(lattice, x_t, t, s, prediction, {}, torch.Generator().manual_seed(3))
    exact = lattice.reverse_step(x_t, t, s, prediction, generator=torch.Generator().manual_seed(4))
    tolerance = 5 * (max(beta, posterior_var) / DRAWS) ** 0.5
    assert torch.allclose(code.mean(0), exact.mean(0), atol=tolerance)
    assert code.std(0).mean().item() == pytest.approx(beta**0.5, rel=0.02)
    assert exact.std(0).mean().item() == pytest.approx(posterior_var**0.5, rel=0.02)
    if s < t - 1:
        assert posterior_var > 2 * beta


def sample(model: GemsDiff, sampler: GemsDiffCodeSampler, composition: str = "SrTiO3", n: int = 2) -> list:
    condition = model.prepare_sampling(SampleRequest(n, composition=composition))
    return model.decode(sampler.run(model, condition, generator=torch.Generator().manual_seed(0)), condition)


@pytest.mark.parametrize("code_for", [None, "frac_coords", ["lattice"]])
def test_every_variant_samples_crystals_of_the_requested_composition(trained, code_for):
    decoded = sample(trained[0], GemsDiffCodeSampler(steps=10, code_for=code_for))
    assert [d.structure.composition for d in decoded if d.ok] == [Composition("SrTiO3")] * 2


def test_code_for_chooses_which_variables_take_the_code_update(trained, monkeypatch):
    model = trained[0]
    names = {id(proc): var for var, proc in model.processes.items()}
    updated: set[str] = set()
    code_step = GemsDiffCodeSampler.code_step

    def spy(proc, *args):
        updated.add(names[id(proc)])
        return code_step(proc, *args)

    monkeypatch.setattr(GemsDiffCodeSampler, "code_step", staticmethod(spy))
    for code_for, expected in [(None, {"frac_coords", "lattice"}), ("frac_coords", {"frac_coords"}),
                               (["lattice"], {"lattice"})]:
        updated.clear()
        sample(model, GemsDiffCodeSampler(steps=3, code_for=code_for), n=1)
        assert updated == expected


def test_naming_every_variable_is_the_default_draw_for_draw(trained):
    model = trained[0]
    default = sample(model, GemsDiffCodeSampler(steps=10))
    named = sample(model, GemsDiffCodeSampler(steps=10, code_for=["frac_coords", "lattice"]))
    assert all(d.ok for d in default)
    assert [d.structure for d in default] == [d.structure for d in named]


def test_an_unknown_variable_is_refused_with_the_model_s_variables(trained):
    with pytest.raises(ValueError, match=r"code_for=\['frac'\] are not continuous variables.*frac_coords, lattice"):
        sample(trained[0], GemsDiffCodeSampler(code_for="frac"))
