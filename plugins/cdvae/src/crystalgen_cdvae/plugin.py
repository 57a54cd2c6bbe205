"""Registers CDVAE's components with crystalgen (entry point ``cdvae`` in group ``crystalgen.plugins``).

Its other parts are the core's, shared with the methods to come: the encoder ``dimenet_pp``, the denoiser
``gemnet_t``, the processes ``cartesian_ve`` and ``composition_mixing`` and the decoder ``cell``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystalgen import hookimpl


@hookimpl
def crystalgen_models() -> Mapping[str, Any]:
    from crystalgen_cdvae.model import CDVAE

    return {"cdvae": CDVAE}


@hookimpl
def crystalgen_encoders() -> Mapping[str, Any]:
    from crystalgen_cdvae.transform import CDVAETransform

    return {"cdvae_niggli": CDVAETransform}
