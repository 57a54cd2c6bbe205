"""GemsDiff from the command line on the briefly trained fixture model: `crystalgen sample --composition`,
`--condition-from` a split, `crystalgen task csp`, and compositions the model cannot hold refused before sampling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gemsdiff_testdata import small_config
from omegaconf import OmegaConf
from pymatgen.core import Composition

from crystalgen.cli.main import main
from crystalgen.data.embedded import embedded_records
from crystalgen.runner.checkpoint import save_checkpoint

# ten DDIM steps instead of T = 100: what is tested here is the wiring, not the sampler
FAST = ["--sampler", "ddim", "--steps", "10", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def checkpoint(trained, tmp_path_factory) -> Path:
    model, _, _ = trained
    cfg = small_config()
    cfg.preset = "small"
    path = tmp_path_factory.mktemp("gemsdiff_ckpt") / "trained.ckpt"
    return save_checkpoint({"model_name": "gemsdiff", "config": OmegaConf.to_yaml(cfg), "model": model.state_dict(),
                            "ema": None}, path)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """The embedded split is built into a cache of the test's own."""
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


def embedded_test_formulas(n: int) -> list[str]:
    """Cell contents of the first n crystals of embedded:test, the inputs of --condition-from and the CSP task."""
    return [r.structure.composition.formula for r in embedded_records("test")[:n]]


def reduced(formula: str) -> str:
    return Composition(formula).reduced_formula


def test_sample_with_a_composition_gives_cells_of_exactly_that_content(checkpoint, tmp_path):
    out = tmp_path / "li2mno3"
    assert main(["sample", "gemsdiff", "--ckpt", str(checkpoint), "--out", str(out), "--composition", "Li2MnO3",
                 "-n", "3", *FAST]) == 0
    found = rows(out)
    assert len(found) == 3 and all(r["ok"] for r in found), found
    assert all(Composition(r["formula"]) == Composition("Li2MnO3") for r in found)  # 6 atoms, not 12
    assert all(r["num_atoms"] == 6 for r in found)


def test_condition_from_a_split_keeps_each_input_crystals_composition(checkpoint, tmp_path):
    out = tmp_path / "from_test"
    assert main(["sample", "gemsdiff", "--ckpt", str(checkpoint), "--out", str(out), "--condition-from",
                 "embedded:test", "--condition-max-crystals", "3", "--per-condition", "2", *FAST]) == 0
    found = rows(out)
    assert [r["input_index"] for r in found] == [0, 0, 1, 1, 2, 2]
    assert all(r["ok"] for r in found), found
    for r in found:
        assert Composition(r["formula"]) == Composition(r["condition"]["composition"])
    # the conditions are the input crystals' own: two candidates of one crystal share it, and it is that crystal's
    inputs = {r["input_index"]: r["condition"]["composition"] for r in found}
    assert [reduced(inputs[i]) for i in range(3)] == [reduced(f) for f in embedded_test_formulas(3)]


def test_task_csp_scores_match_rate_and_rmse_at_each_k(checkpoint, tmp_path, capsys):
    out = tmp_path / "csp"
    assert main(["task", "csp", "gemsdiff", "--ckpt", str(checkpoint), "--input", "embedded:test", "-n", "3",
                 "-k", "1", "2", "--out", str(out), "--workers", "1", *FAST]) == 0
    found = rows(out)
    assert [r["input_index"] for r in found] == [0, 0, 1, 1, 2, 2]
    truth = [Composition(f) for f in embedded_test_formulas(3)]
    assert all(Composition(r["formula"]) == truth[r["input_index"]] for r in found if r["ok"])
    scores = json.loads((out / "metrics" / "metrics.json").read_text())
    assert scores["csp_n"] == 3 and scores["csp_candidates"] == 2
    for k in (1, 2):
        assert 0.0 <= scores[f"match_rate@{k}"] <= 1.0 and f"rms_dist@{k}" in scores
    assert scores["match_rate@2"] >= scores["match_rate@1"]
    assert "match_rate@2" in capsys.readouterr().out


@pytest.mark.parametrize(("formula", "reason"), [
    ("Og2O3", "Og (Z = 118) is beyond the model's 100 element classes"),
    ("Li21", "has 21 atoms; this model samples cells of 1 to 20 atoms (model.max_atoms)"),
])
def test_compositions_beyond_the_model_are_refused_before_sampling(checkpoint, tmp_path, capsys, formula, reason):
    out = tmp_path / "refused"
    # the bad composition comes last, in a later batch than the good ones: nothing is sampled at all
    assert main(["sample", "gemsdiff", "--ckpt", str(checkpoint), "--out", str(out), "--composition", "Li2MnO3",
                 "Li2MnO3", formula, "--batch-size", "1", *FAST]) == 2
    assert reason in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("overrides, split", [([], "mp_20:test"), (["data.dataset=perov_5"], "perov_5:test")])
def test_the_paper_preset_samples_the_compositions_of_the_datasets_test_split(overrides, split):
    """As the paper (section 5): one crystal per test composition, which also makes the run score CSP."""
    from crystalgen.runner.conditions import ConditionSpec
    from crystalgen.runner.config import compose
    from crystalgen_gemsdiff.model import GemsDiff

    cfg = compose(GemsDiff.presets(), "paper", model_name="gemsdiff", overrides=overrides)
    spec = ConditionSpec.from_config(cfg.sample.condition)
    assert (spec.source, spec.take, spec.max_crystals, spec.per_condition) == (split, ("composition",), None, 1)
    assert spec.decides_count() and spec.scores_csp(GemsDiff.conditions)


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_carbon_24s_largest_cells_are_kept_and_can_be_asked_for(preset):
    """Carbon-24 holds cells of up to 24 atoms: the presets' atom cap follows the dataset (20 elsewhere)."""
    from crystalgen.runner.config import compose
    from crystalgen_gemsdiff.model import GemsDiff

    caps = {dataset: compose(GemsDiff.presets(), preset, model_name="gemsdiff",
                             overrides=[f"data.dataset={dataset}"]).model.max_atoms
            for dataset in ("carbon_24", "mp_20", "embedded")}
    assert caps == {"carbon_24": 24, "mp_20": 20, "embedded": 20}
