"""Samplers: loops over a time grid that turn a model's predictions into samples (see base.py)."""

from crystalgen.samplers.base import IncompatibleSamplerError, Sampler, SamplingModel

__all__ = ["IncompatibleSamplerError", "Sampler", "SamplingModel"]
