"""Registers GemsDiff's components with crystalgen (entry point ``gemsdiff`` in group ``crystalgen.plugins``): the
model ``gemsdiff``, its denoiser ``gemsnet`` and the sampler ``gemsdiff_code`` (the official code's reverse update).
Its other parts are the core's: the transform ``full_cell``, the processes ``wrapped_normal`` and ``vp_gaussian`` and
the decoder ``cell``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystalgen import hookimpl


@hookimpl
def crystalgen_models() -> Mapping[str, Any]:
    from crystalgen_gemsdiff.model import GemsDiff

    return {"gemsdiff": GemsDiff}


@hookimpl
def crystalgen_denoisers() -> Mapping[str, Any]:
    from crystalgen_gemsdiff.denoiser import GemsNetDenoiser

    return {"gemsnet": GemsNetDenoiser}


@hookimpl
def crystalgen_samplers() -> Mapping[str, Any]:
    from crystalgen_gemsdiff.code_sampler import GemsDiffCodeSampler

    return {"gemsdiff_code": GemsDiffCodeSampler}
