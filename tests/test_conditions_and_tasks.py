"""Conditions and tasks end to end on the test-only models: `crystalgen run toy_csp` conditioned on the compositions of
a split (CSP scores in the report), `crystalgen sample` with condition flags, `crystalgen task csp`, refusals, and a
task that a plugin registers through the `crystalgen_tasks` hook (listed by `crystalgen list`, runnable, scorable).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crystalgen import Decoded, Scoring, Task, TaskJob, hookimpl
from crystalgen.cli.main import main

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")

TINY = ["--no-progress", "--threads", "1", "model.num_steps=10", "trainer.max_epochs=2", "data.max_train_rows=32",
        "data.max_val_rows=8", "data.workers=0", "sample.batch_size=8", "evaluate.metrics=[validity]",
        "evaluate.workers=1", "evaluate.train_split=null"]
FROM_TEST = ["sample.condition.from=embedded:test", "sample.condition.take=[composition]",
             "sample.condition.max_crystals=6", "sample.condition.per_condition=3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def csp_run(tmp_path_factory) -> Path:
    """One `crystalgen run toy_csp` whose samples are conditioned on the compositions of embedded:test."""
    root = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("CRYSTALGEN_CACHE", str(root / "cache"))
    try:
        assert main(["run", "toy_csp", "--run-dir", str(root / "run"), *TINY, *FROM_TEST]) == 0
    finally:
        mp.undo()
    return root / "run"


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


def test_a_run_conditioned_on_a_split_scores_crystal_structure_prediction(csp_run):
    found = rows(csp_run / "samples")
    assert len(found) == 18
    assert [r["input_index"] for r in found] == [i for i in range(6) for _ in range(3)]
    # the toy_csp model keeps the requested composition: every decoded crystal has its condition's atoms
    assert all(r["formula"] == r["condition"]["composition"] for r in found if r["ok"])
    summary = json.loads((csp_run / "samples" / "sampling.json").read_text())["conditions"]
    assert summary["from"] == "embedded:test" and summary["per_condition"] == 3 and summary["crystals"] == 18
    csp = json.loads((csp_run / "metrics" / "csp" / "metrics.json").read_text())
    assert csp["csp_n"] == 6 and csp["csp_candidates"] == 3
    for k in (1, 3):
        assert 0.0 <= csp[f"match_rate@{k}"] <= 1.0 and f"rms_dist@{k}" in csp
    assert csp["match_rate@3"] >= csp["match_rate@1"]
    report = (csp_run / "report.md").read_text()
    assert "- Conditions: composition of each of 6 crystals of embedded:test; 3 per condition, 18 crystals" in report
    assert "## Crystal structure prediction" in report and "| 3 | " in report
    assert json.loads((csp_run / "stages.json").read_text())["csp"]["status"] == "complete"


def test_a_condition_the_model_does_not_accept_is_refused_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "toy", "--run-dir", str(run), *TINY, "sample.condition.composition=SrTiO3"]) == 2
    assert "model 'toy' cannot condition on composition (it accepts: none)" in capsys.readouterr().err
    assert not run.exists()
    assert main(["train", "toy", "--run-dir", str(run), *TINY, "sample.condition.composition=SrTiO3"]) == 2
    assert "model 'toy' cannot condition on composition (it accepts: none)" in capsys.readouterr().err
    assert main(["run", "toy_csp", "--run-dir", str(run), *TINY, "sample.condition.spacegroup=300"]) == 2
    assert "space-group numbers run from 1 to 230, got 300" in capsys.readouterr().err
    assert main(["run", "toy_csp", "--run-dir", str(run), *TINY, "sample.condition.from=embedded:tset"]) == 2
    assert "has no split 'tset'" in capsys.readouterr().err
    assert not run.exists()


def test_sample_flags_condition_each_crystal(csp_run, tmp_path):
    ckpt = str(csp_run / "checkpoints" / "last.ckpt")
    out = tmp_path / "s"
    assert main(["sample", "toy_csp", "--ckpt", ckpt, "--out", str(out), "--composition", "NaCl", "Sr2Ti2O6",
                 "--per-condition", "2", "--no-progress", "--threads", "1"]) == 0
    found = rows(out)
    assert [r["condition"]["composition"] for r in found] == ["Na1Cl1"] * 2 + ["Sr2Ti2O6"] * 2
    assert all(r["formula"] == r["condition"]["composition"] for r in found if r["ok"])
    out = tmp_path / "n"
    assert main(["sample", "toy_csp", "--ckpt", ckpt, "--out", str(out), "-n", "3", "--num-atoms", "4",
                 "--no-progress", "--threads", "1"]) == 0
    assert [r["num_atoms"] for r in rows(out)] == [4, 4, 4]


@pytest.mark.parametrize("flags, message", [
    (["--composition", "Xx2O"], "--composition: 'Xx2O' names Xx, which is not an element"),
    (["--spacegroup", "231"], "--spacegroup: space-group numbers run from 1 to 230, got 231"),
])
def test_bad_condition_values_are_refused_before_the_checkpoint_is_read(tmp_path, capsys, flags, message):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    assert main(["sample", "toy_csp", "--ckpt", str(garbage), "-n", "2", "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "checkpoint" not in err


def test_sample_refuses_a_condition_naming_what_the_model_accepts(csp_run, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["sample", "toy_csp", "--ckpt", str(csp_run / "checkpoints" / "last.ckpt"), "-n", "2",
                 "--out", str(out), "--spacegroup", "225", "--no-progress"]) == 2
    assert "cannot condition on spacegroup (it accepts: composition, num_atoms)" in capsys.readouterr().err
    assert not (out / "samples.jsonl").exists()


def test_task_csp_writes_candidates_and_scores(csp_run, tmp_path, capsys):
    out = tmp_path / "csp"
    assert main(["task", "csp", "toy_csp", "--ckpt", str(csp_run / "checkpoints" / "last.ckpt"), "--input",
                 "embedded:test", "-n", "4", "-k", "1", "2", "--out", str(out), "--workers", "0", "--no-progress",
                 "--threads", "1"]) == 0
    assert [r["input_index"] for r in rows(out)] == [0, 0, 1, 1, 2, 2, 3, 3]
    metrics = json.loads((out / "metrics" / "metrics.json").read_text())
    assert metrics["task"] == "csp" and metrics["csp_n"] == 4 and {"match_rate@1", "match_rate@2"} <= set(metrics)
    assert "match_rate@2" in capsys.readouterr().out
    # the same scores from `crystalgen evaluate --task csp` (k from the task options in sampling.json)
    again = tmp_path / "again"
    assert main(["evaluate", str(out), "--task", "csp", "--reference", "embedded:test", "--out", str(again),
                 "--workers", "0", "--no-progress"]) == 0
    rescored = json.loads((again / "metrics.json").read_text())
    assert {k: rescored[k] for k in ("match_rate@1", "match_rate@2")} == {k: metrics[k] for k in ("match_rate@1", "match_rate@2")}


def test_task_csp_reads_its_input_split_once(csp_run, tmp_path, counted_reads):
    """The conditions, the rows' input ids and the true structures of the scores come from one read of the split."""
    from crystalgen.data.registry import get_dataset

    out = tmp_path / "csp"
    assert main(["task", "csp", "toy_csp", "--ckpt", str(csp_run / "checkpoints" / "last.ckpt"), "--input",
                 "embedded:test", "-n", "3", "-k", "1", "--out", str(out), "--workers", "0", "--no-progress",
                 "--threads", "1"]) == 0
    assert counted_reads == ["test"]
    ids = [r.id for r in get_dataset("embedded").load("test", max_rows=3).records]
    assert [r["input_id"] for r in rows(out)] == ids
    assert json.loads((out / "metrics" / "metrics.json").read_text())["csp_n"] == 3


