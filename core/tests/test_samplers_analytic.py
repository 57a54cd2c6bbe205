"""Network-free proof that the samplers and processes are right: exact denoisers for known targets
(crystalgen.samplers.analytic) must make every compatible sampler reproduce the target.

Targets: a 2-D Gaussian mixture (R^d, under VP and VE), a 2-D wrapped normal mixture on the torus, and two
independent categorical axes over 4 classes driven by per-row marginals (two groups of rows, with zero-mass
classes). One joint model per family, so each run also checks that variables of different kinds sampled
together do not disturb each other.

Stated tolerances: 4 standard errors of the statistic for ROWS = 3000 samples of the exact target (computed
below from its moments) plus the sampler's own discretisation bias at these settings, measured with 30,000 samples
and listed in BIAS (0 where none was measurable):
    Gaussian mixture: mean per dimension, variance per dimension (relative), weight of the minor mode
    torus:            E[exp(2 pi i k x)] for k = 1, 2 per dimension (complex error, 3.5 standard errors)
    categorical:      frequency of every class per axis and row group (reported as total variation)
Known biases: the ancestral step draws a Gaussian around E[x0 | x_t], which at T = 100 loses up to 7 % of the
variance of the narrow mode (VE) and 5 % (VP); DDIM takes 100 of T = 1000 levels (10x fewer steps) and loses
about 2.5 %; predictor-corrector up to 3.5 %. Annealed Langevin is unadjusted: with 25 levels x 20 steps at
step_lr / sigma_min^2 = 0.2 it does not equilibrate while the modes separate, so the minor mode keeps about 3 %
too much weight and the variance is up to 10 % high (the slow case with 50 x 100 steps at 0.1 halves this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import pytest
import torch

from crystalgen.processes import D3PMMarginal, VEGaussian, VPGaussian, WrappedNormal
from crystalgen.samplers import AncestralSampler, AnnealedLangevinSampler, DDIMSampler, PredictorCorrectorSampler
from crystalgen.samplers.analytic import AnalyticModel, Categorical, GaussianMixture, WrappedNormalMixture

ROWS = 3000
# centred (mean 0) so that the VE prior N(0, sigma_max^2) has the right mean; modes 6 and 10 stds apart
MIXTURE = GaussianMixture([0.3, 0.7], [[-2.1, -0.7], [0.9, 0.3]], [0.5, 0.3])
BOUNDARY = -0.6  # on dimension 0, between the modes
TORUS = WrappedNormalMixture([0.4, 0.6], [[0.1, 0.5], [0.6, 0.95]], [0.05, 0.1])
CATEGORIES = Categorical(torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.1, 0.1, 0.1, 0.7]]))


def row_marginals(rows: int) -> torch.Tensor:
    """Per-row marginals of the categorical variable, (rows, 2 axes, 4 classes): two groups of rows."""
    first = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.4, 0.6, 0.0, 0.0]])
    second = torch.tensor([[0.7, 0.1, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4]])
    return torch.stack([first if i < rows // 2 else second for i in range(rows)])


@dataclass(frozen=True)
class Bias:
    """Allowances for a sampler's discretisation error, added to the statistical tolerance."""

    mean: float = 0.0
    var_rel: float = 0.0
    weight: float = 0.0
    trig: float = 0.0
    freq: float = 0.0


ANCESTRAL, DDIM, PC = Bias(mean=0.02, var_rel=0.08), Bias(mean=0.02, var_rel=0.03), Bias(mean=0.02, var_rel=0.04)
LANGEVIN = Bias(mean=0.12, var_rel=0.10, weight=0.04, trig=0.01)


def vp_model(T: int, schedule: str = "cosine", prediction: str = "eps") -> AnalyticModel:
    return AnalyticModel({"x": VPGaussian(T, schedule, prediction), "c": D3PMMarginal(T, 4)}, {"x": MIXTURE, "c": CATEGORIES})


def ve_model(T: int) -> AnalyticModel:
    processes = {"x": VEGaussian(T, 0.005, 20.0), "f": WrappedNormal(T), "c": D3PMMarginal(T, 4)}
    return AnalyticModel(processes, {"x": MIXTURE, "f": TORUS, "c": CATEGORIES})


