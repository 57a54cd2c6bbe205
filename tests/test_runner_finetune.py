"""Fine-tuning (``trainer.init_from``): pretrain on one dataset, fine-tune on another.

Weights come over exactly (a fine-tune at learning rate 0 ends with the pretrained weights), while the optimiser,
step counter, best loss and data statistics start afresh on the new data; a subset of tensors can be taken, and
tensors that do not fit are named (strict: refused; non-strict: left at their fresh initialisation).
"""

from __future__ import annotations

import json

import pytest
import torch

from crystalgen.cli.main import main
from crystalgen.runner.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from crystalgen.runner.config import apply_user_layers, compose
from crystalgen.runner.init_from import InitFromError, load_initial_weights
from crystalgen.runner.models import model_class
from crystalgen.runner.pipeline import train
from crystalgen.runner.run_dir import RunDir

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")
from crystalgen_toy_model.crystals import toy_structures  # noqa: E402

BASE = ["trainer.max_epochs=2", "data.batch_size=6", "trainer.log_every=1", "model.num_steps=10"]
STATISTICS = ("lattice_mean", "lattice_std", "num_atoms_probs", "processes.atom_types.marginal")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(*overrides: str):
    cls = model_class("toy")
    return compose(cls.presets(), "small", model_name="toy", overrides=[*BASE, *overrides])


