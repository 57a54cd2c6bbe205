"""A run always tells its state: when sampling or evaluation fails, is killed or never ran, report.md says so at
the top with the reason and the command that completes the run, partial metrics are kept, `crystalgen run` and
`crystalgen report` exit 1 with one line, and the printed command does complete the run."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from crystalgen.cli.main import main
from crystalgen.runner import stage_process
from crystalgen.runner.run_dir import RunDir
from crystalgen.runner.run_state import record_stage
from crystalgen.runner.stage_process import failure_reason

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")

TINY = ["--no-progress", "model.num_steps=10", "trainer.max_epochs=2", "data.max_train_rows=32", "data.max_val_rows=8",
        "data.workers=0", "sample.num_samples=6", "sample.batch_size=4", "evaluate.metrics=[validity,wdist_density]",
        "evaluate.workers=1", "evaluate.train_split=null"]

#: A stand-in for the evaluation's child process: it writes partial metrics, then is killed as by the OOM killer.
KILLED_EVALUATION = """
import json, os, pathlib, signal, sys
out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"status": "partial", "n_samples": 6, "valid": 0.5}))
os.kill(os.getpid(), signal.SIGKILL)
"""


pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    patch = pytest.MonkeyPatch()
    patch.setenv("CRYSTALGEN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    try:
        assert main(["run", "toy", "--run-dir", str(root / "run"), *TINY]) == 0
    finally:
        patch.undo()
    return root / "run"


def copy_of(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


def the_line(err: str, verb: str) -> str:
    """The single line a verb prints about an incomplete run."""
    lines = [ln for ln in err.splitlines() if ln.startswith(f"crystalgen {verb}: incomplete run: ")]
    assert len(lines) == 1, err
    return lines[0]


def run_printed_command(line: str) -> None:
    """Run each `crystalgen ...` of `A && B && C` after "complete it with:", exactly as printed."""
    commands = line.split("complete it with: ", 1)[1].split(" && ")
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "crystalgen"
        assert main(argv[1:]) == 0, command


def top_of(report: Path) -> str:
    """The report's text before its first section."""
    return report.read_text().split("\n## ", 1)[0]


def test_a_complete_run_says_nothing_and_exits_zero(complete_run, capsys):
    assert "Incomplete" not in (complete_run / "report.md").read_text()
    stages = json.loads((complete_run / "stages.json").read_text())
    assert stages["sampling"] == {"status": "complete"} and stages["evaluation"]["status"] == "complete"
    assert stages["evaluation"]["seconds"] > 0  # the evaluation stage's wall time, which the report prints
    assert main(["report", str(complete_run)]) == 0
    assert "incomplete" not in capsys.readouterr().err


def test_a_killed_evaluation_keeps_its_partial_metrics_and_the_printed_command_completes_the_run(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(stage_process, "child_command", lambda argv: [sys.executable, "-c", KILLED_EVALUATION, *argv])
    run = tmp_path / "run"
    assert main(["run", "toy", "--run-dir", str(run), *TINY]) == 1
    line = the_line(capsys.readouterr().err, "run")
    assert "evaluation partial: killed by SIGKILL" in line and "out-of-memory" in line
    evaluate = f"crystalgen evaluate {run / 'samples'} --reference embedded:test --metrics validity,wdist_density"
    assert f"complete it with: {evaluate} --workers 1 --out {run / 'metrics'} && crystalgen report {run} --reference embedded:test" in line
    top = top_of(run / "report.md")
    assert "**Incomplete run: evaluation partial.** Reason: killed by SIGKILL" in top
    assert f"`{evaluate}" in top
    report = (run / "report.md").read_text()
    assert "## Metrics (partial)" in report and "| valid | 0.5 |" in report
    assert json.loads((run / "stages.json").read_text())["evaluation"]["status"] == "failed"

    monkeypatch.undo()
    run_printed_command(line)
    assert "Incomplete" not in (run / "report.md").read_text()
    assert json.loads((run / "metrics/metrics.json").read_text())["status"] == "complete"
    assert main(["report", str(run)]) == 0


def test_an_evaluation_error_is_reported_with_its_own_message(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "toy", "--run-dir", str(run), *TINY, "evaluate.reference=embedded:nosuchsplit"]) == 1
    line = the_line(capsys.readouterr().err, "run")
    assert line.startswith("crystalgen run: incomplete run: evaluation failed: ") and "nosuchsplit" in line
    assert "Traceback" not in line
    assert "--reference embedded:nosuchsplit" in line
    top = top_of(run / "report.md")
    assert "**Incomplete run: evaluation failed.**" in top and "nosuchsplit" in top
    assert not (run / "metrics/metrics.json").exists()


