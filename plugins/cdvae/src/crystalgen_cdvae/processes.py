"""CDVAE's two noise processes (appendix D.3-D.5).

* :class:`CartesianVE` - fractional coordinates perturbed by Gaussian noise *in Cartesian space* on the
  crystal's lattice and wrapped back into the cell; the denoiser predicts the shortest periodic displacement to
  the clean position divided by sigma (eq. 2), so the score is that prediction / sigma (in 1/Angstrom).
* :class:`CompositionTypeNoise` - atom types mixed with the predicted composition,
  A~ ~ (p_A + sigma_A p_c) / (1 + sigma_A); updated by a rule (argmax of the predicted types) while sampling.

Both need per-crystal context, passed as process keyword arguments (``Condition.process_args`` while sampling):
``lattice`` (B, 3, 3) rows in Angstrom and ``num_atoms`` (B,) for the coordinates; ``composition`` (B, K)
probabilities and ``num_atoms`` for the types.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from crystalgen.capabilities import Marginal, Posterior, Rule, Score, VarianceExploding
from crystalgen.geometry.minimum_image import minimum_image
from crystalgen.geometry.neighbors import crystal_index
from crystalgen.processes.base import ContinuousProcess, Noised, NoiseProcess, level
from crystalgen.processes.schedules import geometric_sigmas
from crystalgen.processes.ve import VEGaussian


def _row_lattices(lattice: Tensor, num_atoms: Tensor, like: Tensor) -> Tensor:
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

    def __init__(self, num_steps: int = 50, sigma_min: float = 0.01, sigma_max: float = 10.0) -> None:
        sigmas = geometric_sigmas(num_steps, sigma_min, sigma_max)
        super().__init__(num_steps, torch.ones_like(sigmas), sigmas, "score")
        self.cartesian = VEGaussian(num_steps, sigma_min, sigma_max, prediction="score")

    def sample_prior(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, **kwargs) -> Tensor:
        """Uniform in the cell (Algorithm 1, line 3)."""
        return torch.rand(shape, generator=generator, device=device)

    def add_noise(self, x0: Tensor, t: Tensor, *, generator: torch.Generator | None = None, lattice: Tensor,
                  num_atoms: Tensor, **kwargs) -> Noised:
        rows = _row_lattices(lattice, num_atoms, x0)
        sigma = level(self.sigmas, t, x0)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.finalize(_to_fractional(_to_cartesian(x0, rows) + sigma * eps, rows))
        return Noised(x_t, self.conditional_score(x_t, x0, t, lattice=lattice, num_atoms=num_atoms) / self.score_norm(t, x0))

    def conditional_score(self, x_t: Tensor, x0: Tensor, t: int | Tensor, *, lattice: Tensor, num_atoms: Tensor) -> Tensor:
        """d_min(x0, x_t) / sigma_t^2 in 1/Angstrom: the Gaussian score towards the nearest periodic image of x0
        (CDVAE's choice 2 in D.4; exact minimum image over all images, not only the 27 nearest cells)."""
        displacement, _ = minimum_image(x0 - x_t, lattice.to(x0.dtype), num_atoms)
        return displacement / level(self.sigmas, t, x0) ** 2

    def loss(self, prediction: Tensor, noised: Noised, **kwargs) -> Tensor:
        """0.5 ||prediction - d_min / sigma||^2 per atom (eq. 2; the half squared norm of the official code)."""
        return 0.5 * ((prediction - noised.target) ** 2).sum(-1)

    def to_x0(self, prediction: Tensor, x_t: Tensor, t: int | Tensor, *, lattice: Tensor, num_atoms: Tensor,
              **kwargs) -> Tensor:
        """Tweedie's estimate x_t + sigma_t^2 score in Cartesian space, as (unwrapped) fractional coordinates."""
        rows = _row_lattices(lattice, num_atoms, x_t)
        return _to_fractional(self.cartesian.to_x0(prediction, _to_cartesian(x_t, rows), t), rows)

    def reverse_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *, generator: torch.Generator | None = None,
                     lattice: Tensor, num_atoms: Tensor, **kwargs) -> Tensor:
        rows = _row_lattices(lattice, num_atoms, x_t)
        cart = self.cartesian.reverse_step(_to_cartesian(x_t, rows), t, s, prediction, generator=generator)
        return self.finalize(_to_fractional(cart, rows))

    def ddim_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *, eta: float = 0.0,
                  generator: torch.Generator | None = None, lattice: Tensor, num_atoms: Tensor, **kwargs) -> Tensor:
        rows = _row_lattices(lattice, num_atoms, x_t)
        cart = self.cartesian.ddim_step(_to_cartesian(x_t, rows), t, s, prediction, eta=eta, generator=generator)
        return self.finalize(_to_fractional(cart, rows))

    def langevin_step(self, x: Tensor, t: int, prediction: Tensor, step_size: float | Tensor, *,
                      generator: torch.Generator | None = None, noise: Tensor | None = None, lattice: Tensor,
                      num_atoms: Tensor, **kwargs) -> Tensor:
        """x_cart + h * score + sqrt(2h) z, back into the cell (Algorithm 1, lines 10-12; z is Cartesian)."""
        rows = _row_lattices(lattice, num_atoms, x)
        cart = self.cartesian.langevin_step(_to_cartesian(x, rows), t, prediction, step_size, generator=generator, noise=noise)
        return self.finalize(_to_fractional(cart, rows))

    def finalize(self, x: Tensor) -> Tensor:
        x = torch.remainder(x, 1.0)
        return x.masked_fill(x >= 1.0, 0.0)  # float round-off can give exactly 1 for tiny negative x


