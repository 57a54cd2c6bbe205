"""The command line end to end on the test-only ``toy`` model: run, sample, and the clear refusals.

Everything runs in-process through ``crystalgen.cli.main.main`` (as the console script does), on the embedded
dataset with tiny overrides so the whole module takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from crystalgen.cli.main import VERBS, build_parser, main
from crystalgen.resources import THREADS_ENV, usable_cores

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")

TINY = ["--no-progress", "model.num_steps=10", "trainer.max_epochs=2", "data.max_train_rows=32", "data.max_val_rows=8",
        "data.workers=0", "sample.num_samples=6", "sample.batch_size=4", "evaluate.metrics=[validity]",
        "evaluate.workers=1", "evaluate.train_split=null"]
SAMPLE_KEYS = {"index", "ok", "reason", "cif", "formula", "num_atoms"}


pytestmark = pytest.mark.usefixtures("private_cache", "one_torch_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One `crystalgen run toy` shared by the tests below."""
    root = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("CRYSTALGEN_CACHE", str(root / "cache"))
    try:
        assert main(["run", "toy", "--runs-root", str(root), *TINY]) == 0
    finally:
        mp.undo()
    (run,) = [p for p in root.iterdir() if p.name.startswith("toy-embedded-")]
    return run


def test_every_cif_of_a_run_reads_back_with_pymatgen(run_dir):
    from pymatgen.core import Structure

    decoded = [r for r in rows(run_dir / "samples") if r["ok"]]
    assert decoded
    for row in decoded:
        if row["cif"]:
            assert len(Structure.from_file(run_dir / "samples" / row["cif"])) == row["num_atoms"]
        else:
            assert row["cif_omitted"]  # kept in samples.extxyz only
    assert sorted(p.name for p in (run_dir / "samples" / "cif").iterdir()) == sorted(
        Path(r["cif"]).name for r in decoded if r["cif"])


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


def test_run_leaves_the_documented_run_directory(run_dir):
    for name in ("config.yaml", "checkpoints/last.ckpt", "checkpoints/best.ckpt", "train_log.csv", "run.log",
                 "samples/samples.jsonl", "samples/samples.extxyz", "samples/sampling.json",
                 "metrics/metrics.json", "metrics/metrics.md", "report.md", "training_loss.png", "validation_loss.png"):
        assert (run_dir / name).is_file(), f"{name} missing from the run directory"
    report = (run_dir / "report.md").read_text()
    assert "toy model for tests" in report  # the preset note travels into every report
    assert "model.num_steps" not in report and "num_steps: 10" in (run_dir / "config.yaml").read_text()
    metrics = json.loads((run_dir / "metrics/metrics.json").read_text())
    assert metrics["n_samples"] == 6
    assert metrics["reference_source"] == "embedded:test"  # provenance of the reference split travels too
    assert "report.md" in (run_dir / "run.log").read_text()


def test_every_results_file_records_the_threads_that_produced_it(run_dir):
    """The run's training, its samples and its metrics each say how many threads made them, and why."""
    (entry,) = json.loads((run_dir / "resources.json").read_text())
    assert entry["stage"] == "train"
    assert entry["threads"] == {"threads": 1, "source": "environment", "usable_cores": usable_cores(),
                                "load_average": entry["threads"]["load_average"], "processes": 1, "busy_cores": None}
    assert json.loads((run_dir / "samples/sampling.json").read_text())["threads"] == entry["threads"]
    metrics = json.loads((run_dir / "metrics/metrics.json").read_text())
    assert (metrics["threads"], metrics["threads_source"]) == (1, "environment")
    assert "threads: 1" in (run_dir / "metrics/metrics.md").read_text()


