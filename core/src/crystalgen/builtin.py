"""The core's built-in components, registered through the same hooks as any plugin.

Imports happen inside each hook so that ``import crystalgen`` stays light and a broken module is reported
for its own kind only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystalgen.hookspecs import hookimpl


@hookimpl
def crystalgen_encoders() -> Mapping[str, Any]:
    from crystalgen.encoders.dimenet_pp import DimeNetPPEncoder
    from crystalgen.encoders.full_cell import FullCellTransform

    return {"full_cell": FullCellTransform, "dimenet_pp": DimeNetPPEncoder}


@hookimpl
def crystalgen_noise_processes() -> Mapping[str, Any]:
    from crystalgen.processes.cartesian_ve import CartesianVE
    from crystalgen.processes.composition_mixing import CompositionMixing
    from crystalgen.processes.d3pm import D3PMMarginal
    from crystalgen.processes.ve import VEGaussian
    from crystalgen.processes.vp import VPGaussian
    from crystalgen.processes.wrapped_normal import WrappedNormal

    return {"vp_gaussian": VPGaussian, "ve_gaussian": VEGaussian, "wrapped_normal": WrappedNormal, "d3pm_marginal": D3PMMarginal,
            "cartesian_ve": CartesianVE, "composition_mixing": CompositionMixing}


@hookimpl
def crystalgen_denoisers() -> Mapping[str, Any]:
    from crystalgen.denoisers.gemnet_t import GemNetTDenoiser

    return {"gemnet_t": GemNetTDenoiser}


@hookimpl
def crystalgen_samplers() -> Mapping[str, Any]:
    from crystalgen.samplers.ancestral import AncestralSampler
    from crystalgen.samplers.ddim import DDIMSampler
    from crystalgen.samplers.langevin import AnnealedLangevinSampler
    from crystalgen.samplers.predictor_corrector import PredictorCorrectorSampler

    return {s.name: s for s in (AncestralSampler, DDIMSampler, AnnealedLangevinSampler, PredictorCorrectorSampler)}


@hookimpl
def crystalgen_decoders() -> Mapping[str, Any]:
    from crystalgen.decoders.cell import CellDecoder

    return {"cell": CellDecoder}


@hookimpl
def crystalgen_datasets() -> Mapping[str, Any]:
    from crystalgen.data.registry import builtin_datasets

    return builtin_datasets()


@hookimpl
def crystalgen_property_predictors() -> Mapping[str, Any]:
    from crystalgen.metrics.properties import builtin_predictors

    return builtin_predictors()


@hookimpl
def crystalgen_tasks() -> Mapping[str, Any]:
    from crystalgen.tasks.csp import CrystalStructurePrediction
    from crystalgen.tasks.model_methods import Optimize, Reconstruct

    return {task.name: task for task in (Reconstruct, Optimize, CrystalStructurePrediction)}
