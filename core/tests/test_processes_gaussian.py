"""VP and VE Gaussian processes: schedules, marginals, conversions, posterior for any s < t, DDIM."""

from __future__ import annotations

import math

import pytest
import torch

from crystalgen.capabilities import VarianceExploding
from crystalgen.processes import VEGaussian, VPGaussian
from crystalgen.processes.schedules import COSINE_BETA_RANGE, linear_betas

N = 50_000  # samples for moment checks: standard errors of about 0.0045 std (mean) and 0.0063 (relative variance)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def exact_prediction(proc, x_t: torch.Tensor, t: int, x0: float) -> torch.Tensor:
    """What a perfect denoiser outputs when the data is the single point x0 (written out per parameterisation)."""
    a, s = float(proc.alphas[t]), float(proc.sigmas[t])
    eps = (x_t - a * x0) / s
    return {"eps": eps, "x0": torch.full_like(x_t, x0), "score": -eps}[proc.prediction]


PROCESSES = [
    pytest.param(lambda: VPGaussian(100, "cosine"), id="vp-cosine"),
    pytest.param(lambda: VPGaussian(100, "linear"), id="vp-linear"),
    pytest.param(lambda: VPGaussian(100, "cosine", prediction="x0"), id="vp-x0"),
    pytest.param(lambda: VPGaussian(100, "cosine", prediction="score"), id="vp-score"),
    pytest.param(lambda: VEGaussian(100, 0.01, 10.0), id="ve-score"),
    pytest.param(lambda: VEGaussian(100, 0.01, 10.0, prediction="eps"), id="ve-eps"),
]


def test_cosine_schedule_follows_nichol_dhariwal():
    proc = VPGaussian(1000, "cosine")
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = proc.betas
    assert betas[0] == 0 and bool(((betas[1:] >= COSINE_BETA_RANGE[0]) & (betas[1:] <= COSINE_BETA_RANGE[1])).all())
    for t in (200, 500, 800):  # unclipped betas there: 1 - abar_t / abar_{t-1} of the cosine formula
        assert float(betas[t]) == pytest.approx(1 - f(t) / f(t - 1), rel=1e-10)
    assert torch.allclose(proc.alpha_bars, torch.cumprod(1 - betas, 0))
    # the clipping only lifts a few early betas from below 1e-4: abar stays within 1 % of f(t)/f(0) up to t = 900
    for t in (1, 10, 100, 500, 900):
        assert float(proc.alpha_bars[t]) == pytest.approx(f(t) / f(0), rel=1e-2)
    assert float(proc.alpha_bars[-1]) < 1e-6


def test_linear_schedule_scales_with_T():
    assert float(linear_betas(1000)[1]) == pytest.approx(1e-4) and float(linear_betas(1000)[-1]) == pytest.approx(0.02)
    assert float(linear_betas(100)[-1]) == pytest.approx(0.2)
    assert float(VPGaussian(100, "linear").alpha_bars[-1]) < 1e-4


def test_ve_sigmas_are_geometric():
    proc = VEGaussian(50, 0.01, 10.0)
    s = proc.sigmas
    assert s[0] == 0 and float(s[1]) == pytest.approx(0.01) and float(s[-1]) == pytest.approx(10.0)
    ratios = s[2:] / s[1:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))
    assert bool((proc.alphas == 1).all()) and VarianceExploding in proc.capabilities


@pytest.mark.parametrize("make", PROCESSES[:2] + PROCESSES[4:5])
def test_add_noise_has_the_stated_marginal(make):
    proc = make()
    x0 = torch.full((N, 1), 0.7)
    for t in (1, 37, 100):
        x_t = proc.add_noise(x0, torch.full((N,), t), generator=gen(t)).x_t
        a, s = float(proc.alphas[t]), float(proc.sigmas[t])
        assert float(x_t.mean()) == pytest.approx(a * 0.7, abs=5 * s / N**0.5)
        assert float(x_t.std()) == pytest.approx(s, rel=0.015)


