"""The vectorial structure representation R = [R_str, C_comp, L] (paper section 4.1) and its normalisation.

Layout of R (length N = 2 N_e + E + 8):

    [ EAD max-pool (N_e) | EAD min-pool (N_e) | d_min (1) | composition (E) | n (1) | a b c alpha beta gamma (6) ]

with the composition the fraction of atoms of each element Z = 1..E (periodic-table order; the paper uses E = 96),
n the number of atoms, lengths in Angstrom and angles in degrees. Everything but R_str is read back exactly by the
decoder (counts from composition * n, the cell from the six parameters); only R_str needs the gradient-based
reconstruction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from crystalgen import lattice_matrix_to_params

#: The one diffused variable, the normalised R (B, N); the decoder reads the raw R under the same key.
VARIABLE = "representation"


@dataclass(frozen=True)
class RepresentationLayout:
    """Where each block of R sits, for N_e EAD features per atom and E elements."""

    num_ead: int
    num_elements: int

    @property
    def size(self) -> int:
        return 2 * self.num_ead + 1 + self.num_elements + 1 + 6

    @property
    def structure(self) -> slice:
        """R_str = [max-pool, min-pool, d_min]: what the reconstruction matches."""
        return slice(0, 2 * self.num_ead + 1)

    @property
    def d_min(self) -> int:
        return 2 * self.num_ead

    @property
    def composition(self) -> slice:
        start = 2 * self.num_ead + 1
        return slice(start, start + self.num_elements)

    @property
    def num_atoms(self) -> int:
        return 2 * self.num_ead + 1 + self.num_elements

    @property
    def lattice(self) -> slice:
        return slice(self.num_atoms + 1, self.num_atoms + 7)


def composition_block(atomic_numbers: Tensor, num_atoms: Tensor, num_elements: int) -> Tensor:
    """Fraction of atoms of each element Z = 1..E per crystal: (N,) Z and (B,) counts -> (B, E).

    Raises ValueError naming the first element outside 1..E.
    """
    if atomic_numbers.numel() and (int(atomic_numbers.min()) < 1 or int(atomic_numbers.max()) > num_elements):
        bad = int(atomic_numbers[(atomic_numbers < 1) | (atomic_numbers > num_elements)][0])
        raise ValueError(f"element Z={bad} is outside the representation's vocabulary Z = 1..{num_elements}")
    crystal = torch.repeat_interleave(torch.arange(num_atoms.numel(), device=num_atoms.device), num_atoms)
    counts = torch.zeros(num_atoms.numel(), num_elements, dtype=torch.float64, device=num_atoms.device)
    counts.index_put_((crystal, atomic_numbers - 1), torch.ones_like(crystal, dtype=torch.float64), accumulate=True)
    return counts / num_atoms.unsqueeze(1).to(torch.float64)


def lattice_block(lattice: Tensor) -> Tensor:
    """(a, b, c, alpha, beta, gamma) of cells (B, 3, 3) (rows are lattice vectors) -> (B, 6), Angstrom and degrees."""
    lengths, angles = lattice_matrix_to_params(lattice.double())
    return torch.cat([lengths, angles], dim=1)


def assemble(structure_block: Tensor, composition: Tensor, num_atoms: Tensor, lattice_params: Tensor) -> Tensor:
    """R = [R_str, composition, n, lattice parameters] (B, N) in float64."""
    return torch.cat([structure_block.double(), composition.double(), num_atoms.double().unsqueeze(1), lattice_params.double()], dim=1)


#: how RepresentationScaler maps each feature: mean and std, or the training range onto [-1, 1]
SCALINGS = ("standard", "minmax")


class RepresentationScaler(nn.Module):
    """Per-feature affine scaling (x - mean) / std fitted on the training representations; saved with the model.

    ``standard`` uses each feature's mean and standard deviation; ``minmax`` its mid-range and half-range, so that
    every feature spans [-1, 1] over the training set, the range image DDPMs are tuned for (a rare element's
    fraction, 0 in most crystals, otherwise reaches ten or more standard deviations). Features that do not vary in
    the training set (elements that never occur, d_min of a single structure) get std = 1, so they stay at their
    training value after a round trip instead of being divided by zero. The same scale weighs the ``spread``
    reconstruction loss, so every feature of R_str counts in units of its spread over the data.
    ``low`` and ``high`` hold each feature's normalised range over the training set, which sampling clamps the
    predicted clean R to (StructRepDiff ``clip_x0``); -inf / +inf until fitted and in checkpoints older than them.
    """

    mean: Tensor
    std: Tensor
    low: Tensor
    high: Tensor

    def __init__(self, size: int, min_std: float = 1e-8) -> None:
        super().__init__()
        self.min_std = float(min_std)
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("std", torch.ones(size, dtype=torch.float64))
        self.register_buffer("low", torch.full((size,), -math.inf, dtype=torch.float64))
        self.register_buffer("high", torch.full((size,), math.inf, dtype=torch.float64))

    @torch.no_grad()
    def fit(self, representations: Tensor, method: str = "standard") -> RepresentationScaler:
        """Fit to raw representations (M, N) with ``method`` (SCALINGS)."""
        if method not in SCALINGS:
            raise ValueError(f"representation scaling must be one of {', '.join(SCALINGS)}, got {method!r}")
        if representations.shape[0] == 0:
            raise ValueError("cannot fit the representation scaler to an empty training set")
        data = representations.double()
        if method == "standard":
            centre = data.mean(dim=0)
            spread = data.std(dim=0, unbiased=False) if data.shape[0] > 1 else torch.zeros_like(data[0])
        else:
            low, high = data.amin(dim=0), data.amax(dim=0)
            centre, spread = (high + low) / 2, (high - low) / 2
        scale = data.abs().amax(dim=0).clamp(min=1.0)
        self.mean.copy_(centre)
        self.std.copy_(torch.where(spread > self.min_std * scale, spread, torch.ones_like(spread)))
        return self.fit_range(data)

    @torch.no_grad()
    def fit_range(self, representations: Tensor) -> RepresentationScaler:
        """Set ``low`` / ``high`` to the normalised range of raw representations (M, N) under the current mean and
        std (also for a checkpoint from before the range existed)."""
        normalised = self.normalise(representations.double())
        self.low.copy_(normalised.amin(dim=0))
        self.high.copy_(normalised.amax(dim=0))
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("low", "high"):  # checkpoints written before the range existed: no clamp
            state_dict.setdefault(prefix + name, getattr(self, name).new_full(self.mean.shape, -math.inf if name == "low" else math.inf))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def fitted(self) -> bool:
        return bool((self.mean != 0).any() or (self.std != 1).any())

    def normalise(self, raw: Tensor) -> Tensor:
        return ((raw.double() - self.mean) / self.std).to(raw.dtype)

    def denormalise(self, normalised: Tensor) -> Tensor:
        return (normalised.double() * self.std + self.mean).to(torch.float64)
