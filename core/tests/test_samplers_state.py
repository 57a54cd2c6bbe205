"""State-aware process steps (``NoiseProcess.reads``) and gradients inside ``denoise`` (``grad_in_denoise``).

A process that reads the lattice receives, at every step of every built-in sampler, the lattice of the state the
step is taken from (in the form the model's ``current_values`` gives), not a value fixed before sampling. A model
that takes its scores as autograd gradients gets gradients inside ``denoise`` only: its predictions and the state
carry no graph, and each call's graph is freed before the next step, however many steps run.
"""

from __future__ import annotations

import weakref
from typing import Any

import pytest
import torch
from torch import Tensor

from crystalgen.models.assembly import process_problems
from crystalgen.processes import VEGaussian
from crystalgen.processes.cartesian_ve import CartesianVE
from crystalgen.samplers import AncestralSampler, AnnealedLangevinSampler, DDIMSampler, PredictorCorrectorSampler
from crystalgen.samplers.analytic import AnalyticModel, GaussianMixture
from crystalgen.specs import ProcessSpec, Variable
from crystalgen.state import Condition

SAMPLERS = [
    pytest.param(lambda: AncestralSampler(steps=5), id="ancestral"),
    pytest.param(lambda: DDIMSampler(steps=4, eta=0.5), id="ddim"),
    pytest.param(lambda: AnnealedLangevinSampler(steps=3, n_steps_each=2, step_lr=1e-3, final_denoise=True), id="langevin"),
    pytest.param(lambda: PredictorCorrectorSampler(steps=4, n_corrector=2), id="pc"),
]
T = 20


class PositionsUnderTheCurrentLattice(CartesianVE):
    """Cartesian VE steps whose lattice is the one being sampled beside the positions; records each one it gets."""

    reads = frozenset({"lattice"})

    def __init__(self, num_steps: int) -> None:
        super().__init__(num_steps, sigma_min=0.01, sigma_max=0.5)
        self.seen: list[Tensor] = []

    def _record(self, kwargs: dict[str, Any]) -> None:
        self.seen.append(kwargs["lattice"].clone())

    def reverse_step(self, x_t, t, s, prediction, **kwargs):
        self._record(kwargs)
        return super().reverse_step(x_t, t, s, prediction, **kwargs)

    def ddim_step(self, x_t, t, s, prediction, **kwargs):
        self._record(kwargs)
        return super().ddim_step(x_t, t, s, prediction, **kwargs)

    def langevin_step(self, x, t, prediction, step_size, **kwargs):
        self._record(kwargs)
        return super().langevin_step(x, t, prediction, step_size, **kwargs)

    def clean_estimate(self, prediction, x_t, t, **kwargs):
        self._record(kwargs)
        return super().clean_estimate(prediction, x_t, t, **kwargs)


def lattice_matrix(features: Tensor) -> Tensor:
    """The model's own form of the lattice, 9 features per crystal, as (B, 3, 3) Angstrom."""
    return 4.0 * torch.eye(3) + 0.1 * features.reshape(-1, 3, 3)


class LatticeAndPositions:
    """Two crystals of 2 atoms: lattice features (VE) and positions under the current lattice (Cartesian VE)."""

    def __init__(self) -> None:
        self.processes = {"lattice": VEGaussian(T, sigma_min=0.01, sigma_max=1.0, prediction="eps"),
                          "frac_coords": PositionsUnderTheCurrentLattice(T)}
        self.lattices_denoised: list[Tensor] = []

    def condition(self) -> Condition:
        num_atoms = torch.tensor([2, 2])
        return Condition(2, {"lattice": (2, 9), "frac_coords": (4, 3)},
                         process_args={"frac_coords": {"num_atoms": num_atoms}})

    def current_values(self, names: frozenset[str], state: dict[str, Tensor], condition: Condition) -> dict[str, Tensor]:
        return {"lattice": lattice_matrix(state["lattice"])}

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        self.lattices_denoised.append(lattice_matrix(state["lattice"]))
        return {"lattice": 0.5 * state["lattice"], "frac_coords": -0.1 * torch.ones_like(state["frac_coords"])}


@pytest.mark.parametrize("make", SAMPLERS)
def test_a_process_that_reads_the_lattice_gets_the_current_one_at_every_step(make):
    model = LatticeAndPositions()
    state = make().run(model, model.condition(), generator=torch.Generator().manual_seed(0))
    seen = model.processes["frac_coords"].seen
    assert len(seen) == len(model.lattices_denoised)  # one position step per model call, in these samplers
    for step, (given, denoised) in enumerate(zip(seen, model.lattices_denoised, strict=True)):
        torch.testing.assert_close(given, denoised, msg=f"step {step}: not the lattice of the state being stepped")
    assert not torch.allclose(seen[0], seen[-1])  # the lattice moved: a value fixed at the start would not
    assert state["frac_coords"].shape == (4, 3) and bool(((state["frac_coords"] >= 0) & (state["frac_coords"] < 1)).all())


