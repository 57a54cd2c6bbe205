"""Noise processes: one variable's forward corruption, prior, target and reverse maths (see base.py)."""

from crystalgen.processes.base import CAPABILITIES, ContinuousProcess, Noised, NoiseProcess, level
from crystalgen.processes.cartesian_ve import CartesianVE
from crystalgen.processes.composition_mixing import CompositionMixing
from crystalgen.processes.d3pm import D3PMMarginal
from crystalgen.processes.ve import VEGaussian
from crystalgen.processes.vp import VPGaussian
from crystalgen.processes.wrapped_normal import WrappedNormal

__all__ = ["CAPABILITIES", "CartesianVE", "CompositionMixing", "ContinuousProcess", "D3PMMarginal", "NoiseProcess", "Noised", "VEGaussian", "VPGaussian",
           "WrappedNormal", "level"]
