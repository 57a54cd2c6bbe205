"""The command line end to end on a tiny CDVAE trained for one epoch on the embedded dataset: sampling with the
predictor-corrector sampler, reconstruction and property optimisation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_config
from crystalgen.cli.main import main
from crystalgen.runner.pipeline import train
from crystalgen.runner.run_dir import RunDir


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cdvae_cli")
    cfg = tiny_config(**{
        "model.property": "volume_per_atom", "data.max_train_rows": 24, "data.max_val_rows": 8, "data.batch_size": 8,
        "data.cache_dir": str(root / "cache"), "trainer.max_epochs": 1, "trainer.device": "cpu",
    })
    run = RunDir(root / "run")
    train("cdvae", cfg, run, show_progress=False)
    return run.checkpoints / "last.ckpt"


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


def test_sample_with_the_predictor_corrector_sampler(checkpoint, tmp_path):
    out = tmp_path / "samples"
    assert main(["sample", "cdvae", "--ckpt", str(checkpoint), "--out", str(out), "-n", "4", "--sampler", "pc",
                 "--steps", "5", "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads((out / "sampling.json").read_text())
    assert summary["sampler"]["name"] == "pc" and summary["counts"]["requested"] == 4
    assert len(rows(out)) == 4


def test_reconstruct_and_optimize_from_the_command_line(checkpoint, tmp_path, capsys):
    recon = tmp_path / "recon"
    assert main(["reconstruct", "cdvae", "--ckpt", str(checkpoint), "--input", "embedded:test", "-n", "3",
                 "--out", str(recon), "--steps", "3", "--option", "n_steps_each=1", "--device", "cpu", "--no-progress"]) == 0
    assert [r["input_index"] for r in rows(recon)] == [0, 1, 2]
    opt = tmp_path / "opt"
    assert main(["optimize", "cdvae", "--ckpt", str(checkpoint), "--input", "embedded:test", "-n", "2", "--opt-steps", "20",
                 "--out", str(opt), "--steps", "2", "--option", "n_steps_each=1", "--device", "cpu", "--no-progress"]) == 0
    found = rows(opt)
    # decode_every 100 in the small preset: step 1 and the last step (20) per start
    assert [(r["input_index"], r["opt_step"]) for r in found] == [(0, 1), (0, 20), (1, 1), (1, 20)]
    assert all("predicted_property" in r for r in found)
    # SR thresholds are published for the benchmark datasets only; elsewhere the command says what to pass
    assert main(["evaluate", str(opt), "--task", "optimization", "--reference", "embedded:test",
                 "--out", str(tmp_path / "opt_metrics"), "--no-progress"]) == 2
    assert "--percentiles P5,P10,P15" in capsys.readouterr().err


def test_sampling_defaults_to_the_sampler_settings_the_run_configured(checkpoint, tmp_path):
    """The small preset samples with 5 Langevin steps per level; `crystalgen sample` without --sampler must use
    them (not the paper's 100), let --option override them, and not pass them to a sampler picked by --sampler (pc
    would refuse n_steps_each, as the predictor-corrector test above shows it does not)."""
    def sampler_of(*extra: str) -> dict:
        out = tmp_path / "-".join(extra or ("default",)).replace("=", "")
        assert main(["sample", "cdvae", "--ckpt", str(checkpoint), "--out", str(out), "-n", "2", "--steps", "2",
                     "--device", "cpu", "--no-progress", *extra]) == 0
        return json.loads((out / "sampling.json").read_text())["sampler"]

    default = sampler_of()
    assert default["name"] == "langevin" and default["n_steps_each"] == 5
    assert sampler_of("--option", "n_steps_each=1")["n_steps_each"] == 1
    assert "n_steps_each" not in sampler_of("--sampler", "pc")