def test_a_read_variable_must_be_diffused_by_the_model_and_a_read_need_is_not_the_models_to_pass():
    spec = ProcessSpec("continuous", "cell", "score", frozenset({"score"}), needs=frozenset({"lattice", "num_atoms"}),
                       reads=frozenset({"lattice"}))
    want = Variable("continuous", "cell", args=frozenset({"num_atoms"}))
    assert process_problems("frac_coords", want, spec, None, variables=frozenset({"frac_coords", "lattice"})) == []
    assert process_problems("frac_coords", want, spec, None, variables=frozenset({"frac_coords"})) == [
        "reads the current lattice, which the model does not diffuse beside frac_coords"]
    fixed = ProcessSpec("continuous", "cell", "score", frozenset({"score"}), needs=frozenset({"lattice", "num_atoms"}))
    assert process_problems("frac_coords", want, fixed, None, variables=frozenset({"frac_coords", "lattice"})) == [
        "needs lattice, which the model does not pass for frac_coords"]


MIXTURE = GaussianMixture([1.0], [[0.5, -1.0, 2.0]], [0.4])


class Marker:
    """Lives exactly as long as the autograd graph that holds it (see Tagged)."""


class Tagged(torch.autograd.Function):
    """Identity whose graph node keeps a Marker: a weak reference to it tells whether that graph still exists."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, marker: Marker) -> Tensor:
        ctx.marker = marker
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class EnergyModel:
    """Scores as autograd gradients: eps = s_t grad E(x) with E(x) = |x - a mu|^2 / (2 (a^2 var + s^2)), the exact
    score of the one-Gaussian target above, taken with create_graph=True as a model that trains through its
    gradients does, so its prediction carries the whole graph. Checks at each call that the graphs of earlier calls
    are gone."""

    def __init__(self, grad: bool) -> None:
        self.grad_in_denoise = grad
        self.processes = {"x": VEGaussian(T, sigma_min=0.01, sigma_max=3.0, prediction="eps")}
        self.graphs: list[weakref.ref] = []
        self.grad_enabled: list[bool] = []

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        self.grad_enabled.append(torch.is_grad_enabled())
        alive = sum(ref() is not None for ref in self.graphs)
        assert not alive, f"{alive} graphs of earlier steps are still alive"
        _, s = self.processes["x"].scales(int(t[0]))
        x = state["x"].requires_grad_(True)
        marker = Marker()
        self.graphs.append(weakref.ref(marker))
        y = Tagged.apply(x, marker)
        spread = MIXTURE.vars[0].to(x.dtype) + s**2
        energy = (((y - MIXTURE.means[0].to(x.dtype)) ** 2) / (2 * spread)).sum()
        (grad,) = torch.autograd.grad(energy, x, create_graph=True)
        return {"x": s * grad}


@pytest.mark.parametrize("make", SAMPLERS)
def test_a_model_takes_gradients_inside_denoise_without_keeping_any_graph_across_steps(make):
    model = EnergyModel(grad=True)
    exact = AnalyticModel(model.processes, {"x": MIXTURE})
    condition = exact.condition(64)
    state = make().run(model, condition, generator=torch.Generator().manual_seed(1))
    expected = make().run(exact, condition, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(state["x"], expected["x"], rtol=1e-4, atol=1e-4)  # the gradients are the scores
    assert all(model.grad_enabled) and len(model.graphs) > 1
    assert state["x"].grad_fn is None and not state["x"].requires_grad
    assert all(ref() is None for ref in model.graphs)


def test_many_steps_with_gradients_keep_no_graph_and_a_model_that_does_not_ask_gets_none():
    model = EnergyModel(grad=True)
    sampler = AnnealedLangevinSampler(steps=T, n_steps_each=25, step_lr=1e-3)
    state = sampler.run(model, AnalyticModel(model.processes, {"x": MIXTURE}).condition(8),
                        generator=torch.Generator().manual_seed(2))
    assert len(model.graphs) == T * 25 and state["x"].grad_fn is None  # the check inside denoise ran 500 times
    without = EnergyModel(grad=False)
    with pytest.raises(RuntimeError):  # autograd under the sampler's no_grad: nothing to differentiate
        sampler.run(without, AnalyticModel(without.processes, {"x": MIXTURE}).condition(8))
    assert without.grad_enabled == [False]
