"""Shared fixtures of the SyMat plugin tests: small rattled crystals and a tiny model configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from pymatgen.core import Lattice, Structure

from crystalgen.runner.config import compose
from crystalgen_symat.model import SyMat


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread avoids oversubscribing a shared machine (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rattled(structure: Structure, seed: int, amount: float = 0.03) -> Structure:
    """A strained and rattled copy, so that no two neighbour distances tie (capped graphs are then unambiguous)."""
    rng = np.random.default_rng(seed)
    lattice = Lattice(structure.lattice.matrix @ (np.eye(3) + rng.uniform(-amount, amount, (3, 3))))
    frac = structure.frac_coords + rng.uniform(-amount, amount, structure.frac_coords.shape)
    return Structure(lattice, structure.species, frac % 1.0)


@pytest.fixture(scope="session")
def crystals() -> list[Structure]:
    """Four small ordered crystals: perovskite SrTiO3, rock salt (primitive), CsCl, wurtzite-like ZnO."""
    perovskite = Structure(Lattice.cubic(3.91), ["Sr", "Ti", "O", "O", "O"],
                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    rocksalt = Structure(Lattice.from_parameters(3.99, 3.99, 3.99, 60, 60, 60), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    wurtzite = Structure(Lattice.hexagonal(3.25, 5.21), ["Zn", "Zn", "O", "O"],
                         [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.38], [2 / 3, 1 / 3, 0.88]])
    return [rattled(s, i) for i, s in enumerate([perovskite, rocksalt, cscl, wurtzite])]


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
