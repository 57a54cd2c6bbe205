"""Denoisers and the building blocks they share (time embeddings, periodic Fourier features)."""

from crystalgen.denoisers.base import Denoiser

__all__ = ["Denoiser"]
