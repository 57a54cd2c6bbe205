"""The sampler contract: time grids, compatibility errors, constraints, process kwargs, rule processes,
progress and reproducibility, for every built-in sampler."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from crystalgen.capabilities import Rule
from crystalgen.processes import D3PMMarginal, VEGaussian, VPGaussian
from crystalgen.processes.base import Noised, NoiseProcess
from crystalgen.samplers import (
    AncestralSampler,
    AnnealedLangevinSampler,
    DDIMSampler,
    IncompatibleSamplerError,
    PredictorCorrectorSampler,
    time_grid,
)
from crystalgen.samplers.analytic import AnalyticModel, Categorical, GaussianMixture
from crystalgen.state import Constraint

BUILTIN_SAMPLERS = {s.name: s for s in (AncestralSampler, DDIMSampler, AnnealedLangevinSampler, PredictorCorrectorSampler)}

MIXTURE = GaussianMixture([0.5, 0.5], [[-1.0, 0.0, 1.0], [1.0, 0.5, -1.0]], [0.3, 0.3])
CATEGORIES = Categorical(torch.tensor([0.2, 0.3, 0.5]))
SAMPLERS = [
    pytest.param(lambda: AncestralSampler(steps=5), 5, id="ancestral"),
    pytest.param(lambda: DDIMSampler(steps=4, eta=0.5), 4, id="ddim"),
    pytest.param(lambda: AnnealedLangevinSampler(steps=3, n_steps_each=2, step_lr=1e-3, final_denoise=True), 3 * 2 + 1, id="langevin"),
    pytest.param(lambda: PredictorCorrectorSampler(steps=4, n_corrector=2), 4 * 3, id="pc"),
]


class Recording(AnalyticModel):
    """An analytic model that keeps every state it is asked to denoise."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[dict[str, torch.Tensor]] = []

    def denoise(self, state, t, condition):
        self.seen.append({k: v.clone() for k, v in state.items()})
        return super().denoise(state, t, condition)


def ve_model(T: int = 10) -> Recording:
    return Recording({"x": VEGaussian(T, 0.05, 5.0), "c": D3PMMarginal(T, 3)}, {"x": MIXTURE, "c": CATEGORIES})


