"""The StructRepDiff recipe: registration, its named parts, training loss, sampling with ancestral and DDIM, decoding,
reconstruct."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Lattice, Structure
from structrepdiff_testdata import tiny_model_config, triclinic_structure

from crystalgen import plugins
from crystalgen.data.crystal import collate
from crystalgen.models.assembly import IncompatiblePartsError
from crystalgen.samplers.ancestral import AncestralSampler
from crystalgen.samplers.ddim import DDIMSampler
from crystalgen.state import SampleRequest
from crystalgen_structrepdiff.decoding import GradientReconstruction
from crystalgen_structrepdiff.model import VARIABLE, StructRepDiff
from crystalgen_structrepdiff.reconstruction import BasinHopping
from crystalgen_structrepdiff.transform import RepresentationTransform
from crystalgen_structrepdiff.unet import UNet1D


def crystals() -> list[Structure]:
    return [
        Structure(Lattice.cubic(4.0), ["Sr", "Ti", "O", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
        Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        triclinic_structure(),
        Structure(Lattice.hexagonal(2.5, 6.7), ["C", "C", "C", "C"], [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]),
    ]


@pytest.fixture
def model_and_items():
    model = StructRepDiff(tiny_model_config())
    transform = StructRepDiff.transform(model.cfg)
    items = [transform(s) for s in crystals()]
    model.fit_statistics(items)
    return model, items


def test_registered_through_the_entry_point():
    host = plugins.default_host()
    assert host.get("model", "structrepdiff") is StructRepDiff
    assert host.get("encoder", "structrepdiff_ead") is RepresentationTransform
    assert host.get("denoiser", "structrepdiff_unet1d") is UNet1D
    assert host.get("decoder", "structrepdiff_reconstruction") is GradientReconstruction
    assert {"small", "paper"} <= set(StructRepDiff.presets())


def test_the_presets_name_every_part_and_the_model_builds_them():
    from omegaconf import OmegaConf

    for name, path in StructRepDiff.presets().items():
        cfg = OmegaConf.load(path).model
        parts = StructRepDiff.assemble(cfg).parts
        assert {slot: part.name for slot, part in parts.items()} == {
            "transform": "structrepdiff_ead", "denoiser": "structrepdiff_unet1d",
            f"processes.{VARIABLE}": "vp_gaussian", "decoder": "structrepdiff_reconstruction"}, name
        model = StructRepDiff(cfg)
        assert isinstance(model.encoder, RepresentationTransform) and isinstance(model.denoiser, UNet1D)
        assert isinstance(model.decoder, GradientReconstruction)
        # the size of R (the model's context) reaches the denoiser, the transform's descriptor the decoder
        assert model.denoiser.length == model.layout.size and model.decoder.layout == model.layout, name
        assert model.decoder.params == model.encoder.params and model.decoder.method == model.encoder.method, name


@pytest.mark.parametrize(("slot", "name", "problem", "fits"), [
    (f"processes.{VARIABLE}", "wrapped_normal", "works on torus values, representation holds real values",
     "ve_gaussian, vp_gaussian"),
    ("decoder", "cell", "reads atom_types, frac_coords, lattice, num_atoms, which the model does not produce",
     "structrepdiff_reconstruction"),
    ("transform", "full_cell", "writes no representation", "structrepdiff_ead (needs ead)"),
])
def test_a_part_that_cannot_fit_is_refused_naming_those_that_do(slot, name, problem, fits):
    cfg = tiny_model_config()
    rename_part(cfg, slot, name)
    with pytest.raises(IncompatiblePartsError) as err:
        StructRepDiff(cfg)
    assert problem in str(err.value) and f"installed parts that fit model.{slot}: {fits}." in str(err.value)


def test_the_parts_options_are_checked_by_name():
    from crystalgen.models.assembly import PartConfigError

    cfg = tiny_model_config(trails=6)
    with pytest.raises(PartConfigError, match="GradientReconstruction has no option 'trails'. Did you mean 'trials'?"):
        StructRepDiff(cfg)
    cfg = tiny_model_config()
    cfg.decoder.ead = cfg.transform.ead  # the decoder's descriptor is the transform's, set by the model
    with pytest.raises(PartConfigError, match="model.decoder.ead is set by the model"):
        StructRepDiff(cfg)


def rename_part(cfg, slot: str, name: str) -> None:
    """Name another part in ``slot`` with its default options (as a config layer that renames a part does)."""
    from omegaconf import OmegaConf

    OmegaConf.update(cfg, slot, {"name": name}, merge=False)


def test_presets_build(tmp_path):
    from omegaconf import OmegaConf

    for name, path in StructRepDiff.presets().items():
        cfg = OmegaConf.load(path)
        model = StructRepDiff(cfg.model)
        assert model.layout.size == 2 * model.encoder.params.num_features + 96 + 8, name
    paper = StructRepDiff(OmegaConf.load(StructRepDiff.presets()["paper"]).model)
    assert paper.encoder.params.num_features == 1206 and paper.processes[VARIABLE].num_steps == 2000
    assert (paper.decoder.settings.trials, paper.decoder.settings.hops, paper.decoder.settings.iterations) == (6, 7, 300)


def test_search_additions_come_from_the_config_and_default_to_the_paper():
    """A decoder section without an addition's key gets the paper's search."""
    plain = StructRepDiff(tiny_model_config()).decoder.settings
    assert (plain.relocate_atoms, plain.relocate_closer_than, plain.d_min_penalty) == (0, 0.0, 0.0)
    tuned = StructRepDiff(tiny_model_config(relocate_atoms=1, relocate_closer_than=0.5, d_min_penalty=2.0)).decoder.settings
    assert (tuned.relocate_atoms, tuned.relocate_closer_than, tuned.d_min_penalty) == (1, 0.5, 2.0)


def test_scaling_comes_from_the_config():
    """model.scaling picks the scaler's fit."""
    items = [StructRepDiff.transform(tiny_model_config())(s) for s in crystals()]
    cfg = tiny_model_config()
    cfg.scaling = "minmax"
    minmax = StructRepDiff(cfg)
    minmax.fit_statistics(items)
    varying = minmax.scaler.high - minmax.scaler.low > 1e-3  # features the scaler did not treat as constant
    assert bool(varying.any())
    torch.testing.assert_close(minmax.scaler.low[varying], torch.full((int(varying.sum()),), -1.0, dtype=torch.float64))
    torch.testing.assert_close(minmax.scaler.high[varying], torch.full((int(varying.sum()),), 1.0, dtype=torch.float64))
    cfg.scaling = "robust"
    with pytest.raises(ValueError, match="model.scaling"):
        StructRepDiff(cfg)