def items(structures):
    transform = model_class("toy").transform(config().model)
    return [transform(s) for s in structures]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A toy model pretrained on all four prototypes; returns its run directory."""
    run = RunDir(tmp_path_factory.mktemp("pretrain"))
    data = items(toy_structures(16, seed=1))
    progress = train("toy", config(), run, data=(data[:12], data[12:]), show_progress=False)
    assert progress.finished
    return run


@pytest.fixture(scope="module")
def new_data():
    """Only rock salt and CsCl cells: other atom counts, lattices and elements than the pretraining data."""
    data = items(toy_structures(24, seed=7))
    subset = [d for i, d in enumerate(data) if i % 4 in (0, 1)]
    return subset[:9], subset[9:]


def test_fine_tuning_carries_the_weights_over_and_starts_optimiser_counters_and_statistics_afresh(tmp_path, pretrained,
                                                                                                    new_data):
    source = load_checkpoint(pretrained.checkpoints / "last.ckpt")
    assert source["progress"]["global_step"] == 4  # 2 epochs x ceil(12 / 6)
    run = RunDir(tmp_path / "finetune")
    # learning rate 0: Adam moves nothing, so the final weights must be the pretrained ones exactly
    cfg = config(f"trainer.init_from={pretrained.checkpoints / 'last.ckpt'}", "trainer.lr=0.0", "trainer.max_epochs=3")
    progress = train("toy", cfg, run, data=new_data, show_progress=False)
    assert progress.finished and progress.epoch == 3
    assert progress.global_step == 6  # 3 epochs x ceil(9 / 6): counted from 0, not from the pretraining's 4
    tuned = load_checkpoint(run.checkpoints / "last.ckpt")
    steps = {int(s["step"]) for s in tuned["optimizer"]["state"].values()}
    assert steps == {6}  # a fresh Adam: its step count is this run's only
    fresh_model = model_class("toy").from_config(cfg.model)
    fresh_model.fit_statistics(new_data[0])
    for name, value in tuned["model"].items():
        if name in STATISTICS:  # fitted on the new data, not carried over
            torch.testing.assert_close(value, fresh_model.state_dict()[name], msg=name)
            assert not torch.equal(value, source["model"][name]), f"{name} kept the pretraining data's statistics"
        else:
            assert torch.equal(value, source["model"][name]), f"{name} was not carried over"
    report = json.loads(run.init_from.read_text())
    assert report["checkpoint_model"] == "toy" and not report["missing"] + report["unexpected"] + report["mismatched"]
    assert set(report["loaded"]) == set(source["model"])
    log_steps = [int(line.split(",")[0]) for line in run.train_log.read_text().splitlines()[1:]]
    assert min(log_steps) == 1  # a fresh log, counted from this run's first step


def test_a_subset_of_tensors_is_taken_by_prefix_and_a_prefix_matching_nothing_is_refused(pretrained):
    cfg = config()
    model = model_class("toy").from_config(cfg.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = pretrained.checkpoints / "last.ckpt"
    report = load_initial_weights(model, path, keys=["denoiser.frac_head", "denoiser.type_embedding"])
    assert sorted(report.loaded) == ["denoiser.frac_head.bias", "denoiser.frac_head.weight",
                                     "denoiser.type_embedding.weight"]
    source = load_checkpoint(path)["model"]
    for name, value in model.state_dict().items():
        expected = source[name] if name in report.loaded else before[name]
        assert torch.equal(value, expected), name
    with pytest.raises(InitFromError, match=r"\['denoiser.frac_hed'\] select no tensor"):
        load_initial_weights(model, path, keys=["denoiser.frac_hed"])


@pytest.fixture
def misfit_checkpoint(tmp_path, pretrained):
    """The pretrained checkpoint with one tensor removed, one renamed and one of another shape."""
    payload = load_checkpoint(pretrained.checkpoints / "last.ckpt")
    weights = dict(payload["model"])
    del weights["denoiser.frac_head.bias"]
    weights["denoiser.old_head.weight"] = weights.pop("denoiser.lattice_head.0.weight")
    weights["denoiser.type_head.weight"] = weights["denoiser.type_head.weight"][:50]
    path = tmp_path / "misfit.ckpt"
    save_checkpoint({**payload, "model": weights}, path)
    return path, weights


def test_strict_initialisation_names_every_tensor_that_does_not_fit_and_loads_nothing(misfit_checkpoint):
    path, _ = misfit_checkpoint
    model = model_class("toy").from_config(config().model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InitFromError) as caught:
        load_initial_weights(model, path, strict=True)
    message = str(caught.value)
    for name in ("denoiser.frac_head.bias", "denoiser.lattice_head.0.weight", "denoiser.old_head.weight",
                 "denoiser.type_head.weight (checkpoint (50, 32), model (100, 32))", "init_from_strict=false"):
        assert name in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_non_strict_initialisation_loads_what_fits_and_reports_the_rest(misfit_checkpoint, caplog):
    path, weights = misfit_checkpoint
    model = model_class("toy").from_config(config().model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_initial_weights(model, path, strict=False)
    assert report.missing == ["denoiser.frac_head.bias", "denoiser.lattice_head.0.weight"]
    assert report.unexpected == ["denoiser.old_head.weight"]
    assert report.mismatched == ["denoiser.type_head.weight (checkpoint (50, 32), model (100, 32))"]
    left = {"denoiser.frac_head.bias", "denoiser.lattice_head.0.weight", "denoiser.type_head.weight"}
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name] if name in left else weights[name]), name
    assert "denoiser.old_head.weight" in caplog.text and "left at their fresh initialisation" in caplog.text


def test_init_from_is_verified_and_resume_does_not_apply_it_again(tmp_path, pretrained, new_data):
    damaged = tmp_path / "damaged.ckpt"
    blob = bytearray((pretrained.checkpoints / "last.ckpt").read_bytes())
    blob[-10] ^= 0xFF
    damaged.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="digest mismatch"):
        train("toy", config(f"trainer.init_from={damaged}"), RunDir(tmp_path / "bad"), data=new_data, show_progress=False)
    # a fine-tuned run resumed: its own state continues (the step counter goes on from 6, not from 0)
    run = RunDir(tmp_path / "tuned")
    cfg = config(f"trainer.init_from={pretrained.checkpoints / 'last.ckpt'}", "trainer.max_epochs=3")
    train("toy", cfg, run, data=new_data, show_progress=False)
    more = apply_user_layers(cfg.copy(), overrides=["trainer.max_epochs=4"])
    progress = train("toy", more, run, data=new_data, show_progress=False, resume=run.checkpoints / "last.ckpt")
    assert progress.global_step == 8 and progress.epoch == 4


def test_the_command_line_refuses_init_from_with_resume_and_a_missing_checkpoint(tmp_path, capsys):
    assert main(["train", "toy", "--init-from", "a.ckpt", "--resume", str(tmp_path), "--runs-root", str(tmp_path)]) == 2
    assert "give one" in capsys.readouterr().err
    assert main(["train", "toy", "--init-from", str(tmp_path / "none.ckpt"), "--runs-root", str(tmp_path / "runs")]) == 2
    assert "none.ckpt: does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_crystalgen_train_init_from_fine_tunes_from_the_command_line(tmp_path, pretrained, monkeypatch, capsys):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))
    tiny = ["--no-progress", "model.num_steps=10", "trainer.max_epochs=1", "data.max_train_rows=12",
            "data.max_val_rows=4", "data.workers=0"]
    ckpt = pretrained.checkpoints / "last.ckpt"
    assert main(["train", "toy", "--init-from", str(ckpt), "--run-dir", str(tmp_path / "tuned"), *tiny]) == 0
    run = RunDir(tmp_path / "tuned")
    report = json.loads(run.init_from.read_text())
    assert report["checkpoint"] == str(ckpt.resolve()) and report["loaded"]
    assert load_checkpoint(run.checkpoints / "last.ckpt")["progress"]["global_step"] == 1
