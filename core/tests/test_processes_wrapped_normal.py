"""Wrapped normal on the torus: image-sum score and its truncation bound, sigma_norm, targets and reverse steps."""

from __future__ import annotations

import math

import pytest
import torch

from crystalgen.processes import WrappedNormal
from crystalgen.processes.wrapped_normal import (
    images_for,
    sigma_norm,
    truncation_bound,
    wrap_displacement,
    wrapped_normal_score,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def log_wn_long(d: torch.Tensor, sigma: float, images: int = 60) -> torch.Tensor:
    """log WN(d; sigma) from a long image sum around d itself (no wrapping), float64."""
    n = torch.arange(-images, images + 1, dtype=torch.float64)
    y = d[:, None] + n
    return torch.logsumexp(-(y**2) / (2 * sigma**2), -1) - 0.5 * math.log(2 * math.pi * sigma**2)


@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.5, 1.0])
def test_score_matches_finite_differences_of_the_log_density(sigma):
    d = torch.linspace(-2.3, 2.3, 97, dtype=torch.float64)  # also far outside [-1/2, 1/2): periodic
    h = 1e-6 * sigma
    fd = (log_wn_long(d + h, sigma) - log_wn_long(d - h, sigma)) / (2 * h)
    score = wrapped_normal_score(d, sigma, images_for(sigma, 1e-10))
    assert torch.allclose(score, fd, rtol=1e-6, atol=1e-6 / sigma**2)


@pytest.mark.parametrize(("sigma", "images"), [(0.5, 1), (0.5, 2), (0.8, 2), (1.0, 3), (1.5, 4), (0.3, 1)])
def test_truncation_error_is_below_the_stated_bound(sigma, images):
    d = torch.linspace(-0.5, 0.5, 2001, dtype=torch.float64)
    error = (wrapped_normal_score(d, sigma, images) - wrapped_normal_score(d, sigma, 80)).abs().max()
    bound = truncation_bound(sigma, images)
    assert float(error) <= bound
    assert float(error) > 1e-3 * bound or float(error) < 1e-13  # the bound is not vacuous where the error is visible


def test_images_for_meets_the_tolerance():
    for sigma, atol in ((0.5, 1e-8), (0.5, 1e-12), (1.0, 1e-6), (0.05, 1e-8)):
        n = images_for(sigma, atol)
        assert truncation_bound(sigma, n) <= atol and (n == 1 or truncation_bound(sigma, n - 1) > atol)
    assert WrappedNormal(10).images == images_for(0.5, 1e-8)


def test_sigma_norm_matches_monte_carlo_and_small_sigma_limit():
    sigmas = torch.tensor([0.0, 0.005, 0.05, 0.2, 0.5, 1.0], dtype=torch.float64)
    norms = sigma_norm(sigmas, images_for(1.0, 1e-12))
    assert norms[0] == 1
    assert float(norms[1]) == pytest.approx(1 / 0.005**2, rel=1e-12)  # images negligible: E[eps^2] / sigma^2
    eps = torch.randn(100_000, generator=gen(), dtype=torch.float64)
    for sigma, norm in zip(sigmas[2:].tolist(), norms[2:].tolist(), strict=True):
        values = wrapped_normal_score(sigma * eps, sigma, images_for(sigma, 1e-12)) ** 2
        assert norm == pytest.approx(float(values.mean()), abs=4 * float(values.std()) / 100_000**0.5)


def test_schedule_and_prior():
    proc = WrappedNormal(1000)
    assert proc.sigmas[0] == 0 and float(proc.sigmas[1]) == pytest.approx(0.005) and float(proc.sigmas[-1]) == pytest.approx(0.5)
    x = proc.sample_prior((1000, 3), generator=gen())
    assert float(x.min()) >= 0 and float(x.max()) < 1
    custom = WrappedNormal(3, sigmas=[0.1, 0.2, 0.4])
    assert custom.sigmas.tolist() == [0.0, 0.1, 0.2, 0.4]
    with pytest.raises(ValueError, match="3 positive values"):
        WrappedNormal(3, sigmas=[0.1, 0.2])
    with pytest.raises(ValueError, match="prediction"):
        WrappedNormal(3, prediction="eps")


