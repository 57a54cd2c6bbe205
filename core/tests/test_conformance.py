"""The conformance checks of crystalgen.testing: each passes a part that keeps its kind's contract and fails, with
a message naming the part and the check, on a part that breaks it."""

from __future__ import annotations

import dataclasses
import random
import types
from typing import Any

import pytest
import torch
from torch import Tensor

from crystalgen import Condition, Decoded, DenoiserSpec, Marginal, Posterior, VarianceExploding, hookimpl, plugins
from crystalgen.decoders.cell import CellDecoder
from crystalgen.encoders.full_cell import FullCellTransform
from crystalgen.processes.d3pm import D3PMMarginal
from crystalgen.processes.vp import VPGaussian
from crystalgen.processes.wrapped_normal import WrappedNormal
from crystalgen.samplers.ancestral import AncestralSampler
from crystalgen.samplers.ddim import DDIMSampler
from crystalgen.testing import (
    check_crystals,
    check_decoder,
    check_denoiser,
    check_gradients_reach_parameters,
    check_model,
    check_plugin,
    check_process,
    check_sampler,
    check_transform,
)
from crystalgen_toy_model.denoiser import ToyDenoiser
from crystalgen_toy_model.model import ToyDiffusion
from crystalgen_toy_model.staged import ToyStagedDiffusion

COUNTS = torch.tensor([2, 3])
CRYSTAL = torch.repeat_interleave(torch.arange(2), COUNTS)
SPACES = {"frac_coords": "torus", "lattice": "real", "atom_types": "classes"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def denoiser_inputs() -> tuple[dict[str, Tensor], Tensor, Condition]:
    g = torch.Generator().manual_seed(0)
    state = {"frac_coords": torch.rand(5, 3, generator=g), "lattice": torch.randn(2, 6, generator=g),
             "atom_types": torch.randint(0, 10, (5,), generator=g)}
    return state, torch.tensor([7, 3]), Condition(2, {}, data={"crystal": CRYSTAL, "num_atoms": COUNTS})


def toy_denoiser(cls: type[ToyDenoiser] = ToyDenoiser) -> ToyDenoiser:
    torch.manual_seed(0)
    return cls(num_elements=10, num_steps=10, hidden=8)


def fails(match: str):
    return pytest.raises(AssertionError, match=match)


# -- noise processes ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("process, shape", [(VPGaussian(10), (4, 2)), (WrappedNormal(10), (4, 3)), (D3PMMarginal(10, 5), (4,))],
                         ids=["vp_gaussian", "wrapped_normal", "d3pm_marginal"])
def test_built_in_processes_pass(process, shape):
    check_process(process, shape)


class PriorOfWrongShape(VPGaussian):
    def sample_prior(self, shape, **kwargs):
        return super().sample_prior(shape, **kwargs)[:, :1]


class PriorFromGlobalRandomness(VPGaussian):
    def sample_prior(self, shape, *, device="cpu", generator=None, **kwargs):
        return torch.randn(shape, device=device)


class UnwrappedTorus(WrappedNormal):
    def finalize(self, x):
        return x


class ScalarLoss(VPGaussian):
    def loss(self, prediction, noised, **kwargs):
        return super().loss(prediction, noised).mean()


class PromisesMarginal(D3PMMarginal):
    capabilities = frozenset({Posterior, Marginal})


class FalselyExploding(VPGaussian):
    capabilities = VPGaussian.capabilities | {VarianceExploding}

    def langevin_step(self, x, t, prediction, step_size, **kwargs):
        return super().langevin_step(x, t, prediction, step_size, **kwargs)


