"""Saved ``model`` sections of crystalgen-symmcd 0.1 in today's shape (SymmCD.upgrade_config).

0.1 built its parts itself: the transform's tolerances (``symprec``, ``angle_tolerance``, ``max_cell_atoms``) and the
wrapped normal's ``sigma_begin`` / ``sigma_end`` sat at the top of ``model``, the denoiser section had no name, and
the processes and the decoder were fixed in code. Today each part is named in its slot with those same values.
"""

from __future__ import annotations

from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

TRANSFORM_KEYS = ("symprec", "angle_tolerance", "max_cell_atoms")
FRAC_COORDS_KEYS = ("sigma_begin", "sigma_end")


def upgrade(cfg: DictConfig) -> DictConfig:
    """``cfg`` in today's shape; a section that already names its parts (it has ``transform``) comes back as it is."""
    if "transform" in cfg:
        return cfg
    old = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))
    transform = {key: old.pop(key) for key in TRANSFORM_KEYS if key in old}
    frac_coords = {key: old.pop(key) for key in FRAC_COORDS_KEYS if key in old}
    return OmegaConf.create({
        **old,
        "transform": {"name": "symmcd_asymmetric_unit", **transform},
        "denoiser": {"name": "symmcd", **old.get("denoiser", {})},
        "processes": {"lattice_k": {"name": "vp_gaussian", "schedule": "cosine", "prediction": "eps"},
                      "frac_coords": {"name": "wrapped_normal", **frac_coords},
                      "atom_types": {"name": "d3pm_marginal"},
                      "site_symmetry": {"name": "d3pm_marginal"}},
        "decoder": {"name": "symmcd_wyckoff"},
    })