def test_training_loss_is_finite_and_trains(model_and_items):
    model, items = model_and_items
    batch = collate(items)
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.training_loss(batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])


def test_statistics_travel_with_the_state_dict(model_and_items):
    model, _ = model_and_items
    restored = StructRepDiff(model.cfg)
    restored.load_state_dict(model.state_dict())
    torch.testing.assert_close(restored.scaler.std, model.scaler.std)
    torch.testing.assert_close(restored.scaler.low, model.scaler.low)
    assert bool(torch.isfinite(restored.scaler.high).all())
    assert int(restored.max_atoms_seen) == 5


@pytest.mark.parametrize("sampler", [AncestralSampler(steps=5), DDIMSampler(steps=5)])
def test_sampling_and_decoding_with_core_samplers(model_and_items, sampler):
    model, _ = model_and_items
    model.eval()
    condition = model.prepare_sampling(SampleRequest(3))
    state = sampler.run(model, condition, generator=torch.Generator().manual_seed(0))
    assert state[VARIABLE].shape == (3, model.layout.size)
    decoded = model.decode(state, condition)
    assert len(decoded) == 3
    for d in decoded:  # an untrained model gives junk; each crystal is a Structure or a stated reason
        assert d.structure is not None or d.reason


def test_sampling_keeps_the_clean_estimate_in_the_training_range(model_and_items):
    """A denoiser far off (here: eps_hat = x_t + 3) makes x0_hat = (x_t - s eps_hat) / a explode near t = T; with
    clip_x0 the sample stays inside the training range of every feature, without it it does not."""
    model, _ = model_and_items
    model.eval()
    model.denoiser.predict = lambda x, t: x + 3.0
    low, high = model.scaler.low.float(), model.scaler.high.float()
    for clip in (True, False):
        model.clip_x0 = clip
        condition = model.prepare_sampling(SampleRequest(4))
        x = AncestralSampler(steps=20).run(model, condition, generator=torch.Generator().manual_seed(0))[VARIABLE]
        inside = bool(((x >= low - 1e-4) & (x <= high + 1e-4)).all())
        assert inside is clip, (clip, float(x.abs().max()))


def test_decoding_the_training_mean_gives_a_crystal(model_and_items):
    model, _ = model_and_items
    state = {VARIABLE: torch.zeros(1, model.layout.size)}  # normalised zero = the mean representation
    (decoded,) = model.decode(state, model.prepare_sampling(SampleRequest(1)))
    assert decoded.ok, decoded.reason
    assert decoded.info["reconstruction_steps"] > 0 and decoded.info["reconstruction_loss"] is not None


def test_reconstruct_task_recovers_small_crystals(model_and_items):
    """The true descriptors of rock salt, CsCl and a 3-atom triclinic crystal decode back to matching crystals.

    The tiny test descriptor (L <= 1, 6 A) with statistics from five crystals is too coarse for larger cells; the
    paper descriptor on real Perov-5 crystals is measured by bench/structrepdiff_reconstruction.py.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    model, items = model_and_items
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    truths = [crystals()[1], crystals()[2], cscl]
    chosen = [items[1], items[2], StructRepDiff.transform(model.cfg)(cscl)]
    model.decoder.settings = BasinHopping(trials=4, hops=2, iterations=60, lr=0.3, lr_final=0.005, loss_threshold=0.01)
    decoded = model.reconstruct(collate(chosen), None, generator=torch.Generator().manual_seed(0))
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    for d, truth in zip(decoded, truths, strict=True):
        assert d.ok and matcher.fit(d.structure, truth), (d.info, d.structure)


def test_loss_weighting_none_is_the_plain_l1(model_and_items):
    model, _ = model_and_items
    plain = StructRepDiff(tiny_model_config(loss_weighting="none"))
    plain.load_state_dict(model.state_dict())
    weighted, unweighted = (m.decoder.reconstructor(m.scaler.std).weights for m in (model, plain))
    assert torch.equal(unweighted, torch.ones_like(unweighted))
    assert weighted.shape == unweighted.shape and not torch.allclose(weighted, unweighted)
    with pytest.raises(ValueError, match="loss_weighting: 'std' is not one of spread, none"):
        StructRepDiff(tiny_model_config(loss_weighting="std"))


def test_unsupported_conditions_are_refused(model_and_items):
    from crystalgen.models.base import UnsupportedRequestError

    model, _ = model_and_items
    with pytest.raises(UnsupportedRequestError, match="spacegroup"):
        model.prepare_sampling(SampleRequest(2, spacegroup=225))
    unfitted = StructRepDiff(tiny_model_config())
    with pytest.raises(RuntimeError, match="statistics"):
        unfitted.prepare_sampling(SampleRequest(1))
