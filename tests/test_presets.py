"""Every installed model ships the presets the CLI offers (``--preset small`` and ``--preset paper``), and each
composes with the runner defaults into a configuration the runner can use.

The models are discovered through the plugin registry, as ``crystalgen list`` finds them, so a newly installed
plugin is covered without editing this file. The configuration is built with the functions ``crystalgen train
MODEL --preset P`` uses (model_class -> presets -> compose), then the model and its sampler are built from it,
as the runner does next.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from crystalgen import plugins
from crystalgen.cli.list_plugins import inventory
from crystalgen.runner.config import CHOICES, DEVICE, compose
from crystalgen.runner.models import build_sampler, model_class

PRESETS = ("small", "paper")


def _installed_models() -> list[str]:
    return [entry["name"] for entry in inventory()["components"]["model"]]


def _config(name: str, preset: str):
    """The configuration of ``crystalgen train NAME --preset PRESET`` (no user file, no overrides)."""
    cls = model_class(name)
    presets = cls.presets()
    if preset not in presets:  # every model ships both (issue: two presets per model)
        pytest.fail(f"model {name!r} has no preset {preset!r} (it ships {sorted(presets)}), so `crystalgen train "
                    f"{name} --preset {preset}` fails; add {cls.config_package}/{preset}.yaml")
    return compose(presets, preset, model_name=name)


def test_the_models_of_the_repository_are_discovered():
    # Guards the parametrisation below: a plugin that failed to load would silently drop its model from it.
    assert {"cdvae", "symmcd", "structrepdiff", "toy"} <= set(_installed_models()), inventory()["failures"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", _installed_models())
def test_preset_composes_with_the_runner_defaults_into_a_usable_config(name, preset):
    cfg = _config(name, preset)
    assert cfg.preset == preset
    note = cfg.preset_note
    assert isinstance(note, str) and len(note.strip()) >= 20, f"{name}/{preset}: preset_note {note!r} says nothing"

    # The keys the runner reads, with values it accepts.
    for key in ("data.batch_size", "trainer.max_epochs", "trainer.val_every", "trainer.checkpoint_every",
                "trainer.log_every", "sample.num_samples", "sample.batch_size"):
        value = OmegaConf.select(cfg, key)
        assert isinstance(value, int) and not isinstance(value, bool) and value > 0, f"{name}/{preset}: {key}={value!r}"
    for key, choices in CHOICES.items():
        assert OmegaConf.select(cfg, key) in choices, f"{name}/{preset}: {key}"
    assert cfg.trainer.lr > 0 and 0.0 <= cfg.trainer.ema_decay < 1.0
    assert cfg.trainer.max_minutes is None or cfg.trainer.max_minutes > 0
    assert DEVICE.fullmatch(cfg.trainer.device) and isinstance(cfg.trainer.seed, int)
    assert cfg.data.dataset in plugins.default_host().registry("dataset"), f"{name}/{preset}: data.dataset"
    assert isinstance(cfg.data.train_split, str) and (cfg.data.val_split is None or isinstance(cfg.data.val_split, str))
    assert isinstance(OmegaConf.to_container(cfg.sample.options), dict)
    assert cfg.sample.steps is None or cfg.sample.steps > 0
    assert cfg.evaluate.metrics is None or len(cfg.evaluate.metrics) > 0
    assert cfg.model, f"{name}/{preset}: the preset defines no model settings"

    # The model section builds the model, and the sample section a sampler that can drive it.
    model = model_class(name).from_config(cfg.model)
    sampler = build_sampler(model, cfg.sample.sampler, cfg.sample.steps, cfg.sample.options)
    assert sampler.name == (cfg.sample.sampler or model.default_sampler)


@pytest.mark.parametrize("name", _installed_models())
def test_small_preset_shrinks_the_paper_preset(name):
    small, paper = _config(name, "small"), _config(name, "paper")
    assert small.preset_note != paper.preset_note, f"{name}: both presets carry the same note"
    changed = [section for section in ("model", "data", "trainer", "sample")
               if OmegaConf.to_container(small[section]) != OmegaConf.to_container(paper[section])]
    assert changed, f"{name}: the small preset equals the paper preset"
    # Small trains for fewer epochs or under a time budget that paper does not have, and samples no more.
    assert (small.trainer.max_epochs < paper.trainer.max_epochs
            or (small.trainer.max_minutes is not None and paper.trainer.max_minutes is None)), name
    assert small.sample.num_samples <= paper.sample.num_samples, name


@pytest.mark.parametrize("name", _installed_models())
def test_every_shipped_preset_composes(name):
    """Beyond small and paper (e.g. CDVAE's paper_mp_20): each preset file is valid and says what it is."""
    presets = model_class(name).presets()
    for preset in sorted(presets):
        cfg = compose(presets, preset, model_name=name)
        assert cfg.preset == preset and cfg.preset_note.strip(), f"{name}/{preset}: empty preset_note"
