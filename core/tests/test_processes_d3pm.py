"""Marginal D3PM: forward marginals, the posterior for any s < t against brute-force Bayes, zero-probability
classes, per-row marginals over several axes, loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crystalgen.processes import D3PMMarginal

M = torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64)  # a class the marginal never produces


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def step_matrices(proc: D3PMMarginal, m: torch.Tensor) -> list[torch.Tensor]:
    """One-step Q_u = alpha_u I + (1 - alpha_u) 1 m^T for u = 1..T, alpha_u = abar_u / abar_{u-1}."""
    K = len(m)
    abar = proc.alpha_bars
    return [None] + [(abar[u] / abar[u - 1]) * torch.eye(K, dtype=torch.float64) + (1 - abar[u] / abar[u - 1]) * m[None, :]
                     for u in range(1, proc.num_steps + 1)]


def product(mats: list[torch.Tensor], K: int) -> torch.Tensor:
    out = torch.eye(K, dtype=torch.float64)
    for q in mats:
        out = out @ q
    return out


def bayes(proc: D3PMMarginal, m: torch.Tensor, t: int, s: int, j: int, p0: torch.Tensor) -> torch.Tensor:
    """p(x_s | x_t = j) = sum_i p0_i q(x_s | x_t = j, x0 = i) by brute force from products of one-step matrices,
    with p0 restricted to the x0 that can produce j."""
    K = len(m)
    q = step_matrices(proc, m)
    qbar_s, qbar_ts = product(q[1:s + 1], K), product(q[s + 1:t + 1], K)
    out = torch.zeros(K, dtype=torch.float64)
    weight = torch.zeros(K, dtype=torch.float64)
    for i in range(K):
        joint = qbar_s[i, :] * qbar_ts[:, j]  # q(x_s = k, x_t = j | x0 = i)
        if joint.sum() > 0:
            weight[i] = p0[i]
            out += p0[i] * joint / joint.sum()
    return out / weight.sum()


@pytest.mark.parametrize(("t", "s"), [(10, 9), (10, 0), (7, 3), (10, 1), (1, 0)])
def test_posterior_with_exact_x0_is_bayes_rule(t, s):
    proc = D3PMMarginal(10, 4, marginal=M)
    for i in range(4):
        for j in range(4):
            if bayes(proc, M, t, s, j, F.one_hot(torch.tensor(i), 4).double()).isnan().any():
                continue  # x0 = i cannot produce x_t = j
            x0_probs = F.one_hot(torch.tensor([i]), 4).double()
            got = proc.posterior(torch.tensor([j]), t, s, x0_probs)[0]
            assert torch.allclose(got, bayes(proc, M, t, s, j, x0_probs[0]), atol=1e-12), (i, j)


@pytest.mark.parametrize(("t", "s"), [(10, 9), (10, 4), (6, 0)])
def test_posterior_marginalises_over_the_predicted_x0(t, s):
    proc = D3PMMarginal(10, 4, marginal=M)
    p0 = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    for j in range(4):
        got = proc.posterior(torch.tensor([j]), t, s, p0[None])[0]
        assert torch.allclose(got, bayes(proc, M, t, s, j, p0), atol=1e-12)
    # a class with zero marginal is reached only from itself: impossible when p(x0) gives it no mass
    without = torch.tensor([[0.2, 0.3, 0.5, 0.0]], dtype=torch.float64)
    assert bool((proc.posterior(torch.arange(3), t, s, without.expand(3, 4))[:, 3] == 0).all())


def test_x0_that_cannot_produce_x_t_is_dropped_and_a_stranded_prediction_falls_back():
    proc = D3PMMarginal(10, 4, marginal=M)
    # x_t = 3 has zero marginal: only x0 = 3 can produce it, whatever the prediction says
    stranded = torch.tensor([[0.7, 0.3, 0.0, 0.0]], dtype=torch.float64)
    got = proc.posterior(torch.tensor([3]), 8, 2, stranded)[0]
    assert torch.allclose(got, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64))
    mixed = torch.tensor([[0.7, 0.0, 0.0, 0.3]], dtype=torch.float64)
    assert torch.allclose(proc.posterior(torch.tensor([3]), 8, 2, mixed)[0], got)


def test_two_posterior_steps_compose_to_one_skip():
    """sum_k q(x_u = k | x_t, x0) q(x_s | x_u = k, x0) = q(x_s | x_t, x0) for a known x0 (the chain is Markov)."""
    proc = D3PMMarginal(20, 4, marginal=M)
    t, u, s = 17, 9, 3
    for i in range(3):
        x0 = F.one_hot(torch.tensor([i]), 4).double()
        for j in range(3):
            via = sum(proc.posterior(torch.tensor([j]), t, u, x0)[0, k] * proc.posterior(torch.tensor([k]), u, s, x0)[0]
                      for k in range(4))
            assert torch.allclose(via, proc.posterior(torch.tensor([j]), t, s, x0)[0], atol=1e-12)


def test_per_row_marginals_over_axes_give_distributions():
    """SymmCD's site symmetries: 15 axes x 13 classes with a marginal per row (its space group), many zeros."""
    proc = D3PMMarginal(1000, 13)
    rows = 64
    raw = torch.rand(rows, 15, 13, generator=gen(1)) * (torch.rand(rows, 15, 13, generator=gen(2)) > 0.6)
    raw[..., 0] += 0.1  # every axis keeps class 0 possible
    m = raw / raw.sum(-1, keepdim=True)
    x_t = proc.sample_prior((rows, 15), marginal=m, generator=gen(3))
    assert bool((torch.gather(m, -1, x_t[..., None]) > 0).all())  # the prior never draws a zero-marginal class
    logits = torch.randn(rows, 15, 13, generator=gen(4))
    for t, s in ((1000, 999), (1000, 500), (10, 0), (3, 1)):
        post = proc.posterior(x_t, t, s, logits.softmax(-1), marginal=m)
        assert post.shape == (rows, 15, 13)
        assert bool((post >= 0).all()) and torch.allclose(post.sum(-1), torch.ones(rows, 15, dtype=torch.float64))
        x_t = proc.reverse_step(x_t, t, s, logits, marginal=m, generator=gen(t))
        assert x_t.shape == (rows, 15) and x_t.dtype == torch.long


