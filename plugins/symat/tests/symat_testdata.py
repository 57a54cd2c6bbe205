"""Helpers of the SyMat tests (a module name of its own: plugin test folders share one pytest session, where
every folder's `conftest` is the same module name)."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig
from pymatgen.core import Lattice, Structure

from crystalgen.runner.config import compose
from crystalgen_symat.model import SyMat


def rattled(structure: Structure, seed: int, amount: float = 0.03) -> Structure:
    """A strained and rattled copy, so that no two neighbour distances tie (capped graphs are then unambiguous)."""
    rng = np.random.default_rng(seed)
    lattice = Lattice(structure.lattice.matrix @ (np.eye(3) + rng.uniform(-amount, amount, (3, 3))))
    frac = structure.frac_coords + rng.uniform(-amount, amount, structure.frac_coords.shape)
    return Structure(lattice, structure.species, frac % 1.0)


def tiny_config(**changes) -> DictConfig:
    """The small preset's model section shrunk further so that a few training steps take seconds."""
    cfg = compose(SyMat.presets(), "small", model_name="symat")
    m = cfg.model
    m.latent_dim, m.lattice_latent_dim, m.heads.hidden_dim, m.norm_crystals = 8, 8, 32, 8
    for part in (m.encoder, m.denoiser):
        part.hidden_channels, part.num_layers, part.int_emb_size = 16, 1, 8
    m.encoder.out_channels = 16
    for key, value in changes.items():
        node = cfg
        *path, last = key.split(".")
        for name in path:
            node = node[name]
        node[last] = value
    return cfg
