"""Noise processes: one variable's forward corruption, prior, target and reverse maths (see base.py)."""

from crystalgen.processes.base import CAPABILITIES, ContinuousProcess, NoiseProcess, Noised, level

__all__ = ["CAPABILITIES", "ContinuousProcess", "NoiseProcess", "Noised", "level"]
