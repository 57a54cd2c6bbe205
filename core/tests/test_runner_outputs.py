"""What a run writes for people and for the metrics: the sample directory and the report."""

from __future__ import annotations

import json

import numpy as np
import torch
from ase.io import read as ase_read
from pymatgen.core import Lattice, Structure

from crystalgen.metrics import read_samples
from crystalgen.models.base import Decoded
from crystalgen.runner.metric_log import MetricLog
from crystalgen.runner.report import write_report
from crystalgen.runner.sample_dir import failure_kind, jsonable, read_rows, write_sample_dir


def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def decoded() -> list[Decoded]:
    si = Structure(Lattice.hexagonal(3.0, 5.0), ["Si", "Si"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5]])
    return [Decoded(nacl(), info={"spacegroup": torch.tensor(225)}),
            Decoded(None, "degenerate cell (volume 1.00e-05 A^3)"),
            Decoded(si, info={"spacegroup": 194, "index": "ignored: the standard key wins"})]


def test_sample_directory_rows_files_and_counts(tmp_path):
    counts = write_sample_dir(tmp_path, decoded(), {"model": "m", "seed": 3})
    assert counts == {"requested": 3, "ok": 2, "failed": 1, "failed_by_reason": {"degenerate cell": 1}}
    rows = read_rows(tmp_path)
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert rows[0] | {"volume": None, "density": None} == {
        "index": 0, "ok": True, "reason": None, "cif": "cif/000000.cif", "formula": "Na4Cl4", "num_atoms": 8,
        "volume": None, "density": None, "spacegroup": 225}
    assert rows[0]["density"] == nacl().density and rows[0]["volume"] == nacl().volume
    assert rows[1]["ok"] is False and rows[1]["cif"] is None and rows[1]["reason"].startswith("degenerate cell")
    assert rows[2]["index"] == 2 and rows[2]["spacegroup"] == 194
    assert sorted(p.name for p in (tmp_path / "cif").iterdir()) == ["000000.cif", "000002.cif"]
    back = Structure.from_file(tmp_path / "cif" / "000000.cif")
    assert np.allclose(back.lattice.matrix, nacl().lattice.matrix, atol=1e-5) and back.composition == nacl().composition
    frames = ase_read(tmp_path / "samples.extxyz", index=":")
    assert [f.info["index"] for f in frames] == [0, 2] and len(frames[0]) == 8
    summary = json.loads((tmp_path / "sampling.json").read_text())
    assert summary["model"] == "m" and summary["counts"] == counts


def test_the_metrics_read_the_sample_directory_as_written(tmp_path):
    write_sample_dir(tmp_path, decoded(), {})
    structures, failures, ids = read_samples(tmp_path, workers=1, progress=False)
    assert ids == ["0", "1", "2"]
    assert structures[1] is None and "degenerate cell" in failures[1]
    assert structures[0].composition == nacl().composition


def test_failure_kinds_and_json_values():
    assert failure_kind("degenerate cell (volume 1.00e-05 A^3)") == "degenerate cell"
    assert failure_kind("sampling failed: RuntimeError: nan") == "sampling failed"
    assert jsonable({"a": torch.tensor([1.5, 2.0]), "b": np.float32(2.5), "c": float("nan"), "d": (1, 2)}) == {
        "a": [1.5, 2.0], "b": 2.5, "c": None, "d": [1, 2]}


def test_report_from_a_run_directory_with_logs_samples_and_metrics(tmp_path):
    (tmp_path / "config.yaml").write_text("preset: small\npreset_note: widths halved\ndata:\n  dataset: embedded\n")
    log = MetricLog(tmp_path / "train_log.csv")
    for step in range(1, 4):
        log.log(step, 0, {"train/loss": 1.0 / step})
    log.log(3, 0, {"train/epoch_loss": 0.6, "val/loss": 0.7})
    log.close()
    write_sample_dir(tmp_path / "samples", decoded(), {"model": "toy", "sampler": {"name": "ddim"}, "seed": 0,
                                                       "timings": {"total_seconds": 1.0}, "device": "cpu"})
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "metrics.json").write_text(json.dumps({"valid": 0.5, "cov": {"recall": 0.9}}))
    report = write_report(tmp_path, reference={"num_atoms": [2, 8, 8], "density": [2.0, 2.1, 3.0]})
    text = report.read_text()
    assert text.startswith("# crystalgen run report: toy on embedded")
    assert "widths halved" in text and "Decoded: 2 of 3 (degenerate cell: 1)" in text
    assert "| valid | 0.5 |" in text and "| cov.recall | 0.9 |" in text
    for plot in ("training_loss.png", "validation_loss.png", "atoms_per_cell.png", "density.png", "spacegroups.png"):
        assert (tmp_path / plot).is_file() and f"({plot})" in text


def test_report_of_a_sample_only_folder_has_no_training_section(tmp_path):
    write_sample_dir(tmp_path / "samples", [Decoded(None, "no atoms")], {"model": "toy"})
    text = write_report(tmp_path).read_text()
    assert "## Training" not in text and "No crystal was decoded" in text
