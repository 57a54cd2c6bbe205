"""The layered run configuration: order of the layers, unknown keys with did-you-mean, types, choices."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from omegaconf import OmegaConf

from crystalgen.runner.config import ConfigError, apply_user_layers, compose, from_yaml, runner_defaults, to_yaml

PRESET = """
preset_note: "shrunk for a test"
model:
  hidden: 64
  layers: 2
  extras: {}
trainer:
  max_epochs: 7
  lr: 0.01
"""


@pytest.fixture
def presets(tmp_path):
    small = tmp_path / "small.yaml"
    small.write_text(PRESET)
    return {"small": small}


def test_layers_apply_in_order_defaults_preset_user_file_command_line(presets, tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("trainer:\n  lr: 0.5\n  max_epochs: 9\nmodel:\n  layers: 3\n")
    cfg = compose(presets, "small", model_name="m", user_files=[user], overrides=["trainer.max_epochs=11"])
    assert cfg.trainer.max_epochs == 11  # command line over user file over preset
    assert cfg.trainer.lr == 0.5  # user file over preset
    assert cfg.model.hidden == 64 and cfg.model.layers == 3
    assert cfg.trainer.optimizer == "adam"  # runner default kept
    assert cfg.preset == "small" and cfg.preset_note == "shrunk for a test"


def test_unknown_command_line_key_suggests_the_closest(presets):
    with pytest.raises(ConfigError, match=r"command-line override: unknown key 'trainer.max_epoch'\. "
                                          r"Did you mean 'trainer.max_epochs'\?"):
        compose(presets, "small", model_name="m", overrides=["trainer.max_epoch=3"])


def test_unknown_key_in_a_user_file_names_the_file_and_the_key_path(presets, tmp_path):
    user = tmp_path / "typo.yaml"
    user.write_text("trainer:\n  scheduler:\n    patiense: 5\n")
    with pytest.raises(ConfigError) as info:
        compose(presets, "small", model_name="m", user_files=[user])
    message = str(info.value)
    assert str(user) in message and "'trainer.scheduler.patiense'" in message
    assert "Did you mean 'trainer.scheduler.patience'?" in message and "Valid keys under 'trainer.scheduler'" in message


def test_model_keys_are_checked_against_the_preset_and_empty_mappings_are_free_form(presets):
    with pytest.raises(ConfigError, match="Did you mean 'model.hidden'"):
        compose(presets, "small", model_name="m", overrides=["model.hiden=3"])
    cfg = compose(presets, "small", model_name="m", overrides=["model.extras.anything=1", "sample.options.eta=0.5"])
    assert cfg.model.extras.anything == 1 and cfg.sample.options.eta == 0.5


def test_a_preset_may_not_invent_runner_keys(tmp_path):
    bad = tmp_path / "small.yaml"
    bad.write_text("trainer:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=re.escape(f"preset 'small' of model 'm' ({bad}): unknown key 'trainer.epochs'")):
        compose({"small": bad}, "small", model_name="m")


def test_unknown_preset_lists_the_existing_ones(presets):
    with pytest.raises(ConfigError, match="no preset 'paper'; presets: small"):
        compose(presets, "paper", model_name="m")


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.max_epochs=abc", "'trainer.max_epochs' must be an integer"),
    ("trainer.compile=3", "'trainer.compile' must be true or false"),
    ("trainer.scheduler.name=linear", "'trainer.scheduler.name' must be one of none, cosine, plateau"),
    ("trainer.device=gpu", "'trainer.device' must be auto, cpu, cuda or cuda:N"),
    ("data.batch_size=0", "'data.batch_size' must be a positive integer"),
    ("trainer.ema_decay=1.5", "'trainer.ema_decay' must be in [0, 1)"),
    ("trainer", "must look like key.path=value"),
    ("threads=0", "'threads' must be a positive integer, auto or null (auto), got 0"),
    ("threads=many", "'threads' must be a positive integer, auto or null (auto), got 'many'"),
    ("threads=1.5", "'threads' must be a positive integer, auto or null (auto), got 1.5"),
    ("trainer.threads=1", "unknown key 'trainer.threads'"),
])
def test_bad_values_are_refused_with_the_key_path(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_user_layers(runner_defaults(), overrides=[override])


def test_numbers_widen_and_null_is_accepted_anywhere():
    cfg = apply_user_layers(runner_defaults(), overrides=["trainer.lr=1", "trainer.max_minutes=2.5", "data.val_split=null",
                                                          "trainer.grad_clip=0.5", "trainer.device=cuda:1"])
    assert cfg.trainer.lr == 1 and cfg.trainer.max_minutes == 2.5 and cfg.data.val_split is None
    assert cfg.trainer.grad_clip == 0.5


def test_every_runner_default_is_documented_by_a_comment():
    lines = resources.files("crystalgen").joinpath("configs", "runner.yaml").read_text().splitlines()
    container = OmegaConf.to_container(runner_defaults())
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([a-z_]+):", line)
        if not match:
            continue
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        is_section = line.rstrip().endswith(":")
        if not (previous.startswith("#") or (is_section and following.startswith("#"))):
            undocumented.append(match.group(2))
    assert not undocumented, f"runner.yaml keys without a comment: {undocumented}"
    assert set(container) == {"preset", "preset_note", "memory_gb", "threads", "model", "data", "trainer", "sample", "evaluate"}


@pytest.mark.parametrize(("override", "value"), [("threads=3", 3), ("threads=auto", "auto"), ("threads=null", None)])
def test_threads_takes_a_count_auto_or_null(override, value):
    assert apply_user_layers(runner_defaults(), overrides=[override]).threads == value


@pytest.mark.parametrize(("old", "new"), [(2, 2), (None, None), (0, None)])
def test_a_saved_configuration_with_trainer_threads_reads_as_top_level_threads(old, new):
    """Runs saved before `threads` moved to the top level still resume, report and take `threads=` overrides."""
    saved = OmegaConf.to_container(runner_defaults())
    del saved["threads"]
    saved["trainer"]["threads"] = old
    cfg = from_yaml(to_yaml(OmegaConf.create(saved)), "old.ckpt")
    assert cfg.threads == new and "threads" not in cfg.trainer
    assert apply_user_layers(cfg, overrides=["threads=4"]).threads == 4


def test_benchmark_max_atoms_follows_the_dataset_and_is_saved_resolved(tmp_path):
    """A preset's ``${benchmark_max_atoms:${data.dataset},N}`` gives the published cap of a benchmark (Carbon-24's
    cells reach 24 atoms), N for other data, and the saved configuration holds the number, so that a checkpoint
    loads without the data section."""
    preset = tmp_path / "small.yaml"
    preset.write_text("model:\n  max_atoms: ${benchmark_max_atoms:${data.dataset},12}\n")
    presets = {"small": preset}
    caps = {dataset: compose(presets, "small", model_name="m", overrides=[f"data.dataset={dataset}"]).model.max_atoms
            for dataset in ("carbon_24", "perov_5", "mp_20", "embedded", str(tmp_path / "my_crystals"))}
    assert caps == {"carbon_24": 24, "perov_5": 20, "mp_20": 20, "embedded": 12, str(tmp_path / "my_crystals"): 12}
    saved = to_yaml(compose(presets, "small", model_name="m", overrides=["data.dataset=carbon_24"]))
    assert "max_atoms: 24" in saved and "benchmark_max_atoms" not in saved
