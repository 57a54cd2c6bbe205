"""Builders shared by the StructRepDiff tests: small crystals as tensors and a tiny model configuration."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf
from pymatgen.core import Lattice, Structure

from crystalgen_structrepdiff.ead import EADParameters

#: A small descriptor (fast): L <= 1, 21 centres 0.25 A apart, widths down to 0.18 A, 6 A cutoff.
SMALL_EAD = {"lmax": 1, "mu_start": 0.5, "mu_stop": 5.5, "mu_step": 0.25, "etas": [1.0, 4.0, 16.0], "cutoff": 6.0}


def small_params() -> EADParameters:
    return EADParameters.from_grid(**{k: SMALL_EAD[k] for k in ("lmax", "mu_start", "mu_stop", "mu_step", "cutoff")}, etas=SMALL_EAD["etas"])


def triclinic_structure() -> Structure:
    """Three different elements in a skewed cell, no symmetry (so every feature is generic)."""
    lattice = Lattice.from_parameters(3.9, 4.4, 5.1, 78.0, 95.0, 104.0)
    return Structure(lattice, ["Na", "Cl", "O"], [[0.1, 0.05, 0.2], [0.55, 0.45, 0.6], [0.3, 0.8, 0.15]])


def cartesian(structure: Structure) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positions (N, 3), atomic numbers (N,), lattice (1, 3, 3), num_atoms (1,)) in float64."""
    return (torch.tensor(structure.cart_coords), torch.tensor(structure.atomic_numbers),
            torch.tensor(structure.lattice.matrix).unsqueeze(0), torch.tensor([len(structure)]))


def tiny_model_config(**decoder) -> OmegaConf:
    """A model small enough to train and sample in a second or two; ``decoder`` amends the decoder's options."""
    search = {"trials": 2, "hops": 2, "iterations": 30, "lr": 0.3, "lr_final": 0.005, "hop_step": 1.0, "relocate_atoms": 0,
              "loss_threshold": None, "check_every": 10, "skin": 1.0, "max_pairs": 1_000_000, "loss_weighting": "spread",
              "std_floor": 10.0, "d_min_weight": 9.0, **decoder}
    return OmegaConf.create({
        "num_elements": 96, "max_atoms": None, "num_steps": 50, "scaling": "standard", "clip_x0": True,
        "transform": {"name": "structrepdiff_ead", "ead": SMALL_EAD, "method": "table", "table_spacing": 0.01},
        "denoiser": {"name": "structrepdiff_unet1d", "dim": 8, "dim_mults": [1, 2], "groups": 4, "attention_heads": 2,
                     "attention_dim_head": 8},
        "processes": {"representation": {"name": "vp_gaussian", "schedule": "cosine", "prediction": "eps"}},
        "decoder": {"name": "structrepdiff_reconstruction", **search},
    })
