"""Saved ``model`` sections of crystalgen-symat in today's shape (SyMat.upgrade_config).

``optimization.decode_every`` and ``optimization.head_fit`` came after the first checkpoints were written; such a
section gets the values the presets hold, which leave those checkpoints' own behaviour as it was (only the final
latent is decoded; the head-fit settings are read only by ``optimize --fit-head-on``).
"""

from __future__ import annotations

from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

#: Keys of ``optimization`` that earlier sections lack, with the presets' values.
OPTIMIZATION_DEFAULTS = {"decode_every": None, "head_fit": {"epochs": 200, "lr": 0.001, "batch_size": 256, "holdout": 0.1}}


def upgrade(cfg: DictConfig) -> DictConfig:
    """``cfg`` with the missing ``optimization`` keys filled in; a section in today's shape comes back as it is."""
    if all(key in cfg.optimization for key in OPTIMIZATION_DEFAULTS):
        return cfg
    section = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))
    section["optimization"] = {**OPTIMIZATION_DEFAULTS, **section["optimization"]}
    return OmegaConf.create(section)
