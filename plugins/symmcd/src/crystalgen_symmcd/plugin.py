"""crystalgen plugin hooks of SymmCD (entry point ``symmcd`` in group ``crystalgen.plugins``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystalgen import hookimpl


@hookimpl
def crystalgen_models() -> Mapping[str, Any]:
    from crystalgen_symmcd.model import SymmCD

    return {"symmcd": SymmCD}


@hookimpl
def crystalgen_encoders() -> Mapping[str, Any]:
    from crystalgen_symmcd.transform import AsymmetricUnitTransform

    return {"symmcd_asymmetric_unit": AsymmetricUnitTransform}


@hookimpl
def crystalgen_denoisers() -> Mapping[str, Any]:
    from crystalgen_symmcd.denoiser import SymmCDDenoiser

    return {"symmcd": SymmCDDenoiser}


@hookimpl
def crystalgen_decoders() -> Mapping[str, Any]:
    from crystalgen_symmcd.decoding import WyckoffDecoder

    return {"symmcd_wyckoff": WyckoffDecoder}
