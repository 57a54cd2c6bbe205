"""The hooks crystalgen calls (entry point ``minimal_diffusion`` in group ``crystalgen.plugins``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystalgen import hookimpl


@hookimpl
def crystalgen_models() -> Mapping[str, Any]:
    from crystalgen_minimal_diffusion.model import MinimalDiffusion  # imported inside: `import crystalgen` stays light

    return {MinimalDiffusion.name: MinimalDiffusion}


@hookimpl
def crystalgen_denoisers() -> Mapping[str, Any]:
    from crystalgen_minimal_diffusion.denoiser import MinimalDenoiser

    return {"minimal_mlp": MinimalDenoiser}
