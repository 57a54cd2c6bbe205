"""A rerun picks up where a stopped run left off: `crystalgen run` stopped by SIGINT during training, run again with
the same --run-dir and settings, resumes training from its last checkpoint (the step count and the training log
go on, nothing restarts) and completes; a rerun of a complete run repeats no stage; a rerun with other settings is
refused naming them; `sample` and `evaluate` into a folder left partial say so and write it again from the start.
Uses the test-only `toy` model (tests/fixtures/crystalgen_toy_model, pip install -e)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crystalgen.cli.main import main
from crystalgen.cli.stopping import PARTIAL
from crystalgen.runner.checkpoint import CheckpointError, load_checkpoint

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")

SETTINGS = ["--no-progress", "--threads", "1", "model.num_steps=10", "trainer.max_epochs=40", "trainer.log_every=1",
            "data.max_train_rows=32", "data.max_val_rows=8", "data.workers=0", "sample.num_samples=4",
            "sample.batch_size=4", "evaluate.metrics=[validity]", "evaluate.workers=1", "evaluate.train_split=null"]


def crystalgen(args: list[str], cache: Path) -> subprocess.Popen:
    env = {**os.environ, "CRYSTALGEN_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "crystalgen", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def step_of(ckpt: Path) -> int | None:
    try:
        return load_checkpoint(ckpt)["progress"]["global_step"]
    except CheckpointError:  # not there yet, or being replaced
        return None


def logged_steps(run: Path) -> list[int]:
    with (run / "train_log.csv").open() as f:
        return sorted({int(row["step"]) for row in csv.DictReader(f) if row["metric"] == "train/loss"})


@pytest.fixture(scope="module")
def stopped_and_rerun(tmp_path_factory) -> dict:
    """A run stopped by SIGINT once its first checkpoint is written, then the same command again."""
    tmp = tmp_path_factory.mktemp("rerun")
    run, cache = tmp / "run", tmp / "cache"
    command = ["run", "toy", "--run-dir", str(run), *SETTINGS]
    first = crystalgen(command, cache)
    deadline = time.monotonic() + 600
    while step_of(run / "checkpoints" / "last.ckpt") is None:
        assert first.poll() is None, f"the run ended before its first checkpoint: {first.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    _, first_err = first.communicate(timeout=300)
    stopped = {"code": first.returncode, "err": first_err, "partial": (run / PARTIAL).read_text()
               if (run / PARTIAL).is_file() else "", "step": step_of(run / "checkpoints" / "last.ckpt"),
               "finished_training": load_checkpoint(run / "checkpoints" / "last.ckpt")["progress"]["stop_reason"]}
    second = crystalgen(command, cache)
    _, second_err = second.communicate(timeout=900)
    return {"run": run, "cache": cache, "command": command, "stopped": stopped, "code": second.returncode,
            "err": second_err}


def test_the_stopped_run_says_how_to_continue(stopped_and_rerun):
    stopped = stopped_and_rerun["stopped"]
    assert stopped["code"] == 130, stopped["err"][-2000:]
    assert stopped["partial"].startswith("crystalgen run did not finish writing this folder: stopped by SIGINT")
    assert "the same command continues it" in stopped["partial"]
    assert stopped["finished_training"] == ""  # the last checkpoint was written before training ended


def test_the_same_command_resumes_training_and_completes_the_run(stopped_and_rerun):
    run, err = stopped_and_rerun["run"], stopped_and_rerun["err"]
    assert stopped_and_rerun["code"] == 0, err[-3000:]
    assert "holds the unfinished output of an earlier attempt" in err and "crystalgen run continues it" in err
    log = (run / "run.log").read_text()
    assert "training: resuming the earlier run of" in log
    progress = load_checkpoint(run / "checkpoints" / "last.ckpt")["progress"]
    assert progress["epoch"] == 40 and progress["stop_reason"] == "reached max_epochs=40"
    steps = logged_steps(run)
    assert steps == list(range(1, steps[-1] + 1)), "the training log has a gap or restarted"
    assert steps[-1] == progress["global_step"] > stopped_and_rerun["stopped"]["step"]
    assert not (run / PARTIAL).exists()
    assert json.loads((run / "metrics" / "metrics.json").read_text())["status"] == "complete"


def test_a_rerun_of_a_complete_run_repeats_no_stage(stopped_and_rerun, tmp_path, capsys, monkeypatch):
    run = stopped_and_rerun["run"]
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(stopped_and_rerun["cache"]))
    before = {p: p.stat().st_mtime_ns for p in (run / "checkpoints" / "last.ckpt", run / "samples" / "sampling.json",
                                                 run / "metrics" / "metrics.json")}
    assert main(stopped_and_rerun["command"]) == 0
    log = (run / "run.log").read_text()
    for stage in ("training: complete in the earlier run", "sampling: complete in the earlier run",
                  "evaluation: complete in the earlier run"):
        assert stage in log
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_a_rerun_with_other_settings_is_refused_naming_them(stopped_and_rerun, capsys):
    command = [*stopped_and_rerun["command"], "trainer.max_epochs=50", "trainer.lr=0.01"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"--run-dir {stopped_and_rerun['run']} holds a run with other settings (trainer.lr: 0.002 there, 0.01 now; " in err
    assert "trainer.max_epochs: 40 there, 50 now" in err and "give the same ones or another --run-dir" in err


def test_sample_into_a_partial_folder_says_so_and_writes_it_again(stopped_and_rerun, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "samples.jsonl").write_text('{"index": 0}\n')
    (out / PARTIAL).write_text("crystalgen sample did not finish writing this folder: stopped by SIGTERM at then.\n")
    ckpt = stopped_and_rerun["run"] / "checkpoints" / "last.ckpt"
    assert main(["sample", "toy", "--ckpt", str(ckpt), "-n", "3", "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert (f"note: {out} holds the unfinished output of an earlier attempt (crystalgen sample did not finish writing "
            "this folder: stopped by SIGTERM at then.); crystalgen sample starts again from the beginning") in err
    assert not (out / PARTIAL).exists()
    assert (out / "samples.jsonl").read_text().count("\n") == 3
