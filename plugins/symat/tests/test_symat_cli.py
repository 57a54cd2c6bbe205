"""The command line end to end on a tiny SyMat trained for one epoch on the embedded dataset: sampling with
Langevin and the predictor-corrector sampler, reconstruction, property optimisation (with the model's own head, and
with one fitted on another split's latents), and the coordinate-space ablation trained by a configuration switch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from symat_testdata import tiny_config

from crystalgen.cli.main import main
from crystalgen.runner.pipeline import train
from crystalgen.runner.run_dir import RunDir


def trained(root: Path, **changes) -> Path:
    cfg = tiny_config(**{
        "model.property": "volume_per_atom", "data.max_train_rows": 24, "data.max_val_rows": 8, "data.batch_size": 8,
        "data.cache_dir": str(root / "cache"), "trainer.max_epochs": 1, "trainer.device": "cpu", **changes,
    })
    run = RunDir(root / "run")
    train("symat", cfg, run, show_progress=False)
    return run.checkpoints / "last.ckpt"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("symat_cli"))


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("sampler", [[], ["--sampler", "pc"]], ids=["langevin", "pc"])
def test_sample(checkpoint, tmp_path, sampler):
    out = tmp_path / "samples"
    assert main(["sample", "symat", "--ckpt", str(checkpoint), "--out", str(out), "-n", "3", "--steps", "3",
                 "--device", "cpu", "--no-progress", *sampler]) == 0
    summary = json.loads((out / "sampling.json").read_text())
    assert summary["sampler"]["name"] == ("pc" if sampler else "langevin") and len(rows(out)) == 3
    if not sampler:
        assert summary["sampler"]["n_steps_each"] == 5  # the small preset's setting


def test_reconstruct_and_optimize_from_the_command_line(checkpoint, tmp_path):
    recon = tmp_path / "recon"
    assert main(["reconstruct", "symat", "--ckpt", str(checkpoint), "--input", "embedded:test", "-n", "3",
                 "--out", str(recon), "--steps", "3", "--option", "n_steps_each=1", "--device", "cpu", "--no-progress"]) == 0
    assert [r["input_index"] for r in rows(recon)] == [0, 1, 2]
    opt = tmp_path / "opt"
    assert main(["optimize", "symat", "--ckpt", str(checkpoint), "--input", "embedded:test", "-n", "2", "--opt-steps", "20",
                 "--out", str(opt), "--steps", "2", "--option", "n_steps_each=1", "--device", "cpu", "--no-progress"]) == 0
    found = rows(opt)
    assert [(r["input_index"], r["opt_step"]) for r in found] == [(0, 20), (1, 20)]
    assert all("predicted_property" in r for r in found)


@pytest.fixture(scope="module")
def headless(tmp_path_factory) -> Path:
    """A model trained without a property head (as on a training split that lacks the property)."""
    return trained(tmp_path_factory.mktemp("symat_cli_headless"), **{"model.property": None})


def test_a_head_fitted_on_another_split_lets_a_model_without_one_optimise(headless, tmp_path, capsys):
    """optimize --fit-head-on embedded:val --property volume_per_atom: the head is fitted on the frozen latents of
    the val crystals, the fit is recorded, the test crystals are optimised, and the evaluation scores them with an
    independent property model and names the head's property."""
    common = ["optimize", "symat", "--ckpt", str(headless), "--input", "embedded:test", "-n", "2", "--opt-steps", "20",
              "--steps", "2", "--option", "n_steps_each=1", "--device", "cpu", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "no_head")]) == 2
    assert "--fit-head-on perov_5:val --property heat_ref" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "lone"), "--property", "volume_per_atom"]) == 2
    assert "go together" in capsys.readouterr().err
    opt = tmp_path / "opt"
    assert main([*common, "--out", str(opt), "--fit-head-on", "embedded:val", "--property", "volume_per_atom"]) == 0
    summary = json.loads((opt / "sampling.json").read_text())
    head = summary["task_record"]["property_head"]
    assert (head["source"], head["property"], head["n_not_finite"]) == ("embedded:val", "volume_per_atom", 0)
    assert head["n_fit"] > 0 and head["n_held_out"] > 0 and 1 <= head["best_epoch"] <= head["epochs"]
    assert summary["task_options"]["fit_head_on"] == "embedded:val"
    assert [(r["input_index"], r["opt_step"]) for r in rows(opt)] == [(0, 20), (1, 20)]
    pytest.importorskip("chgnet")
    metrics_dir = tmp_path / "opt_metrics"
    assert main(["evaluate", str(opt), "--task", "optimization", "--reference", "embedded:test", "--property-predictor",
                 "chgnet_energy", "--percentiles", "100,100,100", "--out", str(metrics_dir), "--no-progress"]) == 0
    metrics = json.loads((metrics_dir / "metrics.json").read_text())
    assert (metrics["SR_head_property"], metrics["SR_head_fitted_on"]) == ("volume_per_atom", "embedded:val")
    assert metrics["SR_property_predictor"] == "chgnet_energy" and metrics["SR_n"] == 2
    assert 0.0 <= metrics["SR5"] <= metrics["SR10"] <= metrics["SR15"] <= 1.0


def test_the_coordinate_space_ablation_is_a_configuration_switch(tmp_path):
    checkpoint = trained(tmp_path, **{"model.score_target": "coordinate", "model.property": None})
    out = tmp_path / "samples"
    assert main(["sample", "symat", "--ckpt", str(checkpoint), "--out", str(out), "-n", "2", "--steps", "2",
                 "--device", "cpu", "--no-progress"]) == 0
    assert len(rows(out)) == 2
