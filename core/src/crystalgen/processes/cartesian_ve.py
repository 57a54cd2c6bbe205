"""Variance-exploding noise on the Cartesian positions of atoms in their lattice (CDVAE, Xie et al. 2022, D.3-D.5).

The state is the fractional coordinates in [0, 1); Gaussian noise is added to the Cartesian positions on the
crystal's lattice and wrapped back into the cell, and the denoiser predicts the shortest periodic displacement to
the clean position divided by sigma (eq. 2), so the score is that prediction / sigma (in 1/Angstrom). Every call
needs the per-crystal ``lattice`` (B, 3, 3) rows in Angstrom and ``num_atoms`` (B,) as keyword arguments
(``Condition.process_args`` while sampling).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from crystalgen.capabilities import Marginal, Posterior, Score, VarianceExploding
from crystalgen.geometry.minimum_image import minimum_image
from crystalgen.geometry.neighbors import crystal_index
from crystalgen.processes.base import ContinuousProcess, Noised, level
from crystalgen.processes.schedules import geometric_sigmas
from crystalgen.processes.ve import VEGaussian


def _lattice_args(lattice: Tensor | None, num_atoms: Tensor | None) -> tuple[Tensor, Tensor]:
    """The call's ``lattice`` and ``num_atoms``: optional in the signatures (the base contract takes any keyword
    arguments), required by every computation here."""
    if lattice is None or num_atoms is None:
        missing = [name for name, value in (("lattice", lattice), ("num_atoms", num_atoms)) if value is None]
        raise TypeError(f"CartesianVE needs the keyword arguments lattice= (B, 3, 3) Angstrom and num_atoms= (B,); "
                        f"missing {', '.join(missing)} (pass them in Condition.process_args while sampling)")
    return lattice, num_atoms


def _row_lattices(lattice: Tensor | None, num_atoms: Tensor | None, like: Tensor) -> Tensor:
    lattice, num_atoms = _lattice_args(lattice, num_atoms)
    return lattice.to(like.dtype)[crystal_index(num_atoms.to(like.device), like.shape[0])]


def _to_cartesian(frac: Tensor, rows: Tensor) -> Tensor:
    return torch.einsum("na,nab->nb", frac, rows)


def _to_fractional(cart: Tensor, rows: Tensor) -> Tensor:
    return torch.linalg.solve(rows.transpose(-1, -2), cart.unsqueeze(-1)).squeeze(-1)


class CartesianVE(ContinuousProcess):
    """VE noise on Cartesian positions of atoms whose state is their fractional coordinates in [0, 1).

    Levels sigma_1 .. sigma_T geometric from ``sigma_min`` to ``sigma_max`` Angstrom (CDVAE: 0.01 and 10, T = 50).
    Prediction ``"score"`` (the only one): sigma_t * score in Cartesian Angstrom/Angstrom, whose training target
    is d_min(x0, x_t) / sigma_t, the shortest periodic displacement from the noisy to the clean position. Every
    update (posterior step, DDIM, Langevin) is the VE formula of :class:`VEGaussian` applied to the Cartesian
    positions on the given lattice, followed by the map back into the cell (Algorithm 1, back_to_cell).

    Keyword arguments of every call: ``lattice`` (B, 3, 3) Angstrom, ``num_atoms`` (B,).
    """

    capabilities = frozenset({Posterior, Marginal, Score, VarianceExploding})
    predictions = ("score",)
    space = "cell"
    needs = frozenset({"lattice", "num_atoms"})

    def __init__(self, num_steps: int = 50, sigma_min: float = 0.01, sigma_max: float = 10.0) -> None:
        sigmas = geometric_sigmas(num_steps, sigma_min, sigma_max)
        super().__init__(num_steps, torch.ones_like(sigmas), sigmas, "score")
        self.cartesian = VEGaussian(num_steps, sigma_min, sigma_max, prediction="score")

    def sample_prior(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """Uniform in the cell (Algorithm 1, line 3)."""
        return torch.rand(shape, generator=generator, device=device)

    def add_noise(self, x0: Tensor, t: Tensor, *, generator: torch.Generator | None = None,
                  lattice: Tensor | None = None, num_atoms: Tensor | None = None, **kwargs: Any) -> Noised:
        rows = _row_lattices(lattice, num_atoms, x0)
        sigma = level(self.sigmas, t, x0)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.finalize(_to_fractional(_to_cartesian(x0, rows) + sigma * eps, rows))
        return Noised(x_t, self.conditional_score(x_t, x0, t, lattice=lattice, num_atoms=num_atoms) / self.score_norm(t, x0))

    def conditional_score(self, x_t: Tensor, x0: Tensor, t: int | Tensor, *, lattice: Tensor | None = None,
                          num_atoms: Tensor | None = None) -> Tensor:
        """d_min(x0, x_t) / sigma_t^2 in 1/Angstrom: the Gaussian score towards the nearest periodic image of x0
        (CDVAE's choice 2 in D.4; exact minimum image over all images, not only the 27 nearest cells)."""
        lattice, num_atoms = _lattice_args(lattice, num_atoms)
        displacement, _ = minimum_image(x0 - x_t, lattice.to(x0.dtype), num_atoms)
        return displacement / level(self.sigmas, t, x0) ** 2

    def loss(self, prediction: Tensor, noised: Noised, **kwargs: Any) -> Tensor:
        """0.5 ||prediction - d_min / sigma||^2 per atom (eq. 2; the half squared norm of the official code)."""
        return 0.5 * ((prediction - noised.target) ** 2).sum(-1)

    def to_x0(self, prediction: Tensor, x_t: Tensor, t: int | Tensor, *, lattice: Tensor | None = None,
              num_atoms: Tensor | None = None, **kwargs: Any) -> Tensor:
        """Tweedie's estimate x_t + sigma_t^2 score in Cartesian space, as (unwrapped) fractional coordinates."""
        rows = _row_lattices(lattice, num_atoms, x_t)
        return _to_fractional(self.cartesian.to_x0(prediction, _to_cartesian(x_t, rows), t), rows)

    def reverse_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *, generator: torch.Generator | None = None,
                     lattice: Tensor | None = None, num_atoms: Tensor | None = None, **kwargs: Any) -> Tensor:
        rows = _row_lattices(lattice, num_atoms, x_t)
        cart = self.cartesian.reverse_step(_to_cartesian(x_t, rows), t, s, prediction, generator=generator)
        return self.finalize(_to_fractional(cart, rows))

    def ddim_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *, eta: float = 0.0,
                  generator: torch.Generator | None = None, lattice: Tensor | None = None,
                  num_atoms: Tensor | None = None, **kwargs: Any) -> Tensor:
        rows = _row_lattices(lattice, num_atoms, x_t)
        cart = self.cartesian.ddim_step(_to_cartesian(x_t, rows), t, s, prediction, eta=eta, generator=generator)
        return self.finalize(_to_fractional(cart, rows))

    def langevin_step(self, x: Tensor, t: int, prediction: Tensor, step_size: float | Tensor, *,
                      generator: torch.Generator | None = None, noise: Tensor | None = None,
                      lattice: Tensor | None = None, num_atoms: Tensor | None = None, **kwargs: Any) -> Tensor:
        """x_cart + h * score + sqrt(2h) z, back into the cell (Algorithm 1, lines 10-12; z is Cartesian)."""
        rows = _row_lattices(lattice, num_atoms, x)
        cart = self.cartesian.langevin_step(_to_cartesian(x, rows), t, prediction, step_size, generator=generator, noise=noise)
        return self.finalize(_to_fractional(cart, rows))

    def finalize(self, x: Tensor) -> Tensor:
        x = torch.remainder(x, 1.0)
        return x.masked_fill(x >= 1.0, 0.0)  # float round-off can give exactly 1 for tiny negative x