CASES = [
    pytest.param(lambda: vp_model(100), AncestralSampler, {}, ANCESTRAL, id="ancestral-vp"),
    pytest.param(lambda: vp_model(100, "linear"), PredictorCorrectorSampler, {}, PC, id="pc-vp-linear"),
    pytest.param(lambda: vp_model(1000, prediction="x0"), DDIMSampler, {"steps": 100}, DDIM, id="ddim-vp-x0-100of1000"),
    pytest.param(lambda: ve_model(100), AncestralSampler, {}, ANCESTRAL, id="ancestral-ve-torus"),
    pytest.param(lambda: ve_model(100), PredictorCorrectorSampler, {}, PC, id="pc-ve-torus"),
    pytest.param(lambda: ve_model(1000), DDIMSampler, {"steps": 100}, DDIM, id="ddim-ve-torus-100of1000"),
    pytest.param(lambda: ve_model(25), AnnealedLangevinSampler, {"n_steps_each": 20, "step_lr": 5e-6}, LANGEVIN, id="langevin-ve-torus"),
    pytest.param(lambda: ve_model(50), AnnealedLangevinSampler, {"n_steps_each": 100, "step_lr": 2.5e-6},
                 Bias(mean=0.06, var_rel=0.05, weight=0.02, trig=0.01), id="langevin-ve-torus-5000-calls", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("make_model", "sampler_class", "options", "bias"), CASES)
def test_sampler_recovers_the_targets(make_model, sampler_class, options, bias):
    model = make_model()
    condition = model.condition(ROWS, process_args={"c": {"marginal": row_marginals(ROWS)}})
    state = sampler_class(**options).run(model, condition, generator=torch.Generator().manual_seed(0))
    check_mixture(state["x"], bias)
    check_categories(state["c"], bias)
    if "f" in state:
        check_torus(state["f"], bias)


def check_mixture(x: torch.Tensor, bias: Bias) -> None:
    x, n = x.double(), len(x)
    mean, var = MIXTURE.mean(), MIXTURE.variance()
    # fourth central moment per dimension, for the standard error of the sample variance: (mu4 - var^2) / n
    d = MIXTURE.means - mean
    mu4 = MIXTURE.weights @ (d**4 + 6 * d**2 * MIXTURE.vars + 3 * MIXTURE.vars**2)
    assert bool(((x.mean(0) - mean).abs() <= 4 * (var / n).sqrt() + bias.mean).all()), x.mean(0) - mean
    var_tol = 4 * ((mu4 - var**2) / n).sqrt() / var + bias.var_rel
    assert bool(((x.var(0) / var - 1).abs() <= var_tol).all()), (x.var(0) / var, var_tol)
    # fraction left of the boundary, exactly: w0 Phi((b - mu0)/sd0) + w1 Phi((b - mu1)/sd1)
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    exact = sum(float(w) * phi((BOUNDARY - float(mu[0])) / float(v[0]) ** 0.5)
                for w, mu, v in zip(MIXTURE.weights, MIXTURE.means, MIXTURE.vars, strict=True))
    left = float((x[:, 0] < BOUNDARY).double().mean())
    assert abs(left - exact) <= 4 * (exact * (1 - exact) / n) ** 0.5 + bias.weight, (left, exact)


def check_torus(x: torch.Tensor, bias: Bias) -> None:
    assert float(x.min()) >= 0 and float(x.max()) < 1
    for k in (1, 2):
        exact = TORUS.trig_moment(k)
        empirical = torch.exp(2j * math.pi * k * x.double()).mean(0)
        tol = 3.5 * ((1 - exact.abs() ** 2) / len(x)).sqrt() + bias.trig  # Var(cos) + Var(sin) = 1 - |m_k|^2
        assert bool(((empirical - exact).abs() <= tol).all()), (k, empirical, exact)


def check_categories(x: torch.Tensor, bias: Bias) -> None:
    p = CATEGORIES.probs
    for group in (slice(0, ROWS // 2), slice(ROWS // 2, ROWS)):
        freq = torch.nn.functional.one_hot(x[group], 4).double().mean(0)  # (axes, K)
        tol = 4 * (p * (1 - p) / (ROWS // 2)).sqrt() + bias.freq
        assert bool(((freq - p).abs() <= tol).all()), (freq, p)
        assert bool((freq[p == 0] == 0).all())  # a class the target never has is never produced


def test_categorical_ddim_is_exact_with_ten_times_fewer_steps():
    """With the exact p(x0 | x_t), the posterior q(x_s | x_t) is exact for any skip: 10 of 100 levels suffice."""
    model = AnalyticModel({"c": D3PMMarginal(100, 4)}, {"c": CATEGORIES})
    condition = model.condition(ROWS, process_args={"c": {"marginal": row_marginals(ROWS)}})
    state = DDIMSampler(steps=10).run(model, condition, generator=torch.Generator().manual_seed(1))
    check_categories(state["c"], Bias())


@pytest.mark.parametrize("make", [lambda: VPGaussian(100), lambda: VEGaussian(100, 0.01, 20.0)], ids=["vp", "ve"])
def test_ddim_with_ten_steps_has_its_closed_form_law(make):
    """For a Gaussian target N(mu, v) and the exact denoiser, every DDIM step is affine in x, so the law of the
    output is known exactly; the sampler must match it (this pins the update, including its known shrinkage of
    the variance with few steps: the output variance here is 19 % (VP) / 13 % (VE) below v)."""
    proc = make()
    mu, v = 0.5, 0.09
    model = AnalyticModel({"x": proc}, {"x": GaussianMixture([1.0], [[mu]], [v**0.5])})
    rows = 20_000
    out = DDIMSampler(steps=10).run(model, model.condition(rows), generator=torch.Generator().manual_seed(2))["x"].double()
    mean, var = 0.0, float(proc.sigmas[-1]) ** 2  # the prior N(0, s_T^2)
    grid = list(range(100, -1, -10))
    for t, s in pairwise(grid):
        a_t, s_t, a_s, s_s = (float(proc.alphas[t]), float(proc.sigmas[t]), float(proc.alphas[s]), float(proc.sigmas[s]))
        c = a_t * v / (a_t**2 * v + s_t**2)  # x0_hat = mu + c (x - a_t mu)
        # x_s = a_s x0_hat + s_s (x - a_t x0_hat) / s_t = A x + B
        A = (a_s - s_s * a_t / s_t) * c + s_s / s_t
        B = (a_s - s_s * a_t / s_t) * mu * (1 - c * a_t)
        mean, var = A * mean + B, A**2 * var
    assert float(out.mean()) == pytest.approx(mean, abs=4 * (var / rows) ** 0.5)
    assert float(out.var()) == pytest.approx(var, rel=4 * (2 / rows) ** 0.5)
    assert var < 0.9 * v  # few-step DDIM under-disperses: the reason the mixture test uses 100 of 1000 levels


@pytest.mark.parametrize("final_denoise", [False, True])
def test_annealed_langevin_has_its_closed_form_law(final_denoise):
    """For a Gaussian target N(mu, v) under VE, p_t = N(mu, v + sigma_t^2) and each Langevin step is affine:
    m <- m - h (m - mu) / V_t, var <- (1 - h / V_t)^2 var + 2h with h = step_lr (sigma_t / sigma_1)^2. The
    sampler must match the propagated law (this pins the level order, step sizes and step count)."""
    proc = VEGaussian(20, 0.05, 5.0)
    mu, v, step_lr, n_each = 0.5, 0.09, 2e-4, 5
    model = AnalyticModel({"x": proc}, {"x": GaussianMixture([1.0], [[mu]], [v**0.5])})
    sampler = AnnealedLangevinSampler(n_steps_each=n_each, step_lr=step_lr, final_denoise=final_denoise)
    rows = 20_000
    out = sampler.run(model, model.condition(rows), generator=torch.Generator().manual_seed(3))["x"].double()
    sigma = proc.sigmas.tolist()
    mean, var = 0.0, sigma[-1] ** 2
    for t in range(20, 0, -1):
        V, h = v + sigma[t] ** 2, step_lr * (sigma[t] / sigma[1]) ** 2
        for _ in range(n_each):
            mean, var = mean - h * (mean - mu) / V, (1 - h / V) ** 2 * var + 2 * h
    if final_denoise:  # Tweedie at level 1: x0_hat = mu + v / (v + sigma_1^2) (x - mu)
        c = v / (v + sigma[1] ** 2)
        mean, var = mu + c * (mean - mu), c**2 * var
    assert float(out.mean()) == pytest.approx(mean, abs=4 * (var / rows) ** 0.5)
    assert float(out.var()) == pytest.approx(var, rel=4 * (2 / rows) ** 0.5)


def test_predictor_corrector_with_step_lr_has_its_closed_form_law():
    """DiffCSP/SymmCD-style PC on a Gaussian target under VE: corrector steps with h = step_lr (s_t / s_1)^2, then
    the VE posterior predictor x_s = x_t + (s_t^2 - s_s^2) score + sqrt(s_s^2 (s_t^2 - s_s^2) / s_t^2) z; all affine."""
    proc = VEGaussian(20, 0.05, 5.0)
    mu, v, step_lr, n_corrector = -0.3, 0.04, 1e-3, 2
    model = AnalyticModel({"x": proc}, {"x": GaussianMixture([1.0], [[mu]], [v**0.5])})
    rows = 20_000
    sampler = PredictorCorrectorSampler(n_corrector=n_corrector, step_lr=step_lr)
    out = sampler.run(model, model.condition(rows), generator=torch.Generator().manual_seed(4))["x"].double()
    sigma = proc.sigmas.tolist()
    mean, var = 0.0, sigma[-1] ** 2
    for t in range(20, 0, -1):
        V, h = v + sigma[t] ** 2, step_lr * (sigma[t] / sigma[1]) ** 2
        for _ in range(n_corrector):
            mean, var = mean - h * (mean - mu) / V, (1 - h / V) ** 2 * var + 2 * h
        jump = sigma[t] ** 2 - sigma[t - 1] ** 2
        A = 1 - jump / V
        mean, var = A * mean + jump * mu / V, A**2 * var + sigma[t - 1] ** 2 * jump / sigma[t] ** 2
    assert float(out.mean()) == pytest.approx(mean, abs=4 * (var / rows) ** 0.5)
    assert float(out.var()) == pytest.approx(var, rel=4 * (2 / rows) ** 0.5)