@pytest.mark.parametrize("make", PROCESSES)
def test_add_noise_target_is_the_exact_prediction(make):
    proc = make()
    x0 = torch.full((1000, 2), 0.7)
    for t in (1, 37, 100):
        noised = proc.add_noise(x0, torch.full((1000,), t), generator=gen(t))
        s = float(proc.sigmas[t])
        assert torch.allclose(noised.target, exact_prediction(proc, noised.x_t, t, 0.7), atol=1e-5 * max(1.0, s))
        assert torch.all(proc.loss(noised.target, noised) == 0)
        assert torch.allclose(proc.loss(noised.target + 0.5, noised), torch.full((1000,), 0.25))


def test_add_noise_uses_one_level_per_row():
    proc = VPGaussian(100)
    t = torch.tensor([1, 50, 100])
    noised = proc.add_noise(torch.zeros(3, 4), t, generator=gen())
    assert torch.allclose(noised.x_t, proc.sigmas[t].float()[:, None] * noised.target)


@pytest.mark.parametrize("make", PROCESSES)
def test_conversions_round_trip(make):
    proc = make()
    t = 40
    x_t, pred = torch.randn(64, 3, generator=gen(1)), torch.randn(64, 3, generator=gen(2))
    a, s = float(proc.alphas[t]), float(proc.sigmas[t])
    eps, x0, score = proc.to_eps(pred, x_t, t), proc.to_x0(pred, x_t, t), proc.score(pred, x_t, t)
    assert torch.allclose(x_t, a * x0 + s * eps, atol=1e-5)
    assert torch.allclose(score, -eps / s, atol=1e-5)
    # the same denoiser output expressed in the other parameterisations gives the same eps, x0 and score
    for other, value in (("eps", eps), ("x0", x0), ("score", s * score)):
        twin = type(proc).__new__(type(proc))
        twin.__dict__.update(proc.__dict__)
        twin.prediction = other
        assert torch.allclose(twin.to_eps(value, x_t, t), eps, atol=1e-4)
        assert torch.allclose(twin.to_x0(value, x_t, t), x0, atol=1e-4)
        assert torch.allclose(twin.score(value, x_t, t), score, atol=1e-4)


@pytest.mark.parametrize("make", PROCESSES)
def test_clip_x0_clamps_the_clean_estimate_and_nothing_else(make):
    proc = make()
    t = 90
    x_t, pred = torch.randn(64, 3, generator=gen(3)), 5 * torch.randn(64, 3, generator=gen(4))
    low, high = torch.tensor([-1.0, -0.5, -2.0]), torch.tensor([1.0, 0.5, 2.0])
    x0 = proc.to_x0(pred, x_t, t)
    assert bool(((x0 < low) | (x0 > high)).any())  # the case is not vacuous
    clipped = proc.clip_x0(pred, x_t, t, low, high)
    assert torch.allclose(proc.to_x0(clipped, x_t, t), torch.maximum(torch.minimum(x0, high), low), atol=1e-4)
    inside = (x0 >= low) & (x0 <= high)
    assert torch.allclose(clipped[inside], pred[inside], atol=1e-4)
    unbounded = proc.clip_x0(pred, x_t, t, torch.tensor(-math.inf), torch.tensor(math.inf))
    assert torch.allclose(unbounded, pred, atol=1e-4)