def test_a_model_that_cannot_take_a_composition_is_refused_naming_its_tasks(csp_run, tmp_path, capsys):
    assert main(["task", "csp", "toy", "--ckpt", str(csp_run / "checkpoints" / "last.ckpt"), "--input",
                 "embedded:test", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert ("model 'toy' does not support 'csp': it does not accept a composition condition (its conditions: none). "
            "Tasks it supports: generate") in err


class EchoTask(Task):
    """A plugin's task: each input crystal is its own candidate, copied --copies times; scored by the fraction of
    candidates with their input's composition."""

    name = "echo"
    summary = "each crystal of a split as its own candidate (test plugin)"

    def unsupported(self, model):
        return None

    def add_arguments(self, parser):
        parser.add_argument("--copies", type=int, default=1, help="candidates per crystal")

    def options(self, args):
        return {"copies": args.copies}

    def produce(self, job: TaskJob) -> list[list[Decoded]]:
        return [[Decoded(r.structure.copy()) for _ in range(job.options["copies"])] for r in job.inputs().records]

    def evaluate(self, candidates, true, scoring: Scoring) -> dict:
        pairs = [(c, t) for group, t in zip(candidates, true) for c in group if group]
        same = sum(c is not None and c.composition == t.composition for c, t in pairs)
        return {"echo_same_composition": same / len(pairs), "echo_copies": scoring.options["copies"]}


class EchoPlugin:
    @staticmethod
    @hookimpl
    def crystalgen_tasks():
        return {"echo": EchoTask}


@pytest.fixture
def with_echo(monkeypatch):
    from crystalgen import plugins

    host = plugins.build_host(extra_plugins=[EchoPlugin])
    monkeypatch.setattr(plugins, "default_host", lambda: host)
    return host


def test_a_task_a_plugin_registers_is_listed_runs_and_scores(with_echo, csp_run, tmp_path, capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {"name": "echo", "plugin": "EchoPlugin", "distribution": None, "version": None} in listing["components"]["task"]
    assert listing["model_capabilities"]["toy"]["tasks"] == ["generate", "echo"]
    assert listing["model_capabilities"]["toy_csp"] == {"conditions": ["composition", "num_atoms"],
                                                        "tasks": ["generate", "csp", "echo"]}
    out = tmp_path / "echo"
    assert main(["task", "echo", "toy_csp", "--ckpt", str(csp_run / "checkpoints" / "last.ckpt"), "--input",
                 "embedded:test", "-n", "3", "--copies", "2", "--out", str(out), "--no-progress"]) == 0
    assert [r["input_index"] for r in rows(out)] == [0, 0, 1, 1, 2, 2]
    metrics = json.loads((out / "metrics" / "metrics.json").read_text())
    assert metrics["echo_same_composition"] == 1.0 and metrics["echo_copies"] == 2 and metrics["task"] == "echo"
    assert main(["evaluate", str(out), "--task", "echo", "--reference", "embedded:test", "--out", str(tmp_path / "m"),
                 "--no-progress"]) == 0
    rescored = json.loads((tmp_path / "m" / "metrics.json").read_text())  # the crystals read back from the CIFs
    assert rescored["echo_same_composition"] == 1.0 and rescored["echo_copies"] == 2