def test_a_failed_sampling_says_so_and_its_command_samples_evaluates_and_reports(tmp_path, monkeypatch, capsys):
    from crystalgen_toy_model.model import ToyDiffusion

    def broken(self, state, t, condition):
        raise RuntimeError("probability tensor contains nan")

    monkeypatch.setattr(ToyDiffusion, "denoise", broken)
    run = tmp_path / "run"
    assert main(["run", "toy", "--run-dir", str(run), *TINY]) == 1
    line = the_line(capsys.readouterr().err, "run")
    assert "sampling failed: NoCrystalsGeneratedError: none of the 6 crystals could be generated" in line
    assert (f"complete it with: crystalgen sample toy --ckpt {run / 'checkpoints/best.ckpt'} -n 6 "
            f"--out {run / 'samples'} --batch-size 4 --seed 0 --device auto --precision fp32 && "
            f"crystalgen evaluate {run / 'samples'} ") in line
    assert "**Incomplete run: sampling failed.**" in top_of(run / "report.md")
    assert not (run / "metrics").exists()

    monkeypatch.undo()
    run_printed_command(line)
    assert "Incomplete" not in (run / "report.md").read_text()
    assert main(["report", str(run)]) == 0


@pytest.mark.parametrize(("remove", "stage", "expected"), [
    (["metrics"], "evaluation", "evaluation missing: evaluation started but did not finish"),
    (["metrics", "samples"], "sampling", "sampling missing: sampling started but did not finish"),
])
def test_a_run_killed_in_a_stage_is_reported_missing_by_crystalgen_report(complete_run, tmp_path, capsys, remove,
                                                                         stage, expected):
    """The whole `crystalgen run` process was killed in the stage: stages.json still says it was running."""
    run = copy_of(complete_run, tmp_path)
    for name in remove:
        shutil.rmtree(run / name)
    record_stage(RunDir(run), stage, "running")
    assert main(["report", str(run)]) == 1
    line = the_line(capsys.readouterr().err, "report")
    assert expected in line and f"--out {run / 'metrics'}" in line
    assert f"**Incomplete run: {stage} missing.**" in top_of(run / "report.md")


def test_samples_without_metrics_and_no_stages_file_are_reported_missing(complete_run, tmp_path, capsys):
    """A directory assembled by hand (train, then sample into it) lacks only its evaluation."""
    run = copy_of(complete_run, tmp_path)
    shutil.rmtree(run / "metrics")
    (run / "stages.json").unlink()
    assert main(["report", str(run)]) == 1
    assert "evaluation missing: the run has no metrics" in the_line(capsys.readouterr().err, "report")


def test_a_training_only_directory_is_not_incomplete(complete_run, tmp_path):
    run = copy_of(complete_run, tmp_path)
    for name in ("metrics", "samples"):
        shutil.rmtree(run / name)
    (run / "stages.json").unlink()
    assert main(["report", str(run)]) == 0


@pytest.mark.parametrize(("code", "tail", "reason"), [
    (-9, "", "killed by SIGKILL: the kernel's out-of-memory killer sends it when memory runs out"),
    (-15, "", "killed by SIGTERM"),
    (2, "progress 10%\rprogress 20%\ncrystalgen evaluate: error: --reference x: no such split\n"
        "(set CRYSTALGEN_TRACEBACK=1 for the full traceback)\n", "--reference x: no such split"),
    (1, "Traceback (most recent call last):\n  File x\nRuntimeError: boom\n", "exit code 1: RuntimeError: boom"),
])
def test_failure_reason_of_a_child(code, tail, reason):
    assert failure_reason(code, tail) == reason


def test_the_report_gives_the_evaluation_stage_wall_time(complete_run, tmp_path):
    """`crystalgen run` times its evaluation child; the report shows it (issue 23: evaluation speed inside run)."""
    run = copy_of(complete_run, tmp_path)
    stages = json.loads((run / "stages.json").read_text())
    assert stages["evaluation"]["status"] == "complete" and stages["evaluation"]["seconds"] > 0
    record_stage(RunDir(run), "evaluation", "complete", seconds=12.34)
    assert main(["report", str(run)]) == 0
    assert "- Evaluation stage: 12.3 s wall (complete)" in (run / "report.md").read_text()
