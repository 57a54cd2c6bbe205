"""Size limits of a model's crystals: training leaves out crystals above `data.max_atoms` (a cap on by default) as
`too many atoms` rows and counts them, the run records the largest training crystal kept (`data.size_limit`, in
config.yaml, every checkpoint and report.md), and a sampling request above it is refused before the model is built.
Uses the test-only `toy` model (tests/fixtures/crystalgen_toy_model, pip install -e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystalgen.cli.main import main
from crystalgen.data.registry import get_dataset
from crystalgen.runner.checkpoint import load_checkpoint
from crystalgen.runner.config import from_yaml, runner_defaults
from crystalgen.runner.size_limit import TOO_MANY_ATOMS, cap_atoms

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")

TINY = ["--no-progress", "--threads", "1", "model.num_steps=10", "trainer.max_epochs=1", "data.max_train_rows=32",
        "data.max_val_rows=8", "data.workers=0", "sample.num_samples=4", "sample.batch_size=4",
        "evaluate.metrics=[validity]", "evaluate.workers=1", "evaluate.train_split=null"]
CAP = 4


pytestmark = pytest.mark.usefixtures("private_cache")


def atoms_of_first(split: str, rows: int) -> list[int]:
    return [len(r.structure) for r in get_dataset("embedded").load(split, max_rows=rows, progress=False).records]


@pytest.fixture(scope="module")
def capped_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    patch = pytest.MonkeyPatch()
    patch.setenv("CRYSTALGEN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    try:
        assert main(["run", "toy", "--run-dir", str(run), *TINY, f"data.max_atoms={CAP}"]) == 0
    finally:
        patch.undo()
    return run


def test_the_cap_is_on_by_default():
    assert runner_defaults().data.max_atoms == 200


def test_cap_atoms_moves_larger_crystals_to_the_skipped_rows_with_the_reason():
    loaded = get_dataset("embedded").load("train", max_rows=32, progress=False)
    sizes = [len(r.structure) for r in loaded.records]
    assert cap_atoms(loaded, CAP) == sum(n > CAP for n in sizes) > 0
    assert all(len(r.structure) <= CAP for r in loaded.records) and len(loaded.records) == sum(n <= CAP for n in sizes)
    reason = loaded.skipped[-1].reason
    assert reason.startswith(f"{TOO_MANY_ATOMS}: ") and reason.endswith(f"above data.max_atoms={CAP}")
    assert f"skipped {sum(n > CAP for n in sizes)} x {TOO_MANY_ATOMS}" in loaded.summary()
    assert cap_atoms(loaded, None) == 0


def test_training_leaves_out_larger_crystals_and_records_the_limit(capped_run):
    train, val = atoms_of_first("train", 32), atoms_of_first("val", 8)
    expected = {"max_atoms": max(n for n in train if n <= CAP), "cap": CAP,
                "excluded": {"train": sum(n > CAP for n in train), "val": sum(n > CAP for n in val)}}
    assert expected["excluded"]["train"] > 0
    saved = from_yaml(load_checkpoint(capped_run / "checkpoints" / "last.ckpt")["config"], "ckpt")
    assert dict(saved.data.size_limit) | {"excluded": dict(saved.data.size_limit.excluded)} == expected
    assert from_yaml((capped_run / "config.yaml").read_text(), "cfg").data.size_limit.max_atoms == expected["max_atoms"]
    log = (capped_run / "run.log").read_text()
    assert f"skipped {expected['excluded']['train']} x {TOO_MANY_ATOMS}" in log
    assert f"size limit: crystals of up to {expected['max_atoms']} atoms" in log
    report = (capped_run / "report.md").read_text()
    assert (f"- Crystal size: up to {expected['max_atoms']} atoms (the largest training crystal kept; cap "
            f"data.max_atoms={CAP}); crystals left out above the cap: {expected['excluded']['train']} train") in report


def test_a_composition_above_the_limit_is_refused_before_the_model_is_built(capped_run, tmp_path, capsys, monkeypatch):
    from crystalgen.runner.models import model_class

    monkeypatch.setattr(model_class("toy"), "from_config", classmethod(lambda *a: pytest.fail("the model was built")))
    out = tmp_path / "out"
    code = main(["sample", "toy", "--ckpt", str(capped_run / "checkpoints" / "last.ckpt"), "-n", "2", "--out", str(out),
                 "--no-progress", "--composition", "Na3Cl3"])
    assert code == 2
    err = capsys.readouterr().err
    limit = from_yaml((capped_run / "config.yaml").read_text(), "cfg").data.size_limit.max_atoms
    assert f"--composition Na3Cl3: 6 atoms per cell, above the {limit} atoms of the largest crystal" in err
    assert not out.exists() or not any(out.iterdir())


def test_data_prepare_counts_the_crystals_above_max_atoms(tmp_path, capsys):
    assert main(["data", "prepare", "embedded", "--transform", "full_cell", "--split", "train", "--max-rows", "32",
                 "--workers", "1", "--max-atoms", str(CAP), "--cache-dir", str(tmp_path)]) == 0
    train = atoms_of_first("train", 32)
    assert f"skipped {sum(n > CAP for n in train)} x {TOO_MANY_ATOMS}" in capsys.readouterr().out
