"""Conformance checks: hold each part a plugin registers to its kind's contract (public as crystalgen.testing).

One function per kind, each raising AssertionError naming the part, the check and what was expected:
``check_process``, ``check_denoiser``, ``check_decoder``, ``check_transform``, ``check_encoder``,
``check_sampler``, ``check_model`` (which checks every part of a model on the inputs the model hands it) and
``check_plugin`` (the right check for everything a plugin registers); beside them
``check_gradients_reach_parameters`` (a model's training loss reaches every parameter it trains, as
DistributedDataParallel requires).
"""

from crystalgen.conformance.crystals import check_crystals
from crystalgen.conformance.decoders import check_decoder
from crystalgen.conformance.denoisers import check_denoiser
from crystalgen.conformance.gradients import check_gradients_reach_parameters
from crystalgen.conformance.models import check_model
from crystalgen.conformance.plugin_check import check_plugin
from crystalgen.conformance.processes import check_process
from crystalgen.conformance.samplers import check_sampler
from crystalgen.conformance.transforms import check_encoder, check_transform

__all__ = ["check_crystals", "check_decoder", "check_denoiser", "check_encoder", "check_gradients_reach_parameters",
           "check_model", "check_plugin", "check_process", "check_sampler", "check_transform"]
