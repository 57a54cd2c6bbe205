"""Capabilities are protocols: every installed process has the methods of what it declares, samplers declare
protocols, and narrowing a process to a capability it does not declare is refused."""

from __future__ import annotations

import pytest
import torch

from crystalgen.capabilities import (
    CAPABILITY_NAMES,
    Marginal,
    Posterior,
    Rule,
    Score,
    VarianceExploding,
    capable,
    offered,
    undeclared,
)
from crystalgen.plugins import default_host
from crystalgen.processes import CAPABILITIES, D3PMMarginal, VEGaussian, VPGaussian


def test_every_installed_process_has_the_methods_of_its_declared_capabilities():
    processes = default_host().registry("noise process").items()
    assert {"vp_gaussian", "ve_gaussian", "wrapped_normal", "d3pm_marginal"} <= {name for name, _ in processes}
    for name, cls in processes:
        assert cls.capabilities <= CAPABILITIES, name
        assert undeclared(cls) == {}, name


def test_every_installed_sampler_requires_protocols():
    for name, sampler in default_host().registry("sampler").items():
        assert sampler.requires and sampler.requires <= set(CAPABILITY_NAMES), name


def test_a_declared_capability_without_its_methods_is_found():
    class Half(D3PMMarginal):
        capabilities = frozenset({Posterior, Marginal})

    assert undeclared(Half) == {"marginal": ["ddim_step", "finalize", "marginal", "scales", "to_eps", "to_x0"]}


def test_narrowing_follows_the_declaration_not_the_structure():
    vp, ve = VPGaussian(10), VEGaussian(10)
    assert isinstance(vp, Score) and isinstance(vp, VarianceExploding)  # structure alone cannot tell VE from VP
    assert capable(ve, VarianceExploding) is ve
    with pytest.raises(TypeError, match="VPGaussian does not declare the capability 'variance_exploding'"):
        capable(vp, VarianceExploding)
    assert capable(ve, Score).scales(10) == (1.0, pytest.approx(10.0))


def test_a_rule_offers_its_posterior():
    class ArgmaxTypes(D3PMMarginal):
        capabilities = frozenset({Rule})

    rule = ArgmaxTypes(10, 3)
    assert offered(rule) == {Rule, Posterior}
    assert capable(rule, Posterior) is rule


def test_clean_estimate_is_tweedie_on_the_domain():
    proc = VEGaussian(10, 0.1, 2.0)
    x_t, pred = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.allclose(proc.clean_estimate(pred, x_t, 7), proc.finalize(proc.to_x0(pred, x_t, 7)))
