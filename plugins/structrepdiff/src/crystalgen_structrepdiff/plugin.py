"""crystalgen plugin hooks of StructRepDiff (entry point ``structrepdiff`` in group ``crystalgen.plugins``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystalgen import hookimpl


@hookimpl
def crystalgen_models() -> Mapping[str, Any]:
    from crystalgen_structrepdiff.model import StructRepDiff

    return {"structrepdiff": StructRepDiff}


@hookimpl
def crystalgen_encoders() -> Mapping[str, Any]:
    from crystalgen_structrepdiff.transform import RepresentationTransform

    return {"structrepdiff_ead": RepresentationTransform}


@hookimpl
def crystalgen_denoisers() -> Mapping[str, Any]:
    from crystalgen_structrepdiff.unet import UNet1D

    return {"structrepdiff_unet1d": UNet1D}


@hookimpl
def crystalgen_decoders() -> Mapping[str, Any]:
    from crystalgen_structrepdiff.decoding import GradientReconstruction

    return {"structrepdiff_reconstruction": GradientReconstruction}
