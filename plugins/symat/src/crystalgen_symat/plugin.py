"""Registers SyMat's components with crystalgen (entry point ``symat`` in group ``crystalgen.plugins``).

The model ``symat``, its encoder ``spherenet`` (q(z | M) on the periodic multigraph) and its denoiser
``distance_score`` (one score per edge of the noisy crystal's multigraph, mapped to coordinates by eq. 3). The other
parts are the core's: the transform ``full_cell``, the process ``cartesian_ve`` and the decoder ``cell``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystalgen import hookimpl


@hookimpl
def crystalgen_models() -> Mapping[str, Any]:
    from crystalgen_symat.model import SyMat

    return {"symat": SyMat}


@hookimpl
def crystalgen_encoders() -> Mapping[str, Any]:
    from crystalgen_symat.encoder import SphereNetEncoder

    return {"spherenet": SphereNetEncoder}


@hookimpl
def crystalgen_denoisers() -> Mapping[str, Any]:
    from crystalgen_symat.score import DistanceScoreDenoiser

    return {"distance_score": DistanceScoreDenoiser}