@dataclass
class TypeNoised(Noised):
    """Noised types plus the per-row type noise level sigma_A, which weights the loss (eq. 2)."""

    sigma: Tensor


class CompositionTypeNoise(NoiseProcess):
    """Atom types (atomic numbers 1 .. num_classes) perturbed towards the predicted composition (appendix D.3).

    Training: A~ ~ Categorical((onehot(A) + sigma_A p_c) / (1 + sigma_A)) with sigma_A geometric from
    ``sigma_min`` to ``sigma_max`` (CDVAE: 0.01 and 5). The denoiser predicts logits over the true type; the loss is
    cross-entropy / sigma_A. Sampling: the prior draws the types from the composition (``sample_prior``), and
    every model call replaces them by the argmax of the predicted logits (Algorithm 1, line 13), both between
    levels (``reverse_step``) and at corrector calls (``corrector_step``).

    Keyword arguments: ``composition`` (B, K) probabilities over the classes, ``num_atoms`` (B,).
    """

    capabilities = frozenset({Rule, Posterior})
    discrete = True
    prediction = "logits"

    sigmas: Tensor

    def __init__(self, num_steps: int = 50, sigma_min: float = 0.01, sigma_max: float = 5.0, num_classes: int = 100) -> None:
        super().__init__(num_steps)
        self.num_classes = int(num_classes)
        self.register_buffer("sigmas", geometric_sigmas(num_steps, sigma_min, sigma_max))

    def sample_prior(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, composition: Tensor, num_atoms: Tensor,
                     **kwargs) -> Tensor:
        """Types drawn from the composition (Algorithm 1, line 4; CDVAE's ``sample_composition``)."""
        types = composition_types(composition, num_atoms, generator)
        if types.shape != tuple(shape):
            raise ValueError(f"composition and num_atoms give {tuple(types.shape)} types, the state expects {tuple(shape)}")
        return types.to(device)

    def add_noise(self, x0: Tensor, t: Tensor, *, generator: torch.Generator | None = None, composition: Tensor,
                  num_atoms: Tensor, **kwargs) -> TypeNoised:
        sigma = level(self.sigmas, t, x0.float())
        rows = composition.to(sigma.dtype)[crystal_index(num_atoms.to(x0.device), x0.shape[0])]
        probs = F.one_hot(x0 - 1, self.num_classes).to(sigma.dtype) + sigma.unsqueeze(-1) * rows
        x_t = torch.multinomial(probs, 1, generator=generator).squeeze(-1) + 1  # multinomial normalises: / (1 + sigma)
        return TypeNoised(x_t, x0, sigma)

    def loss(self, prediction: Tensor, noised: Noised, **kwargs) -> Tensor:
        """Cross-entropy of the true type under the predicted logits, divided by sigma_A (eq. 2)."""
        if not isinstance(noised, TypeNoised):
            raise TypeError("CompositionTypeNoise.loss needs the TypeNoised returned by its add_noise")
        return F.cross_entropy(prediction, noised.target - 1, reduction="none") / noised.sigma

    def reverse_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *, generator: torch.Generator | None = None,
                     **kwargs) -> Tensor:
        self.check_levels(t, s)
        return prediction.argmax(dim=-1) + 1

    def corrector_step(self, x: Tensor, t: int, prediction: Tensor, *, generator: torch.Generator | None = None,
                       **kwargs) -> Tensor:
        return prediction.argmax(dim=-1) + 1

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma_1={float(self.sigmas[1]):g}, sigma_T={float(self.sigmas[-1]):g}, classes={self.num_classes}"


def composition_types(composition: Tensor, num_atoms: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """N_b atom types per crystal that follow its composition p_b (B, K) (CDVAE's ``sample_composition``).

    Each class gets round(p_k N) atoms; if that is short of N, the rest are drawn (with replacement) from the
    residual max(p - counts / N, 0); the list is shuffled and cut to N. Returns atomic numbers (class + 1),
    crystals concatenated. The per-crystal loop runs on the CPU (a few small operations per crystal), the result
    goes to ``num_atoms``' device.
    """
    out = []
    for p, n in zip(composition.double().cpu(), num_atoms.tolist(), strict=True):
        counts = torch.round(p * n).long()
        missing = n - int(counts.sum())
        if missing > 0:
            residual = (p - counts.double() / n).clamp(min=0)
            weights = residual if float(residual.sum()) > 0 else p
            extra = torch.multinomial(weights, missing, replacement=True, generator=_cpu(generator))
            counts += torch.bincount(extra, minlength=p.numel())
        types = torch.repeat_interleave(torch.arange(p.numel(), device=p.device), counts)
        types = types[torch.randperm(types.numel(), generator=_cpu(generator), device=p.device)][:n]
        out.append(types + 1)
    return torch.cat(out).to(num_atoms.device) if out else torch.empty(0, dtype=torch.long, device=num_atoms.device)


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    """The sampler's generator when it lives on the CPU (composition sampling runs there), else None."""
    return generator if generator is not None and generator.device.type == "cpu" else None