def test_threads_option_is_applied_and_recorded_by_sample_and_evaluate(run_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(THREADS_ENV)
    out = tmp_path / "s"
    assert main(["sample", "toy", "--ckpt", str(run_dir / "checkpoints/last.ckpt"), "-n", "2", "--out", str(out),
                 "--no-progress", "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2  # (the fixtures put the thread count back afterwards)
    threads = json.loads((out / "sampling.json").read_text())["threads"]
    assert (threads["threads"], threads["source"]) == (2, "option")
    monkeypatch.delenv(THREADS_ENV)  # set by `sample` for its workers, as it is for any process it starts
    metrics = tmp_path / "m"
    assert main(["evaluate", str(out), "--reference", "embedded:test", "--metrics", "validity", "--workers", "1",
                 "--out", str(metrics), "--no-progress", "--threads", "auto"]) == 0
    result = json.loads((metrics / "metrics.json").read_text())
    assert result["threads_source"] == "auto" and result["threads_usable_cores"] == usable_cores()
    assert 1 <= result["threads"] <= usable_cores()


def test_threads_shortcut_lands_in_the_run_config_and_a_busy_machine_is_warned_about(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    target = tmp_path / "r"
    assert main(["train", "toy", "--run-dir", str(target), *TINY, "trainer.max_epochs=1", "--threads", "1"]) == 0
    assert "\nthreads: 1\n" in (target / "config.yaml").read_text()
    (entry,) = json.loads((target / "resources.json").read_text())
    assert entry["threads"]["source"] == "option" and entry["threads"]["load_average"] == 99.0
    printed = capsys.readouterr()
    warning = "the 1-minute load average is 99.0, above the"
    assert warning in printed.out + printed.err and warning in (target / "run.log").read_text()


#: Every verb that computes, with its required arguments.
COMPUTING_VERBS = [["train", "toy"], ["run", "toy"], ["sample", "toy", "--ckpt", "x", "-n", "1", "--out", "o"],
                   ["evaluate", "s", "--reference", "embedded:test", "--out", "o"],
                   ["reconstruct", "toy", "--ckpt", "x", "--input", "embedded:test", "--out", "o"],
                   ["optimize", "toy", "--ckpt", "x", "--input", "embedded:test", "--out", "o"],
                   ["data", "prepare", "embedded", "--model", "toy"], ["data", "info", "embedded"]]


@pytest.mark.parametrize("command", COMPUTING_VERBS, ids=lambda c: " ".join(c[:2]))
def test_every_computing_verb_takes_threads_and_refuses_a_bad_value(command, capsys):
    parser, _ = build_parser(command)
    args, _ = parser.parse_known_args([*command, "--threads", "3"])
    assert args.threads == 3
    assert parser.parse_known_args([*command, "--threads", "auto"])[0].threads == "auto"
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--threads", "0"])
    assert exit_info.value.code == 2
    assert "--threads: expected a whole number of threads (at least 1) or auto, got '0'" in capsys.readouterr().err


def test_strict_makes_a_crystal_above_the_atom_limit_fatal(tmp_path, capsys):
    """model.max_atoms=6 refuses the larger crystals among the first 32: skipped and summarised by default, fatal with --strict."""
    args = ["train", "toy", "--runs-root", str(tmp_path), *TINY, "model.max_atoms=6", "trainer.max_epochs=1"]
    assert main(args) == 0
    assert main([*args, "--strict"]) != 0
    assert "atoms" in capsys.readouterr().err


def test_train_into_a_run_dir_that_does_not_exist_yet(tmp_path):
    target = tmp_path / "nested" / "my-run"
    assert main(["train", "toy", "--run-dir", str(target), *TINY]) == 0
    assert (target / "checkpoints/last.ckpt").is_file() and (target / "run.log").is_file()


def test_sample_writes_one_row_per_requested_crystal_with_cif_and_extxyz(run_dir, tmp_path):
    from ase.io import read

    out = tmp_path / "samples"
    code = main(["sample", "toy", "--ckpt", str(run_dir / "checkpoints/last.ckpt"), "-n", "5", "--out", str(out),
                 "--batch-size", "2", "--sampler", "ddim", "--steps", "5", "--option", "eta=0.5", "--no-progress"])
    assert code == 0
    table = rows(out)
    assert [r["index"] for r in table] == list(range(5))
    assert all(set(r) >= SAMPLE_KEYS for r in table)
    ok = [r for r in table if r["ok"]]
    assert sorted(p.name for p in (out / "cif").iterdir()) == [f"{r['index']:06d}.cif" for r in ok]
    assert all(r["cif"] == f"cif/{r['index']:06d}.cif" and r["num_atoms"] >= 1 for r in ok)
    assert len(read(out / "samples.extxyz", index=":")) == len(ok)
    summary = json.loads((out / "sampling.json").read_text())
    assert summary["sampler"] == {"name": "ddim", "steps": 5, "eta": 0.5}
    assert summary["counts"]["requested"] == 5 and summary["counts"]["ok"] == len(ok)


def test_non_finite_samples_and_failing_batches_are_counted_not_fatal(run_dir, tmp_path, monkeypatch):
    from crystalgen_toy_model.model import ToyDiffusion

    original = ToyDiffusion.denoise
    calls = {"batch": 0}

    def sabotaged(self, state, t, condition):
        """Batch 1: NaN lattice at the last step (a non-finite output). Batch 2: NaN everywhere from the start,
        so the categorical step raises; so do its two halves, sampled again one crystal each (calls 3 and 4).
        Batch 3 (call 5): untouched."""
        prediction = original(self, state, t, condition)
        if int(t[0]) == self.num_steps:
            calls["batch"] += 1
        if calls["batch"] == 1 and int(t[0]) == 1:
            return {**prediction, "lattice": torch.full_like(prediction["lattice"], float("nan"))}
        if 2 <= calls["batch"] <= 4:
            return {k: torch.full_like(v, float("nan")) for k, v in prediction.items()}
        return prediction

    monkeypatch.setattr(ToyDiffusion, "denoise", sabotaged)
    out = tmp_path / "nan"
    assert main(["sample", "toy", "--ckpt", str(run_dir / "checkpoints/last.ckpt"), "-n", "6", "--batch-size", "2",
                 "--out", str(out), "--no-progress"]) == 0
    reasons = [r["reason"] for r in rows(out)]
    assert reasons[:2] == ["non-finite lattice"] * 2
    assert all(r.startswith("sampling failed: RuntimeError") for r in reasons[2:4])
    assert reasons[4:] == [None, None]
    counts = json.loads((out / "sampling.json").read_text())["counts"]
    assert counts["requested"] == 6 and counts["ok"] == 2
    assert counts["failed_by_reason"] == {"non-finite lattice": 2, "sampling failed": 2}
    assert calls["batch"] == 5


def test_when_every_batch_fails_the_reasons_are_written_and_the_error_is_one_line(run_dir, tmp_path, monkeypatch,
                                                                                  capsys):
    from crystalgen_toy_model.model import ToyDiffusion

    def broken(self, state, t, condition):
        raise RuntimeError("probability tensor contains nan")

    monkeypatch.setattr(ToyDiffusion, "denoise", broken)
    out = tmp_path / "all_failed"
    code = main(["sample", "toy", "--ckpt", str(run_dir / "checkpoints/last.ckpt"), "-n", "4", "--batch-size", "2",
                 "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert "none of the 4 crystals could be generated" in err and "probability tensor contains nan" in err
    assert str(out / "samples.jsonl") in err
    assert [r["reason"] for r in rows(out)] == ["sampling failed: RuntimeError: probability tensor contains nan"] * 4
    assert json.loads((out / "sampling.json").read_text())["counts"]["ok"] == 0


def test_truncated_checkpoint_gives_an_error_naming_the_file(run_dir, tmp_path, capsys):
    broken = tmp_path / "broken.ckpt"
    data = (run_dir / "checkpoints/last.ckpt").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    code = main(["sample", "toy", "--ckpt", str(broken), "-n", "2", "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"checkpoint {broken}: truncated (" in err.splitlines()[0]


def test_checkpoint_with_overwritten_bytes_is_refused_before_sampling(run_dir, tmp_path, capsys):
    damaged = tmp_path / "damaged.ckpt"
    data = bytearray((run_dir / "checkpoints/last.ckpt").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(range(256)) * 16
    damaged.write_bytes(bytes(data))
    code = main(["sample", "toy", "--ckpt", str(damaged), "-n", "2", "--out", str(tmp_path / "x"), "--no-progress"])
    first, *_ = capsys.readouterr().err.splitlines()
    assert code == 2
    assert first == (f"crystalgen sample: error: checkpoint {damaged}: corrupt (content digest mismatch: the file "
                     "changed after it was written); use another checkpoint of the run (checkpoints/last.ckpt or "
                     "best.ckpt) or train again")
    assert not (tmp_path / "x").exists()
    code = main(["sample", "other", "--ckpt", str(run_dir / "checkpoints/last.ckpt"), "-n", "2", "--out",
                 str(tmp_path / "y"), "--no-progress"])
    assert code == 2 and "other model (holds 'toy', not 'other')" in capsys.readouterr().err


def test_unknown_config_key_suggests_the_right_one(tmp_path, capsys):
    assert main(["train", "toy", "--runs-root", str(tmp_path), "trainer.max_epoch=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'trainer.max_epoch'" in err and "Did you mean 'trainer.max_epochs'?" in err

    user = tmp_path / "mine.yaml"
    user.write_text("model:\n  num_step: 8\n")
    assert main(["train", "toy", "--runs-root", str(tmp_path), "--config", str(user)]) == 2
    err = capsys.readouterr().err
    assert str(user) in err and "'model.num_step'" in err and "Did you mean 'model.num_steps'?" in err

    # a part's options are its constructor's: checked when the model is assembled, before any run folder exists
    assert main(["train", "toy", "--runs-root", str(tmp_path), "model.denoiser.hiden=8"]) == 2
    err = capsys.readouterr().err
    assert "model.denoiser: ToyDenoiser has no option 'hiden'. Did you mean 'hidden'?" in err
    assert not any(tmp_path.glob("toy-*")), "a run directory was created for an invalid configuration"


def test_unsupported_condition_is_refused_clearly(run_dir, tmp_path, capsys):
    code = main(["sample", "toy", "--ckpt", str(run_dir / "checkpoints/last.ckpt"), "-n", "2", "--out",
                 str(tmp_path / "c"), "--composition", "NaCl", "--no-progress"])
    assert code == 2
    assert "cannot condition on composition (it accepts: none)" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_incompatible_sampler_names_the_compatible_ones(run_dir, tmp_path, capsys):
    code = main(["sample", "toy", "--ckpt", str(run_dir / "checkpoints/last.ckpt"), "-n", "2", "--out",
                 str(tmp_path / "s"), "--sampler", "langevin", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot sample this model" in err and "Compatible samplers:" in err and "ancestral" in err


def test_model_option_amends_the_checkpoint_configuration(run_dir, tmp_path):
    """A setting outside the weights (here a loss weight) is changed for one sampling run and recorded with it."""
    from crystalgen.runner.models import load_trained

    ckpt = run_dir / "checkpoints/last.ckpt"
    trained = load_trained(ckpt, model_overrides=["loss_weights.lattice=2.5"])
    assert trained.model.loss_weights["lattice"] == 2.5 and trained.config.model.loss_weights.lattice == 2.5
    assert load_trained(ckpt).model.loss_weights["lattice"] == 1.0  # the checkpoint itself is untouched
    out = tmp_path / "s"
    assert main(["sample", "toy", "--ckpt", str(ckpt), "-n", "2", "--out", str(out), "--no-progress",
                 "--model-option", "loss_weights.lattice=2.5"]) == 0
    assert json.loads((out / "sampling.json").read_text())["model_overrides"] == ["loss_weights.lattice=2.5"]


@pytest.mark.parametrize(("override", "message"), [
    ("denoiser.hiden=64", "unknown key 'denoiser.hiden'. Did you mean 'denoiser.hidden'?"),
    ("denoiser.hidden=64", "does not fit model 'toy'"),
])
def test_model_option_refuses_unknown_keys_and_other_architectures(run_dir, tmp_path, capsys, override, message):
    code = main(["sample", "toy", "--ckpt", str(run_dir / "checkpoints/last.ckpt"), "-n", "2", "--out",
                 str(tmp_path / "s"), "--no-progress", "--model-option", override])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["reconstruct", "optimize"])
def test_optional_tasks_are_refused_for_models_without_them(run_dir, tmp_path, capsys, verb):
    code = main([verb, "toy", "--ckpt", str(run_dir / "checkpoints/last.ckpt"), "--input", "embedded:test",
                 "--out", str(tmp_path / verb), "--no-progress"])
    assert code == 2
    assert f"does not support {verb!r}" in capsys.readouterr().err


def test_train_resume_continues_the_run(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert main(["train", "toy", "--resume", str(copy), "--no-progress", "trainer.max_epochs=3"]) == 0
    from crystalgen.runner.checkpoint import load_checkpoint

    progress = load_checkpoint(copy / "checkpoints/last.ckpt")["progress"]
    assert progress["epoch"] == 3 and progress["finished"]
    assert "trainer.max_epochs" not in capsys.readouterr().err


def continue_line(printed: str) -> list[str]:
    """The command after `continue with:` in the output of `crystalgen train`, split as a shell would."""
    import shlex

    (line,) = [ln for ln in printed.splitlines() if "continue with: " in ln]
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[:2] == ["crystalgen", "train"]
    return command[1:]


def test_the_printed_command_after_a_time_budget_stop_trains_for_another_budget(tmp_path, capsys):
    """Resuming with the same summed budget would stop after one step; the printed command grants a new one."""
    from crystalgen.runner.checkpoint import load_checkpoint

    run = tmp_path / "budget"
    budget = 0.03  # minutes: a few dozen toy steps
    assert main(["train", "toy", "--run-dir", str(run), *TINY, "data.batch_size=4", "trainer.max_epochs=100000",
                 "trainer.val_every=100000", f"trainer.max_minutes={budget}"]) == 0
    first = load_checkpoint(run / "checkpoints/last.ckpt")["progress"]
    assert first["stop_reason"].startswith("time budget") and not first["finished"]
    command = continue_line(capsys.readouterr().out)
    assert command == ["train", "toy", "--resume", str(run), "--more-minutes", f"{budget:g}"]

    assert main(command) == 0
    second = load_checkpoint(run / "checkpoints/last.ckpt")["progress"]
    assert second["stop_reason"].startswith("time budget")
    assert second["global_step"] > first["global_step"] + 1, "the resumed run stopped after one step"
    assert second["train_seconds"] >= first["train_seconds"] + 0.9 * budget * 60
    assert continue_line(capsys.readouterr().out) == command  # the same command continues again


def test_more_minutes_is_refused_without_resume_or_beside_a_budget_override(run_dir, tmp_path, capsys):
    assert main(["train", "toy", "--runs-root", str(tmp_path), "--more-minutes", "5", *TINY]) == 2
    assert "--more-minutes continues a run: use it with --resume" in capsys.readouterr().err
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert main(["train", "toy", "--resume", str(copy), "--more-minutes", "5", "trainer.max_minutes=3"]) == 2
    assert "either --more-minutes or trainer.max_minutes" in capsys.readouterr().err


def test_list_json_shows_plugins_components_and_versions(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    toy = next(e for e in data["components"]["model"] if e["name"] == "toy")
    assert toy["distribution"] == "crystalgen-toy-model" and toy["version"] == "0.1.0"
    assert {"plugins", "components", "failures", "conflicts"} <= set(data)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert "Example" in capsys.readouterr().out


class _Clashing:
    """An in-process plugin that registers `toy` again and whose sampler hook raises."""

    @staticmethod
    def crystalgen_models():
        return {"toy": object}

    @staticmethod
    def crystalgen_samplers():
        raise RuntimeError("broken on purpose")


def test_list_reports_load_failures_and_name_conflicts(monkeypatch, capsys):
    from crystalgen import plugins
    from crystalgen.hookspecs import hookimpl

    for hook in ("crystalgen_models", "crystalgen_samplers"):
        hookimpl(getattr(_Clashing, hook))
    host = plugins.build_host(extra_plugins=[_Clashing])
    monkeypatch.setattr(plugins, "default_host", lambda: host)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "Problems:" in out
    assert "crystalgen_samplers raised RuntimeError: broken on purpose" in out
    assert "model 'toy' is registered twice" in out and "ignored plugin '_Clashing'" in out


def test_a_closed_output_pipe_ends_quietly():
    """`crystalgen list | head -1`: the reader is gone before the listing is written; no traceback, exit 141."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "crystalgen", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err