@pytest.mark.parametrize("T", [1, 7, 100, 1000])
def test_time_grid_is_evenly_spaced_from_T_to_zero(T):
    assert time_grid(T) == list(range(T, -1, -1))
    for steps in {min(3, T), max(1, T // 2), T, 1}:
        grid = time_grid(T, steps)
        gaps = [a - b for a, b in pairwise(grid)]
        assert grid[0] == T and grid[-1] == 0 and len(grid) == steps + 1
        assert min(gaps) >= 1 and max(gaps) - min(gaps) <= 1
    for bad in (0, T + 1):
        with pytest.raises(ValueError, match="steps must be between 1"):
            time_grid(T, bad)


def test_incompatible_pairing_fails_before_sampling_and_names_compatible_samplers(monkeypatch):
    class Untouchable(AnalyticModel):
        def denoise(self, state, t, condition):
            raise AssertionError("the model must not be called")

    model = Untouchable({"lattice": VPGaussian(10), "types": D3PMMarginal(10, 3)}, {"lattice": MIXTURE, "types": CATEGORIES})
    with pytest.raises(IncompatibleSamplerError) as info:
        AnnealedLangevinSampler.check(model.processes, available=BUILTIN_SAMPLERS)
    assert "Compatible samplers: ancestral, ddim, pc." in str(info.value)
    # run() checks against the installed samplers before drawing anything (tests/test_third_party_plugin.py
    # checks the real plugin registry, including a third-party sampler)
    monkeypatch.setattr("crystalgen.samplers.base.installed_samplers", lambda: BUILTIN_SAMPLERS)
    with pytest.raises(IncompatibleSamplerError) as info:
        AnnealedLangevinSampler().run(model, model.condition(4))
    message = str(info.value)
    assert "'langevin'" in message and "lattice (VPGaussian) lacks variance_exploding" in message
    assert "Compatible samplers: ancestral, ddim, pc." in message
    assert "types" not in message.split("Compatible")[0]  # categorical processes only need their posterior
    with pytest.raises(ValueError, match="steps must be between 1"):
        DDIMSampler(steps=11).run(model, model.condition(4))


def test_processes_must_share_T():
    model = AnalyticModel({"x": VEGaussian(10), "c": D3PMMarginal(12, 3)}, {"x": MIXTURE, "c": CATEGORIES})
    with pytest.raises(ValueError, match="disagree on the number of steps"):
        AncestralSampler().run(model, model.condition(2))


@pytest.mark.parametrize(("make", "calls"), SAMPLERS)
def test_constraints_hold_at_every_model_call_and_at_the_end(make, calls):
    model = ve_model()
    fixed = torch.zeros(50, 3, dtype=torch.bool)
    fixed[:, 1] = True
    constraints = {"x": Constraint(free=~fixed, value=torch.full((50, 3), 7.0)),
                   "c": Constraint(free=torch.arange(50) >= 10, value=torch.ones(50, dtype=torch.long))}
    condition = model.condition(50, constraints=constraints)
    out = make().run(model, condition, generator=torch.Generator().manual_seed(0))
    for state in model.seen + [out]:
        assert bool((state["x"][:, 1] == 7.0).all()) and bool((state["c"][:10] == 1).all())
    assert len(model.seen) == calls
    assert not bool((out["x"][:, 0] == 7.0).any())


class KwargsVE(VEGaussian):
    """Records the keyword arguments of every call a sampler makes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, dict]] = []

    def _record(self, name: str, kwargs: dict) -> None:
        self.calls.append((name, {k: v for k, v in kwargs.items() if k not in ("generator", "eta", "noise", "device")}))

    def sample_prior(self, shape, **kwargs):
        self._record("sample_prior", kwargs)
        return super().sample_prior(shape, **kwargs)

    def reverse_step(self, x_t, t, s, prediction, **kwargs):
        self._record("reverse_step", kwargs)
        return super().reverse_step(x_t, t, s, prediction, **kwargs)

    def ddim_step(self, x_t, t, s, prediction, **kwargs):
        self._record("ddim_step", kwargs)
        return super().ddim_step(x_t, t, s, prediction, **kwargs)

    def langevin_step(self, x, t, prediction, step_size, **kwargs):
        self._record("langevin_step", kwargs)
        return super().langevin_step(x, t, prediction, step_size, **kwargs)

    def score(self, prediction, x_t, t, **kwargs):
        self._record("score", kwargs)
        return super().score(prediction, x_t, t, **kwargs)


@pytest.mark.parametrize(("make", "calls"), SAMPLERS)
def test_process_args_reach_every_process_call(make, calls):
    proc = KwargsVE(10, 0.05, 5.0)
    model = AnalyticModel({"x": proc}, {"x": MIXTURE})
    make().run(model, model.condition(8, process_args={"x": {"marker": 42}}), generator=torch.Generator().manual_seed(0))
    assert len(proc.calls) > calls
    assert all(kwargs == {"marker": 42} for _, kwargs in proc.calls), proc.calls


class ArgmaxRule(NoiseProcess):
    """A rule process in CDVAE's style: the value becomes the argmax of the prediction at every call."""

    capabilities = frozenset({Rule})
    discrete = True
    prediction = "logits"

    def __init__(self, num_steps: int) -> None:
        super().__init__(num_steps)
        self.reverse_calls = self.corrector_calls = 0

    def sample_prior(self, shape, *, device="cpu", generator=None, **kwargs):
        return torch.zeros(shape, dtype=torch.long, device=device)

    def add_noise(self, x0, t, *, generator=None, **kwargs):
        return Noised(x0, x0)

    def loss(self, prediction, noised, **kwargs):
        return torch.zeros(len(noised.target))

    def reverse_step(self, x_t, t, s, prediction, *, generator=None, **kwargs):
        self.reverse_calls += 1
        return prediction.argmax(-1)

    def corrector_step(self, x, t, prediction, *, generator=None, **kwargs):
        self.corrector_calls += 1
        return prediction.argmax(-1)


class FixedLogits:
    def shape(self, rows):
        return (rows,)

    def predict(self, process, x_t, t, **kwargs):
        return torch.tensor([0.0, 0.0, 5.0]).expand(len(x_t), 3)


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: AncestralSampler(steps=5), (5, 0)),
    (lambda: DDIMSampler(steps=4), (4, 0)),
    (lambda: AnnealedLangevinSampler(steps=3, n_steps_each=2), (0, 6)),
    (lambda: PredictorCorrectorSampler(steps=4, n_corrector=2), (4, 8)),
])
def test_rule_processes_follow_their_rule_under_every_sampler(make, expected):
    rule = ArgmaxRule(10)
    model = AnalyticModel({"x": VEGaussian(10, 0.05, 5.0), "types": rule}, {"x": MIXTURE, "types": FixedLogits()})
    sampler = make()
    assert not sampler.missing(model.processes)
    out = sampler.run(model, model.condition(6), generator=torch.Generator().manual_seed(0))
    assert bool((out["types"] == 2).all())
    assert (rule.reverse_calls, rule.corrector_calls) == expected


