"""Run files across interruptions: the training log is cut back atomically on resume, and every reader of run
files (the metric log, samples.jsonl, `crystalgen report`) leaves out a torn last line instead of failing."""

from __future__ import annotations

import json
import logging
import os

import pytest

from crystalgen import atomic
from crystalgen.cli.main import main
from crystalgen.runner.metric_log import MetricLog, read_metric_log
from crystalgen.runner.sample_dir import read_rows


@pytest.fixture
def console_restored():
    """`main` sets up the crystalgen logger for a terminal; put it back for the tests that run after this one."""
    logger = logging.getLogger("crystalgen")
    saved = logger.propagate, logger.level, list(logger.handlers)
    yield
    logger.propagate, logger.level, logger.handlers[:] = saved[0], saved[1], saved[2]


def write_log(path, steps) -> None:
    log = MetricLog(path)
    for step in steps:
        log.log(step, 0, {"train/loss": float(step)})
    log.close()


def test_resume_writes_a_new_file_and_a_crash_during_the_cut_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "train_log.csv"
    write_log(path, range(1, 6))
    before, inode = path.read_bytes(), path.stat().st_ino
    real_replace = os.replace

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="No space left"):
        MetricLog(path, resume_step=3)
    assert path.read_bytes() == before  # whole, never emptied
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_log.csv"]  # no temporary file left
    monkeypatch.setattr(atomic.os, "replace", real_replace)

    log = MetricLog(path, resume_step=3)
    log.log(4, 0, {"train/loss": 40.0})
    log.close()
    assert path.stat().st_ino != inode  # a new file renamed into place, not a rewrite in place
    assert [(s, v) for s, _, v in read_metric_log(path)["train/loss"]] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_a_torn_last_row_is_dropped_by_readers_and_by_resume(tmp_path, caplog):
    path = tmp_path / "train_log.csv"
    write_log(path, range(1, 4))
    with path.open("a") as handle:
        handle.write("4,0,train/lo")  # killed mid-row
    assert [s for s, _, _ in read_metric_log(path)["train/loss"]] == [1, 2, 3]
    assert "torn last line" in caplog.text
    log = MetricLog(path, resume_step=10)
    log.log(4, 0, {"train/loss": 4.0})
    log.close()
    assert [s for s, _, _ in read_metric_log(path)["train/loss"]] == [1, 2, 3, 4]
    assert "train/lo\n" not in path.read_text()


def test_a_malformed_complete_row_names_the_file_and_line(tmp_path):
    path = tmp_path / "train_log.csv"
    write_log(path, [1])
    with path.open("a") as handle:
        handle.write("two,0,train/loss,1.0,0\n")
    with pytest.raises(ValueError, match=rf"{path}, line 3: not a step,epoch,metric,value,wall_time row"):
        read_metric_log(path)


def test_report_reads_a_run_whose_log_and_samples_end_in_torn_lines(tmp_path, console_restored):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    write_log(run / "train_log.csv", range(1, 4))
    with (run / "train_log.csv").open("a") as handle:
        handle.write("4,0,train/loss,0.")
    row = {"index": 0, "ok": True, "reason": None, "cif": None, "formula": "NaCl", "num_atoms": 2, "volume": 40.0,
           "density": 2.1}
    (run / "samples" / "samples.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row)[:30])
    (run / "samples" / "sampling.json").write_text(json.dumps({"model": "toy", "counts": {"ok": 2, "requested": 2}}))
    assert len(read_rows(run / "samples")) == 1
    assert main(["report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "Final training loss (per step): 3 (step 3)" in report
    assert "Samples' atoms per cell: mean 2" in report
