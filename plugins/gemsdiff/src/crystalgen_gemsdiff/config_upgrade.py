"""Saved ``model`` sections of earlier versions of this plugin, in today's shape (GenerativeModel.upgrade_config).

Before ``volume_prior`` existed the decoded cell always started at the unit cube: a section without the key gets
``volume_prior: false``, so that such a checkpoint samples as it was trained.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def upgrade(cfg: DictConfig) -> DictConfig:
    if "volume_prior" in cfg:
        return cfg
    cfg = cfg.copy()
    OmegaConf.update(cfg, "volume_prior", False, force_add=True)
    return cfg
