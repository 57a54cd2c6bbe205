"""Saved ``model`` sections of crystalgen-cdvae 0.1 in today's shape (CDVAE.upgrade_config).

0.1 built its parts itself: ``model.decoder`` was the GemNet-T network (with the scale-factor settings
``scale_factors``, ``fit_batches``, ``fit_batch_size`` among its keys), ``model.noise`` held the levels and both
processes' sigmas (``sigma_begin`` at level T, ``sigma_end`` at level 1), the encoder section had no name. Today the
network is the core denoiser ``gemnet_t``, the processes are ``cartesian_ve`` and ``composition_mixing`` with
``sigma_max`` / ``sigma_min``, the structure decoder is ``cell``, and the levels and scale-factor settings are model
keys.
"""

from __future__ import annotations

from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

SCALE_FACTOR_KEYS = ("scale_factors", "fit_batches", "fit_batch_size")
NOISE_KEYS = ("num_levels", "independent_levels")


def upgrade(cfg: DictConfig) -> DictConfig:
    """``cfg`` in today's shape; a section that already names its parts (it has ``processes``) comes back as it is."""
    if "processes" in cfg:
        return cfg
    old = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))
    network, noise = dict(old.pop("decoder")), dict(old.pop("noise"))
    model = {key: network.pop(key) for key in SCALE_FACTOR_KEYS if key in network}
    model.update({key: noise[key] for key in NOISE_KEYS if key in noise})
    return OmegaConf.create({
        **old,
        **model,
        "transform": {"name": "cdvae_niggli"},
        "encoder": {"name": "dimenet_pp", **old["encoder"]},
        "denoiser": {"name": "gemnet_t", **network},
        "processes": {
            "frac_coords": {"name": "cartesian_ve", "sigma_min": noise["sigma_end"], "sigma_max": noise["sigma_begin"]},
            "atom_types": {"name": "composition_mixing", "sigma_min": noise["type_sigma_end"],
                           "sigma_max": noise["type_sigma_begin"]},
        },
        "decoder": {"name": "cell"},
    })