def test_add_noise_and_prior_follow_the_marginal():
    proc = D3PMMarginal(50, 4, marginal=M)
    n = 40_000
    for t in (5, 30, 50):
        x_t = proc.add_noise(torch.full((n,), 1), torch.full((n,), t), generator=gen(t)).x_t
        abar = float(proc.alpha_bars[t])
        expected = abar * F.one_hot(torch.tensor(1), 4).double() + (1 - abar) * M
        assert torch.allclose(torch.bincount(x_t, minlength=4).double() / n, expected, atol=0.01)
    prior = proc.sample_prior((n,), generator=gen())
    assert torch.allclose(torch.bincount(prior, minlength=4).double() / n, M, atol=0.01)
    other = torch.tensor([0.0, 0.0, 0.0, 1.0])  # the call's marginal replaces the buffer
    assert bool((proc.sample_prior((100,), marginal=other, generator=gen()) == 3).all())


def test_final_step_samples_the_predicted_x0():
    proc = D3PMMarginal(10, 4, marginal=M)
    logits = torch.log(torch.tensor([0.25, 0.25, 0.5, 1e-30])).expand(30_000, 4)
    x = proc.reverse_step(torch.full((30_000,), 2), 1, 0, logits, generator=gen())
    assert torch.allclose(torch.bincount(x, minlength=4).double() / 30_000, torch.tensor([0.25, 0.25, 0.5, 0.0], dtype=torch.float64), atol=0.012)


def test_loss_is_cross_entropy_averaged_over_axes():
    proc = D3PMMarginal(10, 5)
    x0 = torch.randint(0, 5, (8, 3), generator=gen(1))
    noised = proc.add_noise(x0, torch.full((8,), 4), generator=gen(2))
    assert torch.equal(noised.target, x0)
    logits = torch.randn(8, 3, 5, generator=gen(3))
    expected = -torch.log_softmax(logits, -1).gather(-1, x0[..., None]).squeeze(-1).mean(-1)
    assert torch.allclose(proc.loss(logits, noised), expected)


def test_marginals_are_validated_with_clear_errors():
    with pytest.raises(ValueError, match="num_classes=4"):
        D3PMMarginal(10, 4, marginal=torch.ones(5) / 5)
    with pytest.raises(ValueError, match="probability distribution"):
        D3PMMarginal(10, 4, marginal=torch.tensor([0.5, 0.5, 0.5, -0.5]))
    proc = D3PMMarginal(10, 4)
    with pytest.raises(ValueError, match="does not broadcast"):
        proc.sample_prior((6, 2), marginal=torch.ones(5, 2, 4) / 4)
    with pytest.raises(ValueError, match="expected shape"):
        proc.set_marginal(torch.ones(2, 4) / 4)
    proc.set_marginal(M)
    assert torch.equal(proc.marginal, M)
