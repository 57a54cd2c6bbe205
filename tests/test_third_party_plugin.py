"""A third-party sampler plugin is discovered through its entry point and works with the core's processes;
broken and clashing plugins are reported clearly while everything else keeps working.

The installed fixture is tests/fixtures/crystalgen_extra_sampler (``pip install -e`` it; see its README).
"""

from __future__ import annotations

import math
import re
import types

import pytest
import torch

from crystalgen.capabilities import Marginal
from crystalgen.hookspecs import hookimpl
from crystalgen.plugins import build_host
from crystalgen.processes import D3PMMarginal, VEGaussian, VPGaussian, WrappedNormal
from crystalgen.registry import UnknownComponentError
from crystalgen.samplers import AnnealedLangevinSampler, IncompatibleSamplerError, Sampler
from crystalgen.samplers.analytic import AnalyticModel, Categorical, GaussianMixture, WrappedNormalMixture

MIXTURE = GaussianMixture([0.3, 0.7], [[-2.1, -0.7], [0.9, 0.3]], [0.5, 0.3])
TORUS = WrappedNormalMixture([0.4, 0.6], [[0.1, 0.5], [0.6, 0.95]], [0.05, 0.1])
CATEGORIES = Categorical(torch.tensor([0.5, 0.3, 0.2, 0.0]))
ROWS = 3000


@pytest.fixture(scope="module")
def host():
    pytest.importorskip(
        "crystalgen_extra_sampler",
        reason="fixture plugin not installed: run `pip install -e tests/fixtures/crystalgen_extra_sampler`",
    )
    return build_host()


def test_the_sampler_is_discovered_through_its_entry_point(host):
    entry = host.registry("sampler").entry("heun")
    assert (entry.plugin, entry.distribution) == ("extra_sampler", "crystalgen-extra-sampler")
    assert issubclass(entry.obj, Sampler) and entry.obj.requires == frozenset({Marginal})
    assert "extra_sampler" in {p.name for p in host.plugins}
    assert not [f for f in host.failures if f.plugin == "extra_sampler"]


@pytest.mark.parametrize("family", ["vp", "ve-torus"])
def test_the_third_party_sampler_recovers_a_target_with_core_processes(host, family):
    heun = host.get("sampler", "heun")
    if family == "vp":
        model = AnalyticModel({"x": VPGaussian(1000), "c": D3PMMarginal(1000, 4)}, {"x": MIXTURE, "c": CATEGORIES})
    else:
        model = AnalyticModel({"x": VEGaussian(1000, 0.005, 20.0), "f": WrappedNormal(1000), "c": D3PMMarginal(1000, 4)},
                              {"x": MIXTURE, "f": TORUS, "c": CATEGORIES})
    state = heun(steps=25).run(model, model.condition(ROWS), generator=torch.Generator().manual_seed(0))
    x = state["x"].double()
    # 4 standard errors of the exact target (its variance as the scale of the mean), plus the ODE solver's error
    assert bool(((x.mean(0) - MIXTURE.mean()).abs() <= 4 * (MIXTURE.variance() / ROWS).sqrt() + 0.03).all())
    assert bool(((x.var(0) / MIXTURE.variance() - 1).abs() <= 0.13).all())  # 4 standard errors (0.08) + 0.05
    assert abs(float((x[:, 0] < -0.6).double().mean()) - 0.2996) <= 4 * (0.21 / ROWS) ** 0.5
    freq = torch.bincount(state["c"], minlength=4).double() / ROWS
    assert bool(((freq - CATEGORIES.probs).abs() <= 4 * (CATEGORIES.probs * (1 - CATEGORIES.probs) / ROWS).sqrt()).all())
    if "f" in state:
        exact = TORUS.trig_moment(1)
        assert bool(((torch.exp(2j * math.pi * state["f"].double()).mean(0) - exact).abs() <= 0.05).all())


def test_incompatible_pairings_list_the_installed_third_party_sampler(host, monkeypatch):
    monkeypatch.setattr("crystalgen.samplers.base.installed_samplers", lambda: dict(host.registry("sampler").items()))
    model = AnalyticModel({"x": VPGaussian(10)}, {"x": MIXTURE})
    with pytest.raises(IncompatibleSamplerError) as info:
        AnnealedLangevinSampler().run(model, model.condition(2))
    listed = re.search(r"Compatible samplers: ([^.]*)\.", str(info.value))
    assert listed is not None, str(info.value)
    compatible = listed.group(1).split(", ")  # other installed plugins (crystalgen-gemsdiff) may add theirs
    assert {"ancestral", "ddim", "heun", "pc"} <= set(compatible) and "langevin" not in compatible
    assert compatible == sorted(compatible)


def _plugin(name: str, **hooks) -> types.ModuleType:
    """An in-process plugin module whose hooks are the given functions."""
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, hookimpl(function))
    return module


class EulerSampler(Sampler):
    name = "euler"

    def loop(self, model, state, condition, *, generator, progress):
        return state


def test_broken_and_clashing_plugins_are_reported_and_the_rest_keeps_working(host):
    def boom():
        raise RuntimeError("boom")

    broken = _plugin("broken_plugin", crystalgen_samplers=boom, crystalgen_decoders=lambda: {"broken_decoder": object()})
    first = _plugin("first_plugin", crystalgen_samplers=lambda: {"euler": EulerSampler})
    second = _plugin("second_plugin", crystalgen_samplers=lambda: {"euler": EulerSampler, "ddim": EulerSampler})
    extended = build_host(extra_plugins=[broken, first, second])

    problems = extended.problems()
    assert "plugin 'broken_plugin' from unknown distribution failed: crystalgen_samplers raised RuntimeError: boom" in problems
    assert any("sampler 'euler' is registered twice: kept plugin 'first_plugin'" in p and "ignored plugin 'second_plugin'" in p
               for p in problems)
    assert any("sampler 'ddim' is registered twice: kept plugin 'core' (crystalgen-core)" in p for p in problems)
    failure = next(f for f in extended.failures if f.plugin == "broken_plugin")
    assert "RuntimeError: boom" in failure.details  # the traceback is kept for `crystalgen list --verbose`-style output

    # everything else still works: the built-ins win their names, the plugins' other hooks and components count
    assert extended.get("sampler", "ddim").__module__ == "crystalgen.samplers.ddim"
    assert extended.registry("sampler").entry("euler").plugin == "first_plugin"
    assert "broken_decoder" in extended.registry("decoder")
    assert extended.registry("sampler").entry("heun").distribution == "crystalgen-extra-sampler"


def test_unknown_names_list_what_exists_with_a_suggestion(host):
    with pytest.raises(UnknownComponentError) as info:
        host.get("sampler", "hune")
    message = str(info.value)
    assert "Unknown sampler 'hune'. Did you mean 'heun'?" in message
    available = re.search(r"Available: ([^.]*)\.", message)
    assert available is not None and {"ancestral", "ddim", "heun", "langevin", "pc"} <= set(available.group(1).split(", "))
