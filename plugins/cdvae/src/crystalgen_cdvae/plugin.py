"""Registers CDVAE's components with crystalgen (entry point ``cdvae`` in group ``crystalgen.plugins``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystalgen.hookspecs import hookimpl


@hookimpl
def crystalgen_models() -> Mapping[str, Any]:
    from crystalgen_cdvae.model import CDVAE

    return {"cdvae": CDVAE}


@hookimpl
def crystalgen_encoders() -> Mapping[str, Any]:
    from crystalgen_cdvae.encoder import CDVAEEncoder
    from crystalgen_cdvae.transform import CDVAETransform

    return {"cdvae_dimenet_pp": CDVAEEncoder, "cdvae_niggli": CDVAETransform}


@hookimpl
def crystalgen_denoisers() -> Mapping[str, Any]:
    from crystalgen_cdvae.decoder import CDVAEDecoder

    return {"cdvae_gemnet_t": CDVAEDecoder}


@hookimpl
def crystalgen_noise_processes() -> Mapping[str, Any]:
    from crystalgen_cdvae.processes import CartesianVE, CompositionTypeNoise

    return {"cdvae_cartesian_ve": CartesianVE, "cdvae_composition_types": CompositionTypeNoise}
