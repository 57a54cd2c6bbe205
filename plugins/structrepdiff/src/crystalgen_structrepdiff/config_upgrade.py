"""Saved ``model`` sections of crystalgen-structrepdiff 0.1 in today's shape (StructRepDiff.upgrade_config).

0.1 built its parts itself: ``ead``, ``ead_method`` and ``table_spacing`` (the transform), ``unet`` (the denoiser),
``schedule`` (the VP process, eps prediction in code) and ``reconstruction`` (the decoder) sat at the top of
``model``. Keys that 0.1 added over time were read with a default when a checkpoint lacked them; those defaults are
written out here, so that such a checkpoint decodes as it did (the decoder's own defaults are the paper's, and
``loss_weighting`` was ``spread`` then).
"""

from __future__ import annotations

from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

#: Model keys and search settings that older 0.1 checkpoints lack, with the value 0.1 used for them.
MODEL_DEFAULTS = {"scaling": "standard", "clip_x0": True}
SEARCH_DEFAULTS = {"relocate_atoms": 0, "relocate_closer_than": 0.0, "d_min_penalty": 0.0, "loss_weighting": "spread"}


def upgrade(cfg: DictConfig) -> DictConfig:
    """``cfg`` in today's shape; a section that already names its parts (it has ``transform``) comes back as it is."""
    if "transform" in cfg:
        return cfg
    old = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))
    transform = {"name": "structrepdiff_ead", "ead": old.pop("ead"), "method": old.pop("ead_method"),
                 "table_spacing": old.pop("table_spacing")}
    process = {"name": "vp_gaussian", "schedule": old.pop("schedule"), "prediction": "eps"}
    return OmegaConf.create({
        **MODEL_DEFAULTS,
        **{key: value for key, value in old.items() if key not in ("unet", "reconstruction")},
        "transform": transform,
        "denoiser": {"name": "structrepdiff_unet1d", **old["unet"]},
        "processes": {"representation": process},
        "decoder": {"name": "structrepdiff_reconstruction", **SEARCH_DEFAULTS, **old["reconstruction"]},
    })
