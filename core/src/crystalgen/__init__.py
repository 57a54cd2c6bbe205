"""crystalgen: a plugin framework for generative models of periodic crystals.

This module is the public face a plugin author needs (docs/plugins.md): ``hookimpl``, the base class of every
component kind, the capability protocols, the sampling state types and the helpers the built-in plugins share.
Names load on first use (PEP 562), so ``import crystalgen`` does not import torch or pymatgen; the
``TYPE_CHECKING`` block lets type checkers see them. Anything deeper is internal and may change without notice.

``CONTRACT_VERSION`` names the plugin contract; crystalgen-core ``0.2.x`` implements contract ``2.x``, and a
plugin declares the range it was built for on the distribution (``crystalgen-core>=0.2,<0.3``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

#: The plugin contract this core implements (hooks, base classes, capability protocols, state types). 2.1 adds
#: sampling conditions, the tasks hook, training stages, process steps reading other variables and gradients in
#: denoise, and gives models one SampleRequest value per crystal; 2.2 a default GenerativeModel.from_config and a
#: task job's inputs read once; 2.3 cached_statistics (docs/plugins.md, "Contract versions").
CONTRACT_VERSION = "2.3"

try:
    __version__ = version("crystalgen-core")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:  # "X as X": an explicit re-export for type checkers
    from crystalgen.capabilities import (
        Capability as Capability,
    )
    from crystalgen.capabilities import (
        Marginal as Marginal,
    )
    from crystalgen.capabilities import (
        Posterior as Posterior,
    )
    from crystalgen.capabilities import (
        Process as Process,
    )
    from crystalgen.capabilities import (
        Rule as Rule,
    )
    from crystalgen.capabilities import (
        Score as Score,
    )
    from crystalgen.capabilities import (
        VarianceExploding as VarianceExploding,
    )
    from crystalgen.capabilities import (
        capability_name as capability_name,
    )
    from crystalgen.capabilities import (
        capable as capable,
    )
    from crystalgen.data.crystal import (
        PROPERTY_PREFIX as PROPERTY_PREFIX,
    )
    from crystalgen.data.crystal import (
        check_ordered as check_ordered,
    )
    from crystalgen.data.crystal import (
        collate as collate,
    )
    from crystalgen.data.crystal import (
        structure_to_data as structure_to_data,
    )
    from crystalgen.data.crystal import (
        tensors_to_structure as tensors_to_structure,
    )
    from crystalgen.data.statistics_cache import (
        cached_statistics as cached_statistics,
    )
    from crystalgen.decoders.base import (
        Decoder as Decoder,
    )
    from crystalgen.decoders.cell import (
        decode_cells as decode_cells,
    )
    from crystalgen.denoisers.base import (
        Denoiser as Denoiser,
    )
    from crystalgen.denoisers.embeddings import (
        PeriodicFourierFeatures as PeriodicFourierFeatures,
    )
    from crystalgen.denoisers.embeddings import (
        SinusoidalTimeEmbedding as SinusoidalTimeEmbedding,
    )
    from crystalgen.denoisers.embeddings import (
        sinusoidal_embedding as sinusoidal_embedding,
    )
    from crystalgen.denoisers.gemnet_t import (
        GemNetT as GemNetT,
    )
    from crystalgen.denoisers.gemnet_t import (
        GemNetTOutput as GemNetTOutput,
    )
    from crystalgen.denoisers.gemnet_t import (
        InteractionGraph as InteractionGraph,
    )
    from crystalgen.denoisers.gemnet_t import (
        fit_scale_factors as fit_scale_factors,
    )
    from crystalgen.denoisers.gemnet_t import (
        interaction_graph as interaction_graph,
    )
    from crystalgen.encoders.base import (
        Encoder as Encoder,
    )
    from crystalgen.encoders.base import (
        SkipCrystal as SkipCrystal,
    )
    from crystalgen.encoders.base import (
        StructureTransform as StructureTransform,
    )
    from crystalgen.encoders.dimenet_pp import (
        reparameterize as reparameterize,
    )
    from crystalgen.encoders.full_cell import (
        FullCellTransform as FullCellTransform,
    )
    from crystalgen.geometry.gl3_lattice import (
        GL3_LAMBDA as GL3_LAMBDA,
    )
    from crystalgen.geometry.gl3_lattice import (
        algebra_to_gl3_coords as algebra_to_gl3_coords,
    )
    from crystalgen.geometry.gl3_lattice import (
        gl3_basis as gl3_basis,
    )
    from crystalgen.geometry.gl3_lattice import (
        gl3_coords_to_algebra as gl3_coords_to_algebra,
    )
    from crystalgen.geometry.gl3_lattice import (
        gl3_coords_to_lattice as gl3_coords_to_lattice,
    )
    from crystalgen.geometry.gl3_lattice import (
        lattice_to_gl3_coords as lattice_to_gl3_coords,
    )
    from crystalgen.geometry.lattice import (
        InvalidLatticeError as InvalidLatticeError,
    )
    from crystalgen.geometry.lattice import (
        lattice_matrix_to_params as lattice_matrix_to_params,
    )
    from crystalgen.geometry.lattice import (
        lattice_params_to_matrix as lattice_params_to_matrix,
    )
    from crystalgen.geometry.lattice import (
        scale_lengths as scale_lengths,
    )
    from crystalgen.geometry.lattice import (
        unscale_lengths as unscale_lengths,
    )
    from crystalgen.geometry.log_lattice import (
        apply_k_mask as apply_k_mask,
    )
    from crystalgen.geometry.log_lattice import (
        k_to_lattice as k_to_lattice,
    )
    from crystalgen.geometry.log_lattice import (
        lattice_to_k as lattice_to_k,
    )
    from crystalgen.geometry.log_lattice import (
        space_group_k_mask as space_group_k_mask,
    )
    from crystalgen.geometry.log_lattice import (
        space_group_k_masks as space_group_k_masks,
    )
    from crystalgen.geometry.minimum_image import (
        minimum_image as minimum_image,
    )
    from crystalgen.geometry.neighbors import (
        PeriodicGraph as PeriodicGraph,
    )
    from crystalgen.geometry.neighbors import (
        crystal_index as crystal_index,
    )
    from crystalgen.geometry.neighbors import (
        edge_vectors as edge_vectors,
    )
    from crystalgen.geometry.neighbors import (
        radius_graph_pbc as radius_graph_pbc,
    )
    from crystalgen.geometry.niggli import (
        niggli_reduce as niggli_reduce,
    )
    from crystalgen.geometry.niggli import (
        with_standard_orientation as with_standard_orientation,
    )
    from crystalgen.geometry.triplets import (
        triplets as triplets,
    )
    from crystalgen.hookspecs import (
        hookimpl as hookimpl,
    )
    from crystalgen.models.assembly import (
        IncompatiblePartsError as IncompatiblePartsError,
    )
    from crystalgen.models.base import (
        Decoded as Decoded,
    )
    from crystalgen.models.base import (
        GenerativeModel as GenerativeModel,
    )
    from crystalgen.models.base import (
        UnsupportedRequestError as UnsupportedRequestError,
    )
    from crystalgen.models.stages import (
        Stage as Stage,
    )
    from crystalgen.processes.base import (
        CAPABILITIES as CAPABILITIES,
    )
    from crystalgen.processes.base import (
        ContinuousProcess as ContinuousProcess,
    )
    from crystalgen.processes.base import (
        Noised as Noised,
    )
    from crystalgen.processes.base import (
        NoiseProcess as NoiseProcess,
    )
    from crystalgen.processes.base import (
        level as level,
    )
    from crystalgen.processes.d3pm import (
        D3PMMarginal as D3PMMarginal,
    )
    from crystalgen.processes.schedules import (
        geometric_sigmas as geometric_sigmas,
    )
    from crystalgen.processes.ve import (
        VEGaussian as VEGaussian,
    )
    from crystalgen.processes.vp import (
        VPGaussian as VPGaussian,
    )
    from crystalgen.processes.wrapped_normal import (
        WrappedNormal as WrappedNormal,
    )
    from crystalgen.processes.wrapped_normal import (
        wrap_displacement as wrap_displacement,
    )
    from crystalgen.registry import (
        UnknownComponentError as UnknownComponentError,
    )
    from crystalgen.resources import (
        density_phrase as density_phrase,
    )
    from crystalgen.resources import (
        memory_budget as memory_budget,
    )
    from crystalgen.resources import (
        neighbours_within as neighbours_within,
    )
    from crystalgen.resources import (
        over_budget_reason as over_budget_reason,
    )
    from crystalgen.resources import (
        pack_by_cost as pack_by_cost,
    )
    from crystalgen.samplers.base import (
        IncompatibleSamplerError as IncompatibleSamplerError,
    )
    from crystalgen.samplers.base import (
        ProgressCallback as ProgressCallback,
    )
    from crystalgen.samplers.base import (
        Sampler as Sampler,
    )
    from crystalgen.samplers.base import (
        SamplingModel as SamplingModel,
    )
    from crystalgen.samplers.base import (
        role as role,
    )
    from crystalgen.samplers.base import (
        time_grid as time_grid,
    )
    from crystalgen.specs import (
        DecoderSpec as DecoderSpec,
    )
    from crystalgen.specs import (
        DenoiserSpec as DenoiserSpec,
    )
    from crystalgen.specs import (
        EncoderSpec as EncoderSpec,
    )
    from crystalgen.specs import (
        ModelSpec as ModelSpec,
    )
    from crystalgen.specs import (
        ProcessSpec as ProcessSpec,
    )
    from crystalgen.specs import (
        Variable as Variable,
    )
    from crystalgen.state import (
        Condition as Condition,
    )
    from crystalgen.state import (
        Constraint as Constraint,
    )
    from crystalgen.state import (
        SampleRequest as SampleRequest,
    )
    from crystalgen.tasks.base import (
        Scoring as Scoring,
    )
    from crystalgen.tasks.base import (
        Task as Task,
    )
    from crystalgen.tasks.base import (
        TaskJob as TaskJob,
    )

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "hookimpl": "crystalgen.hookspecs",
    "Capability": "crystalgen.capabilities",
    "Marginal": "crystalgen.capabilities",
    "Posterior": "crystalgen.capabilities",
    "Process": "crystalgen.capabilities",
    "Rule": "crystalgen.capabilities",
    "Score": "crystalgen.capabilities",
    "VarianceExploding": "crystalgen.capabilities",
    "capability_name": "crystalgen.capabilities",
    "capable": "crystalgen.capabilities",
    "Condition": "crystalgen.state",
    "Constraint": "crystalgen.state",
    "SampleRequest": "crystalgen.state",
    "Task": "crystalgen.tasks.base",
    "TaskJob": "crystalgen.tasks.base",
    "Scoring": "crystalgen.tasks.base",
    "Decoded": "crystalgen.models.base",
    "GenerativeModel": "crystalgen.models.base",
    "UnsupportedRequestError": "crystalgen.models.base",
    "Stage": "crystalgen.models.stages",
    "CAPABILITIES": "crystalgen.processes.base",
    "ContinuousProcess": "crystalgen.processes.base",
    "NoiseProcess": "crystalgen.processes.base",
    "Noised": "crystalgen.processes.base",
    "level": "crystalgen.processes.base",
    "D3PMMarginal": "crystalgen.processes.d3pm",
    "geometric_sigmas": "crystalgen.processes.schedules",
    "VEGaussian": "crystalgen.processes.ve",
    "VPGaussian": "crystalgen.processes.vp",
    "WrappedNormal": "crystalgen.processes.wrapped_normal",
    "IncompatibleSamplerError": "crystalgen.samplers.base",
    "ProgressCallback": "crystalgen.samplers.base",
    "Sampler": "crystalgen.samplers.base",
    "SamplingModel": "crystalgen.samplers.base",
    "role": "crystalgen.samplers.base",
    "time_grid": "crystalgen.samplers.base",
    "Encoder": "crystalgen.encoders.base",
    "SkipCrystal": "crystalgen.encoders.base",
    "StructureTransform": "crystalgen.encoders.base",
    "FullCellTransform": "crystalgen.encoders.full_cell",
    "Denoiser": "crystalgen.denoisers.base",
    "PeriodicFourierFeatures": "crystalgen.denoisers.embeddings",
    "SinusoidalTimeEmbedding": "crystalgen.denoisers.embeddings",
    "Decoder": "crystalgen.decoders.base",
    "decode_cells": "crystalgen.decoders.cell",
    "UnknownComponentError": "crystalgen.registry",
    "PROPERTY_PREFIX": "crystalgen.data.crystal",
    "check_ordered": "crystalgen.data.crystal",
    "collate": "crystalgen.data.crystal",
    "cached_statistics": "crystalgen.data.statistics_cache",
    "structure_to_data": "crystalgen.data.crystal",
    "tensors_to_structure": "crystalgen.data.crystal",
    "InvalidLatticeError": "crystalgen.geometry.lattice",
    "lattice_matrix_to_params": "crystalgen.geometry.lattice",
    "lattice_params_to_matrix": "crystalgen.geometry.lattice",
    "scale_lengths": "crystalgen.geometry.lattice",
    "unscale_lengths": "crystalgen.geometry.lattice",
    "apply_k_mask": "crystalgen.geometry.log_lattice",
    "k_to_lattice": "crystalgen.geometry.log_lattice",
    "lattice_to_k": "crystalgen.geometry.log_lattice",
    "space_group_k_mask": "crystalgen.geometry.log_lattice",
    "space_group_k_masks": "crystalgen.geometry.log_lattice",
    "minimum_image": "crystalgen.geometry.minimum_image",
    "PeriodicGraph": "crystalgen.geometry.neighbors",
    "crystal_index": "crystalgen.geometry.neighbors",
    "edge_vectors": "crystalgen.geometry.neighbors",
    "radius_graph_pbc": "crystalgen.geometry.neighbors",
    "niggli_reduce": "crystalgen.geometry.niggli",
    "with_standard_orientation": "crystalgen.geometry.niggli",
    "triplets": "crystalgen.geometry.triplets",
    "fit_scale_factors": "crystalgen.denoisers.gemnet_t",
    "GemNetT": "crystalgen.denoisers.gemnet_t",
    "GemNetTOutput": "crystalgen.denoisers.gemnet_t",
    "InteractionGraph": "crystalgen.denoisers.gemnet_t",
    "interaction_graph": "crystalgen.denoisers.gemnet_t",
    "sinusoidal_embedding": "crystalgen.denoisers.embeddings",
    "GL3_LAMBDA": "crystalgen.geometry.gl3_lattice",
    "gl3_basis": "crystalgen.geometry.gl3_lattice",
    "gl3_coords_to_algebra": "crystalgen.geometry.gl3_lattice",
    "algebra_to_gl3_coords": "crystalgen.geometry.gl3_lattice",
    "gl3_coords_to_lattice": "crystalgen.geometry.gl3_lattice",
    "lattice_to_gl3_coords": "crystalgen.geometry.gl3_lattice",
    "wrap_displacement": "crystalgen.processes.wrapped_normal",
    "reparameterize": "crystalgen.encoders.dimenet_pp",
    "Variable": "crystalgen.specs",
    "ProcessSpec": "crystalgen.specs",
    "DenoiserSpec": "crystalgen.specs",
    "DecoderSpec": "crystalgen.specs",
    "EncoderSpec": "crystalgen.specs",
    "ModelSpec": "crystalgen.specs",
    "IncompatiblePartsError": "crystalgen.models.assembly",
    "density_phrase": "crystalgen.resources",
    "memory_budget": "crystalgen.resources",
    "neighbours_within": "crystalgen.resources",
    "over_budget_reason": "crystalgen.resources",
    "pack_by_cost": "crystalgen.resources",
}

__all__ = ["CONTRACT_VERSION", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import the defining module of a public name on first use and keep the value here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'crystalgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