def test_add_noise_wraps_and_targets_the_normalised_score():
    proc = WrappedNormal(100)
    x0 = torch.rand(20_000, 3, generator=gen(1))
    t = torch.randint(1, 101, (20_000,), generator=gen(2))
    noised = proc.add_noise(x0, t, generator=gen(3))
    assert float(noised.x_t.min()) >= 0 and float(noised.x_t.max()) < 1
    sigma = proc.sigmas[t].float()[:, None]
    expected = wrapped_normal_score(noised.x_t - x0, sigma, 10) / proc.sigma_norm[t].sqrt().float()[:, None]
    assert torch.allclose(noised.target, expected, atol=1e-4)
    # the normalisation makes the target unit-variance at every level
    assert float((noised.target**2).mean()) == pytest.approx(1.0, abs=0.03)


def test_reverse_step_is_diffcsps_predictor():
    """x_s = x_t + (s_t^2 - s_s^2) score + sqrt(s_s^2 (s_t^2 - s_s^2) / s_t^2) z, mod 1 (DiffCSP's VE predictor)."""
    proc = WrappedNormal(100)
    x_t, pred = torch.rand(50, 3, generator=gen(1)), torch.randn(50, 3, generator=gen(2))
    t, s = 70, 64
    st, ss = float(proc.sigmas[t]), float(proc.sigmas[s])
    score = pred * proc.sigma_norm[t].sqrt().float()
    z = torch.randn(50, 3, generator=gen(3))
    expected = (x_t + (st**2 - ss**2) * score + math.sqrt(ss**2 * (st**2 - ss**2) / st**2) * z) % 1
    got = proc.reverse_step(x_t, t, s, pred, generator=gen(3))
    assert torch.allclose(wrap_displacement(got - expected), torch.zeros_like(got), atol=1e-5)


def test_tweedie_x0_recovers_a_point_target_on_the_torus():
    """For data at one point x0 the exact score of p_t is the conditional score, and x_t + s^2 score is x0 minus
    the posterior mean image index: exact while the other images are negligible, a compromise between lifts
    for x_t near the antipode of x0 (the documented approximation)."""
    proc = WrappedNormal(100)
    x0 = torch.tensor([[0.02, 0.5, 0.97]]).expand(2000, 3)
    for t in (30, 70):
        x_t = proc.add_noise(x0, torch.full((2000,), t), generator=gen(t)).x_t
        pred = proc.conditional_score(x_t, x0, t) / proc.score_norm(t, x_t)
        error = wrap_displacement(proc.finalize(proc.to_x0(pred, x_t, t)) - x0).abs()
        near = wrap_displacement(x_t - x0).abs() < 0.3
        assert float(error[near].max()) < 1e-4
        assert float(error.mean()) < (1e-5 if t == 30 else 1e-3)


def test_langevin_and_ddim_stay_on_the_torus():
    proc = WrappedNormal(100)
    x, pred = torch.rand(500, 3, generator=gen(1)), 5 * torch.randn(500, 3, generator=gen(2))
    for out in (proc.langevin_step(x, 90, pred, 0.01, generator=gen(3)), proc.ddim_step(x, 90, 10, pred, eta=0.5, generator=gen(4))):
        assert float(out.min()) >= 0 and float(out.max()) < 1
    assert float(proc.finalize(torch.tensor([-1e-12, -0.25, 1.0, 2.5])).max()) < 1


def test_linear_beta_schedule_and_x0_prediction_follow_gemsdiff():
    """sigma_t = sqrt(1 - abar_t) of linear betas (GemsDiff eq. 16), and the x0 target is the lift of x0 nearest
    x_t (the shortest path of eq. 20), from which eps and the posterior follow."""
    proc = WrappedNormal(100, beta_start=1e-6, beta_end=2e-3, prediction="x0")
    betas = torch.linspace(1e-6, 2e-3, 100, dtype=torch.float64)
    assert torch.allclose(proc.sigmas[1:], (1 - torch.cumprod(1 - betas, 0)).sqrt())
    x0 = torch.tensor([[0.01, 0.5, 0.99]] * 2000)
    noised = proc.add_noise(x0, torch.full((2000,), 100), generator=torch.Generator().manual_seed(0))
    assert ((noised.target - noised.x_t).abs() <= 0.5).all()
    assert torch.allclose(torch.remainder(noised.target, 1.0), x0, atol=1e-6)
    # an exact x0 prediction gives eps = (x_t - lift) / s_t, and DDIM to s = 0 lands on x0
    assert torch.allclose(proc.ddim_step(noised.x_t, 100, 0, noised.target), x0, atol=1e-5)