@pytest.mark.parametrize("process, shape, match", [
    (PriorOfWrongShape(10), (4, 2), r"PriorOfWrongShape: sample_prior: expected shape \(4, 2\)"),
    (PriorFromGlobalRandomness(10), (4, 2), "sample_prior determinism: expected the same output for the same generator seed"),
    (UnwrappedTorus(10), (4, 3), r"add_noise x_t: expected fractional coordinates in \[0, 1\)"),
    (ScalarLoss(10), (4, 2), r"loss: expected one value per row"),
    (PromisesMarginal(10, 5), (4,), "declared capabilities: expected every method of what it declares.*marginal: ddim_step"),
    (FalselyExploding(10), (4, 2), "variance_exploding: expected a_t = 1"),
], ids=["prior-shape", "prior-seed", "torus-domain", "loss-per-row", "undeclared-methods", "not-exploding"])
def test_broken_processes_fail(process, shape, match):
    with fails(match):
        check_process(process, shape)


def test_a_process_needing_arguments_asks_for_them():
    class NeedsLattice(VPGaussian):
        needs = frozenset({"lattice"})

    with fails("arguments: expected the caller to pass what it needs \\(lattice\\)"):
        check_process(NeedsLattice(10), (4, 2))


# -- denoisers ----------------------------------------------------------------------------------------------------
def test_toy_denoiser_passes_with_its_symmetries():
    check_denoiser(toy_denoiser(), *denoiser_inputs(), spaces=SPACES, name="toy_mlp")


class ClaimsTranslation(ToyDenoiser):
    spec = DenoiserSpec(ToyDenoiser.spec.predicts, ToyDenoiser.spec.reads, ToyDenoiser.spec.conditions,
                        frozenset({"translation"}))


class RowOrderMatters(ToyDenoiser):
    def forward(self, state, t, condition):
        out = super().forward(state, t, condition)
        return dict(out, frac_coords=out["frac_coords"] + torch.arange(len(out["frac_coords"]))[:, None].float())


class NotPeriodic(ToyDenoiser):
    def forward(self, state, t, condition):
        out = super().forward(state, t, condition)
        return dict(out, frac_coords=out["frac_coords"] + state["frac_coords"])


class Noisy(ToyDenoiser):
    def forward(self, state, t, condition):
        out = super().forward(state, t, condition)
        return dict(out, lattice=out["lattice"] + torch.randn_like(out["lattice"]))


class DropsAColumn(ToyDenoiser):
    def forward(self, state, t, condition):
        out = super().forward(state, t, condition)
        return dict(out, lattice=out["lattice"][:, :5])


class ForgetsTypes(ToyDenoiser):
    def forward(self, state, t, condition):
        return {k: v for k, v in super().forward(state, t, condition).items() if k != "atom_types"}


class RoundsToIntegers(ToyDenoiser):
    def forward(self, state, t, condition):
        out = super().forward(state, t, condition)
        return dict(out, lattice=out["lattice"].round().long())


@pytest.mark.parametrize("cls, match", [
    (ClaimsTranslation, "ClaimsTranslation: declared symmetry 'translation': expected prediction frac_coords to follow"),
    (RowOrderMatters, "declared symmetry 'permutation': expected prediction frac_coords to follow"),
    (NotPeriodic, "declared symmetry 'periodicity': expected prediction frac_coords to follow"),
    (Noisy, "determinism: expected the same predictions"),
    (DropsAColumn, r"output lattice shape: expected \(2, 6\), got \(2, 5\)"),
    (ForgetsTypes, "output atom_types: expected a prediction for atom_types"),
    (RoundsToIntegers, "output lattice dtype: expected floating point"),
], ids=["translation", "permutation", "periodicity", "determinism", "shape", "missing", "dtype"])
def test_broken_denoisers_fail(cls, match):
    with fails(match):
        check_denoiser(toy_denoiser(cls), *denoiser_inputs(), spaces=SPACES)


# -- decoders -----------------------------------------------------------------------------------------------------
def cell_inputs() -> tuple[dict[str, Tensor], Condition]:
    g = torch.Generator().manual_seed(0)
    state = {"lattice": torch.eye(3).expand(2, 3, 3) * 4.0 + 0.1 * torch.randn(2, 3, 3, generator=g),
             "frac_coords": torch.rand(5, 3, generator=g), "atom_types": torch.tensor([11, 17, 8, 8, 22]), "num_atoms": COUNTS}
    return state, Condition(2, {}, data={"crystal": CRYSTAL})