def test_categorical_only_models_work_with_every_sampler():
    model = AnalyticModel({"c": D3PMMarginal(10, 3)}, {"c": CATEGORIES})
    for sampler in (AncestralSampler(), DDIMSampler(steps=3), AnnealedLangevinSampler(n_steps_each=1), PredictorCorrectorSampler()):
        out = sampler.run(model, model.condition(5), generator=torch.Generator().manual_seed(0))
        assert out["c"].shape == (5,) and out["c"].dtype == torch.long


@pytest.mark.parametrize(("make", "calls"), SAMPLERS)
def test_progress_counts_model_calls(make, calls):
    model = ve_model()
    reports: list[tuple[int, int]] = []
    make().run(model, model.condition(4), generator=torch.Generator().manual_seed(0), progress=lambda d, n: reports.append((d, n)))
    assert reports == [(i, calls) for i in range(1, calls + 1)]
    assert len(model.seen) == calls


@pytest.mark.parametrize(("make", "calls"), SAMPLERS)
def test_a_generator_makes_sampling_reproducible(make, calls):
    model = ve_model()
    runs = [make().run(model, model.condition(16), generator=torch.Generator().manual_seed(seed)) for seed in (5, 5, 6)]
    assert all(torch.equal(runs[0][v], runs[1][v]) for v in runs[0])
    assert not torch.equal(runs[0]["x"], runs[2]["x"])


def test_config_lists_the_options():
    assert DDIMSampler(steps=7, eta=0.3).config() == {"name": "ddim", "steps": 7, "eta": 0.3}
    assert PredictorCorrectorSampler().config() == {"name": "pc", "steps": None, "snr": 0.16, "n_corrector": 1, "step_lr": None, "correct": None}
    with pytest.raises(ValueError, match="eta"):
        DDIMSampler(eta=-1)


def test_pc_corrects_only_the_named_variables():
    moved, kept = KwargsVE(10, 0.05, 5.0), KwargsVE(10, 0.05, 5.0)
    model = AnalyticModel({"f": moved, "x": kept}, {"f": MIXTURE, "x": MIXTURE})
    PredictorCorrectorSampler(steps=4, n_corrector=2, correct=["f"]).run(model, model.condition(8), generator=torch.Generator().manual_seed(0))
    assert sum(name == "langevin_step" for name, _ in moved.calls) == 8
    assert not any(name == "langevin_step" for name, _ in kept.calls)
    with pytest.raises(ValueError, match=r"correct=\['frac'\] are not variables"):
        PredictorCorrectorSampler(correct=["frac"]).run(model, model.condition(8))


def test_pc_takes_one_variable_name_as_given_on_the_command_line():
    """``--option correct=frac_coords`` parses to a string, which is one name, not a list of its letters."""
    assert PredictorCorrectorSampler(correct="frac_coords").correct == ["frac_coords"]
