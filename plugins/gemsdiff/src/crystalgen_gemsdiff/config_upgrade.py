"""Saved ``model`` sections of earlier versions of this plugin, in today's shape (GenerativeModel.upgrade_config).

Each key added since the first release gets the value that reproduces how such a checkpoint was trained:
- ``volume_prior: false``: before the key existed the decoded cell always started at the unit cube;
- ``lattice_space: lie_algebra``: before ablation (d) existed the lattice was always diffused in gl(3) coordinates.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

#: key -> the behaviour of sections saved before the key existed
ADDED_KEYS = {"volume_prior": False, "lattice_space": "lie_algebra"}


def upgrade(cfg: DictConfig) -> DictConfig:
    missing = {key: value for key, value in ADDED_KEYS.items() if key not in cfg}
    if not missing:
        return cfg
    cfg = cfg.copy()
    for key, value in missing.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg
