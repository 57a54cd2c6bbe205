"""Worked example of a crystalgen model plugin: the small full-cell diffusion model ``minimal``."""