def test_cell_decoder_passes():
    check_decoder(CellDecoder(), *cell_inputs(), name="cell")


class RaisesOnNaN(CellDecoder):
    def __call__(self, state, condition):
        if bool(state["lattice"].isnan().any()):
            raise ValueError("singular lattice")
        return super().__call__(state, condition)


class OneShort(CellDecoder):
    def __call__(self, state, condition):
        return super().__call__(state, condition)[:-1]


class SilentFailure(CellDecoder):
    def __call__(self, state, condition):
        return [Decoded(None) if d.reason else d for d in super().__call__(state, condition)]


@pytest.mark.parametrize("cls, match", [
    (RaisesOnNaN, "RaisesOnNaN: decode a NaN state: expected it to run, it raised ValueError: singular lattice"),
    (OneShort, "decode: expected a list of 2 Decoded, one per crystal"),
    (SilentFailure, "decode a NaN state: expected item 0 to hold either a Structure or a failure reason"),
], ids=["raises", "count", "no-reason"])
def test_broken_decoders_fail(cls, match):
    with fails(match):
        check_decoder(cls(), *cell_inputs())


# -- transforms ---------------------------------------------------------------------------------------------------
def test_full_cell_transform_passes():
    assert len(check_transform(FullCellTransform(max_atoms=3), check_crystals())) == 6  # the two 5-atom cells skipped


class Unpicklable(FullCellTransform):
    def __init__(self) -> None:
        super().__init__()
        self.hook = lambda s: s


class Rattling(FullCellTransform):
    def __call__(self, structure):
        data = super().__call__(structure)
        data.frac_coords = data.frac_coords + 0.01 * torch.rand_like(data.frac_coords)
        return data


class PromisesSpacegroup(FullCellTransform):
    spec = type(FullCellTransform.spec)(provides=FullCellTransform.spec.provides | {"spacegroup"})


class RaisesForLargeCells(FullCellTransform):
    def __call__(self, structure):
        if len(structure) > 3:
            raise ValueError("too big")
        return super().__call__(structure)


@pytest.mark.parametrize("cls, match", [
    (Unpicklable, "Unpicklable: (cache key|pickling): expected it to run"),
    (Rattling, "determinism: expected the same Data twice"),
    (PromisesSpacegroup, "declared fields: expected every field of spec.provides, structure 0 lacks spacegroup"),
    (RaisesForLargeCells, "transform: expected a Data or SkipCrystal for structure 2 .*ValueError: too big"),
], ids=["pickle", "determinism", "fields", "exception"])
def test_broken_transforms_fail(cls, match):
    with fails(match):
        check_transform(cls(), check_crystals())


# -- samplers -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [AncestralSampler, DDIMSampler])
def test_built_in_samplers_pass(cls):
    check_sampler(cls)


class GlobalRandomness(AncestralSampler):
    name = "global_randomness"

    def run(self, model, condition, *, generator=None, progress=None):
        return super().run(model, condition, generator=None, progress=progress)


class Unchecked(DDIMSampler):
    name = "unchecked"

    @classmethod
    def check(cls, processes, available=None):
        return None


class Renamed(DDIMSampler):
    name = "renamed"

    def __init__(self, steps: int | None = None, eta: float = 0.0) -> None:
        super().__init__(steps, eta)
        self.noise = self.eta
        del self.eta


class Silent(AncestralSampler):
    name = "silent"

    def run(self, model, condition, *, generator=None, progress=None):
        return super().run(model, condition, generator=generator)


@pytest.mark.parametrize("cls, match", [
    (GlobalRandomness, "sampler 'global_randomness' .*determinism: expected the same final state"),
    (Unchecked, "compatibility: expected IncompatibleSamplerError"),
    (Renamed, "(config|construction): expected"),
    (Silent, "progress: expected calls counting up to their total"),
], ids=["seed", "refusal", "config", "progress"])
def test_broken_samplers_fail(cls, match):
    with fails(match):
        check_sampler(cls)


