"""Samplers: loops over a time grid that turn a model's predictions into samples (see base.py)."""

from crystalgen.samplers.ancestral import AncestralSampler
from crystalgen.samplers.base import IncompatibleSamplerError, Sampler, SamplingModel, role, time_grid
from crystalgen.samplers.ddim import DDIMSampler
from crystalgen.samplers.langevin import AnnealedLangevinSampler
from crystalgen.samplers.predictor_corrector import PredictorCorrectorSampler

__all__ = ["AncestralSampler", "AnnealedLangevinSampler", "DDIMSampler", "IncompatibleSamplerError",
           "PredictorCorrectorSampler", "Sampler", "SamplingModel", "role", "time_grid"]