@pytest.mark.parametrize("make", PROCESSES)
def test_posterior_any_s_matches_bayes_and_composes(make):
    """q(x_s | x_t, x0) for a point x0: one skip t -> s and two steps t -> u -> s both have the law given by
    Bayes' rule from q(x_s | x0) and the chain's q(x_t | x_s), written here in precision form."""
    proc = make()
    t, u, s, x0 = 80, 45, 20, 0.3
    a_t, s_t = float(proc.alphas[t]), float(proc.sigmas[t])
    a_s, s_s = float(proc.alphas[s]), float(proc.sigmas[s])
    x_t = torch.full((N, 1), a_t * x0 + 0.8 * s_t)
    a_ts = a_t / a_s
    var_ts = s_t**2 - a_ts**2 * s_s**2
    precision = 1 / s_s**2 + a_ts**2 / var_ts
    mean = (a_s * x0 / s_s**2 + a_ts * float(x_t[0]) / var_ts) / precision

    one = proc.reverse_step(x_t, t, s, exact_prediction(proc, x_t, t, x0), generator=gen(1))
    x_u = proc.reverse_step(x_t, t, u, exact_prediction(proc, x_t, t, x0), generator=gen(2))
    two = proc.reverse_step(x_u, u, s, exact_prediction(proc, x_u, u, x0), generator=gen(3))
    for sample in (one, two):
        assert float(sample.mean()) == pytest.approx(mean, abs=5 / (precision * N) ** 0.5)
        assert float(sample.var()) == pytest.approx(1 / precision, rel=0.02)


@pytest.mark.parametrize("make", PROCESSES)
def test_reverse_step_to_zero_returns_x0_hat(make):
    proc = make()
    x_t = torch.randn(10, 2, generator=gen())
    pred = exact_prediction(proc, x_t, 30, 1.5)
    assert torch.allclose(proc.reverse_step(x_t, 30, 0, pred, generator=gen()), torch.full_like(x_t, 1.5), atol=1e-4)


@pytest.mark.parametrize("make", PROCESSES)
def test_ddim_with_eta_one_is_the_ancestral_step(make):
    proc = make()
    x_t, pred = torch.randn(100, 3, generator=gen(1)), torch.randn(100, 3, generator=gen(2))
    ancestral = proc.reverse_step(x_t, 60, 35, pred, generator=gen(3))
    ddim = proc.ddim_step(x_t, 60, 35, pred, eta=1.0, generator=gen(3))
    assert torch.allclose(ancestral, ddim, atol=1e-5)


@pytest.mark.parametrize("make", PROCESSES)
def test_ddim_is_deterministic_and_keeps_x0_and_eps(make):
    """eta = 0: x_s = a_s x0_hat + s_s eps_hat with the x0_hat and eps_hat of x_t (Song et al. eq. 12)."""
    proc = make()
    x_t, pred = torch.randn(100, 3, generator=gen(1)), torch.randn(100, 3, generator=gen(2))
    x_s = proc.ddim_step(x_t, 60, 35, pred)
    a_s, s_s = float(proc.alphas[35]), float(proc.sigmas[35])
    assert torch.allclose(x_s, a_s * proc.to_x0(pred, x_t, 60) + s_s * proc.to_eps(pred, x_t, 60), atol=1e-4)


def test_langevin_step_uses_the_score():
    proc = VEGaussian(10, 0.1, 1.0)
    x, pred, z = torch.randn(5, 2, generator=gen(1)), torch.randn(5, 2, generator=gen(2)), torch.randn(5, 2, generator=gen(3))
    out = proc.langevin_step(x, 4, pred, 0.01, noise=z)
    assert torch.allclose(out, x + 0.01 * proc.score(pred, x, 4) + math.sqrt(0.02) * z)


def test_prior_matches_the_last_marginal():
    for proc in (VPGaussian(100), VEGaussian(100, 0.01, 10.0)):
        x = proc.sample_prior((N,), generator=gen())
        assert float(x.std()) == pytest.approx(float(proc.sigmas[-1]), rel=0.01)


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="prediction"):
        VPGaussian(10, prediction="logits")
    with pytest.raises(ValueError, match="schedule"):
        VPGaussian(10, "quadratic")
    with pytest.raises(ValueError, match="0 <= s < t"):
        VPGaussian(10).reverse_step(torch.zeros(2), 3, 3, torch.zeros(2))
