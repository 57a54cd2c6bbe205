"""`crystalgen sample symmcd` end to end on a tiny untrained checkpoint: the paper's top-10 prior through --option,
--spacegroup, and the errors a user sees."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from symmcd_testdata import load_small_config

from crystalgen.cli.main import main
from crystalgen.runner.checkpoint import save_checkpoint
from crystalgen_symmcd.model import TOP10_SPACEGROUPS, SymmCD


@pytest.fixture(scope="module")
def checkpoint(prototype_items, tmp_path_factory):
    """An untrained 1 x 16 denoiser with the statistics of the prototypes (groups 225, 221, 216, 186, 136)."""
    cfg = load_small_config()
    cfg.model.denoiser.update(hidden=16, num_layers=1, num_frequencies=2, spacegroup_dim=8, site_symmetry_dim=8)
    cfg.preset = "small"
    torch.manual_seed(0)
    model = SymmCD(cfg.model)
    model.fit_statistics(prototype_items)
    path = tmp_path_factory.mktemp("symmcd_ckpt") / "tiny.ckpt"
    return save_checkpoint({"model_name": "symmcd", "config": OmegaConf.to_yaml(cfg), "model": model.state_dict(), "ema": None}, path)


def sample(checkpoint, out, *args: str) -> int:
    return main(["sample", "symmcd", "--ckpt", str(checkpoint), "--out", str(out), "--steps", "2", "--no-progress", *args])


def sampled_groups(out) -> list[int]:
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return [row["spacegroup"] for row in rows]


def test_option_spacegroup_prior_top10_reaches_the_model(checkpoint, tmp_path):
    """`--option spacegroup_prior=top10` is not a sampler option: the runner hands it to the model's request."""
    assert sample(checkpoint, tmp_path / "top10", "-n", "40", "--option", "spacegroup_prior=top10") == 0
    groups = sampled_groups(tmp_path / "top10")
    assert len(groups) == 40 and set(groups) <= set(TOP10_SPACEGROUPS), groups
    assert set(groups) == {221, 225}  # the only two of the ten that the prototypes contain
    summary = json.loads((tmp_path / "top10" / "sampling.json").read_text())
    assert summary["model_options"] == {"spacegroup_prior": "top10"}
    assert sample(checkpoint, tmp_path / "data", "-n", "40") == 0  # p(G) of the data: 216, 186, 136 too
    assert set(sampled_groups(tmp_path / "data")) - set(TOP10_SPACEGROUPS)


def test_spacegroup_condition_through_the_runner(checkpoint, tmp_path, capsys):
    assert sample(checkpoint, tmp_path / "fcc", "-n", "6", "--spacegroup", "225") == 0
    assert sampled_groups(tmp_path / "fcc") == [225] * 6
    assert sample(checkpoint, tmp_path / "two", "-n", "5", "--spacegroup", "225", "221") == 2
    assert "2 conditions give one crystal each (2), but 5 were asked for" in capsys.readouterr().err
    assert not (tmp_path / "two").exists()


def test_bad_options_are_refused_before_sampling(checkpoint, tmp_path, capsys):
    assert sample(checkpoint, tmp_path / "a", "-n", "2", "--option", "spacegroup_prior=top5") == 2
    assert "spacegroup_prior must be 'data' or 'top10', got 'top5'" in capsys.readouterr().err
    assert sample(checkpoint, tmp_path / "b", "-n", "2", "--option", "spacegroup_prio=top10") == 2  # typo: not the model's
    assert "does not accept options ['spacegroup_prio']" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
