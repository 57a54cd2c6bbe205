"""The StructRepDiff recipe: registration, training loss, sampling with ancestral and DDIM, decoding, reconstruct."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Lattice, Structure
from structrepdiff_testdata import tiny_model_config, triclinic_structure

from crystalgen import plugins
from crystalgen.data.crystal import collate
from crystalgen.samplers.ancestral import AncestralSampler
from crystalgen.samplers.ddim import DDIMSampler
from crystalgen.state import SampleRequest
from crystalgen_structrepdiff.model import VARIABLE, StructRepDiff


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
    assert "structrepdiff_ead" in host.registry("encoder") and "structrepdiff_unet1d" in host.registry("denoiser")
    assert "structrepdiff_reconstruction" in host.registry("decoder")
    assert {"small", "paper"} <= set(StructRepDiff.presets())


def test_presets_build(tmp_path):
    from omegaconf import OmegaConf

    for name, path in StructRepDiff.presets().items():
        cfg = OmegaConf.load(path)
        model = StructRepDiff(cfg.model)
        assert model.layout.size == 2 * model.encoder.params.num_features + 96 + 8, name
    paper = StructRepDiff(OmegaConf.load(StructRepDiff.presets()["paper"]).model)
    assert paper.encoder.params.num_features == 1206 and paper.processes[VARIABLE].num_steps == 2000
    assert (paper.basin_hopping.trials, paper.basin_hopping.hops, paper.basin_hopping.iterations) == (6, 7, 300)


def test_search_additions_come_from_the_config_and_default_to_the_paper():
    """Checkpoints written before an addition existed lack its key: they must load with the paper's search."""
    plain = StructRepDiff(tiny_model_config()).basin_hopping
    assert (plain.relocate_atoms, plain.relocate_closer_than, plain.d_min_penalty) == (0, 0.0, 0.0)
    tuned = StructRepDiff(tiny_model_config(relocate_atoms=1, relocate_closer_than=0.5, d_min_penalty=2.0)).basin_hopping
    assert (tuned.relocate_atoms, tuned.relocate_closer_than, tuned.d_min_penalty) == (1, 0.5, 2.0)


def test_scaling_comes_from_the_config():
    """model.scaling picks the scaler's fit; a checkpoint from before the key existed keeps the standard one."""
    items = [StructRepDiff.transform(tiny_model_config())(s) for s in crystals()]
    cfg = tiny_model_config()
    cfg.scaling = "minmax"
    minmax = StructRepDiff(cfg)
    minmax.fit_statistics(items)
    varying = minmax.scaler.high - minmax.scaler.low > 1e-3  # features the scaler did not treat as constant
    assert bool(varying.any())
    torch.testing.assert_close(minmax.scaler.low[varying], torch.full((int(varying.sum()),), -1.0, dtype=torch.float64))
    torch.testing.assert_close(minmax.scaler.high[varying], torch.full((int(varying.sum()),), 1.0, dtype=torch.float64))
    assert StructRepDiff(tiny_model_config()).scaling == "standard"
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
    model.denoiser.forward = lambda x, t: x + 3.0
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
    model.basin_hopping = type(model.basin_hopping)(trials=4, hops=2, iterations=60, lr=0.3, lr_final=0.005, loss_threshold=0.01)
    model._reconstructor = None
    decoded = model.reconstruct(collate(chosen), None, generator=torch.Generator().manual_seed(0))
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    for d, truth in zip(decoded, truths, strict=True):
        assert d.ok and matcher.fit(d.structure, truth), (d.info, d.structure)


def test_loss_weighting_none_is_the_plain_l1(model_and_items):
    model, _ = model_and_items
    plain = StructRepDiff(tiny_model_config(loss_weighting="none"))
    plain.load_state_dict(model.state_dict())
    weighted, unweighted = model.reconstructor().weights, plain.reconstructor().weights
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