# -- models and plugins -------------------------------------------------------------------------------------------
def test_toy_model_passes_and_names_its_parts():
    checked = check_model("toy", device="cpu")
    assert ("denoiser", "toy_mlp") in checked and ("noise process", "wrapped_normal") in checked


class DropsACrystal(ToyDiffusion):
    def decode(self, state, condition):
        return super().decode(state, condition)[1:]


class UnseededLoss(ToyDiffusion):
    def training_loss(self, batch):
        out = super().training_loss(batch)
        return dict(out, loss=out["loss"] * (1 + random.random()))


@pytest.mark.parametrize("cls, match", [
    (DropsACrystal, "DropsACrystal.*decode: expected a list of 3 Decoded"),
    (UnseededLoss, "training_loss determinism: expected the same loss for the same seed"),
], ids=["decode", "loss-seed"])
def test_broken_models_fail(cls, match):
    with fails(match):
        check_model(cls, device="cpu")


class CarriesAnUnusedHead(ToyDiffusion):
    """A module built and never read, as SyMat's unused SphereNet output blocks once were."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.unused_head = torch.nn.Linear(4, 1)


class StageLeavesOutWhatItTrains(ToyStagedDiffusion):
    """Stage ``diffusion`` trains ``denoiser`` and ``extra``, but its loss never reads ``extra``."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.extra = torch.nn.Linear(2, 2)

    def training_stages(self):
        first, second = super().training_stages()
        return first, dataclasses.replace(second, trainable=("denoiser", "extra"))


def test_the_loss_reaches_every_parameter_of_the_test_models_stage_by_stage():
    assert "denoiser.frac_head.weight" in check_gradients_reach_parameters("toy")
    checked = check_gradients_reach_parameters("toy_staged")
    # stage autoencoder checks only what it trains (its loss never reaches the denoiser), then stage diffusion
    assert checked[0].startswith("autoencoder.") and any(n.startswith("denoiser.") for n in checked)


@pytest.mark.parametrize("cls, match", [
    (CarriesAnUnusedHead, r"gradients: expected the loss 'loss' to reach every trainable parameter; 2 of \d+ receive no "
                          r"gradient: unused_head.bias, unused_head.weight. DistributedDataParallel refuses"),
    (StageLeavesOutWhatItTrains, r"stage 'diffusion': gradients: .* receive no gradient: extra.bias, extra.weight"),
], ids=["unused-module", "stage"])
def test_a_parameter_the_loss_does_not_reach_is_named(cls, match):
    with fails(match):
        check_gradients_reach_parameters(cls)


def plugin_module(**hooks: Any) -> types.ModuleType:
    module = types.ModuleType("broken_plugin")
    for hook, parts in hooks.items():
        setattr(module, hook, hookimpl(lambda parts=parts: parts))
    return module


def installed(monkeypatch: pytest.MonkeyPatch, module: types.ModuleType) -> types.ModuleType:
    """``module`` registered with the plugin host, as if its distribution were installed."""
    host = plugins.build_host(extra_plugins=[module])
    monkeypatch.setattr(plugins, "default_host", lambda: host)
    return module


def test_check_plugin_checks_a_registered_process_inside_a_model_that_takes_it(monkeypatch):
    module = installed(monkeypatch, plugin_module(crystalgen_noise_processes={"unwrapped_torus": UnwrappedTorus}))
    with fails("noise process 'unwrapped_torus' \\(UnwrappedTorus\\): add_noise x_t: expected fractional"):
        check_plugin(module)


def test_check_plugin_refuses_a_part_no_installed_model_can_host(monkeypatch):
    class Lonely(VPGaussian):
        space = "nowhere"

    module = installed(monkeypatch, plugin_module(crystalgen_noise_processes={"lonely": Lonely}))
    with fails("noise process 'lonely': hosting: expected an installed model"):
        check_plugin(module)


def test_check_plugin_refuses_a_part_that_is_not_installed():
    with fails("noise process 'unwrapped_torus': registration: expected the installed noise process of that name"):
        check_plugin(plugin_module(crystalgen_noise_processes={"unwrapped_torus": UnwrappedTorus}))
