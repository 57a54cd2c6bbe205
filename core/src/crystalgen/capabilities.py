"""Process capabilities as typed protocols: exactly the methods a sampler may call on a noise process.

A sampler sees each process as a :class:`Process` (level count, kind, prior, declared capabilities) and calls
anything else only through the capability protocols below, after narrowing with :func:`capable`. A type checker
therefore holds samplers to the promise, and a process holds itself to it by declaring the protocols in its
``capabilities``.

Compatibility is decided by that declaration, not by structure alone: :class:`VarianceExploding` adds no method
(it promises ``a_t = 1``) and every process has a ``corrector_step``, so ``isinstance`` cannot tell those apart.
:func:`undeclared` checks the other direction, that a process has the methods of what it declares.

Time levels are ints with ``0 <= s < t <= T`` while sampling; every method accepts the per-variable keyword
arguments of ``Condition.process_args`` and ignores those it does not use.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, cast, runtime_checkable

import torch
from torch import Tensor

__all__ = ["CAPABILITY_NAMES", "Capability", "Marginal", "Posterior", "Process", "Rule", "Score", "VarianceExploding",
           "capability_name", "capable", "offered", "undeclared"]

#: A capability is one of the protocol classes of this module.
Capability = type


class Process(Protocol):
    """What a sampler may use of every process, whatever its capabilities."""

    @property
    def num_steps(self) -> int:
        """T, the number of noise levels (shared by all processes of a model)."""
        ...

    @property
    def discrete(self) -> bool:
        """True for categorical variables (values are class indices)."""
        ...

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The capability protocols this process promises."""
        ...

    def sample_prior(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """Draw x_T, the start of sampling."""
        ...


@runtime_checkable
class Posterior(Protocol):
    """Draw ``x_s ~ q(x_s | x_t, x0_hat)`` for any ``s < t`` (ancestral steps; categorical variables always)."""

    def reverse_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *,
                     generator: torch.Generator | None = None, **kwargs: Any) -> Tensor: ...


@runtime_checkable
class Marginal(Protocol):
    """A continuous marginal ``x_t = a_t x0 + s_t eps`` (wrapped on the torus) with its conversions (DDIM, ODEs)."""

    def scales(self, t: int) -> tuple[float, float]:
        """(a_t, s_t) as Python floats, for step-size and grid decisions."""
        ...

    def marginal(self, t: int | Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, s_t) broadcastable against ``like``."""
        ...

    def to_eps(self, prediction: Tensor, x_t: Tensor, t: int | Tensor, **kwargs: Any) -> Tensor: ...

    def to_x0(self, prediction: Tensor, x_t: Tensor, t: int | Tensor, **kwargs: Any) -> Tensor: ...

    def ddim_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *, eta: float = 0.0,
                  generator: torch.Generator | None = None, **kwargs: Any) -> Tensor: ...

    def finalize(self, x: Tensor) -> Tensor:
        """Map a raw update back onto the variable's domain (identity in R^d, mod 1 on the torus)."""
        ...


@runtime_checkable
class Score(Protocol):
    """``grad log p_t`` from the prediction, and Langevin moves on ``p_t`` (annealed Langevin, PC correctors)."""

    def scales(self, t: int) -> tuple[float, float]:
        """(a_t, s_t) as Python floats: Langevin step sizes scale with s_t^2, PC's snr rule uses a_t / a_{t-1}."""
        ...

    def score(self, prediction: Tensor, x_t: Tensor, t: int | Tensor, **kwargs: Any) -> Tensor: ...

    def langevin_step(self, x: Tensor, t: int, prediction: Tensor, step_size: float | Tensor, *,
                      generator: torch.Generator | None = None, noise: Tensor | None = None, **kwargs: Any) -> Tensor:
        """x + h score + sqrt(2h) z on the variable's domain (``noise`` supplies z if given)."""
        ...

    def clean_estimate(self, prediction: Tensor, x_t: Tensor, t: int, **kwargs: Any) -> Tensor:
        """Tweedie's E[x0 | x_t] mapped onto the variable's domain (a final denoising step)."""
        ...


@runtime_checkable
class VarianceExploding(Score, Protocol):
    """A score process with ``a_t = 1`` at every level, so one ``x`` is carried across levels without rescaling."""


@runtime_checkable
class Rule(Posterior, Protocol):
    """Updated by a rule from each prediction: ``reverse_step`` between levels, ``corrector_step`` at extra model
    calls within a level (CDVAE's argmax atom types)."""

    def corrector_step(self, x: Tensor, t: int, prediction: Tensor, *,
                       generator: torch.Generator | None = None, **kwargs: Any) -> Tensor: ...


#: The name each capability has in messages, docs and saved configs.
CAPABILITY_NAMES: dict[Capability, str] = {
    Posterior: "posterior",
    Marginal: "marginal",
    Score: "score",
    VarianceExploding: "variance_exploding",
    Rule: "rule",
}


def capability_name(capability: Capability) -> str:
    """``"marginal"`` for :class:`Marginal`; the class name for a capability defined elsewhere."""
    return CAPABILITY_NAMES.get(capability, capability.__name__)


C = TypeVar("C")


def offered(process: Process) -> set[Capability]:
    """The capabilities ``process`` declares and those they extend (a :class:`Rule` offers :class:`Posterior`)."""
    return {base for capability in process.capabilities for base in capability.__mro__ if base in CAPABILITY_NAMES} | set(
        process.capabilities)


def capable(process: Process, capability: type[C]) -> C:
    """``process`` typed as ``capability``, which it must offer (``Sampler.check`` has made sure of that)."""
    if capability not in offered(process):
        raise TypeError(f"{type(process).__name__} does not declare the capability {capability_name(capability)!r}")
    return cast(C, process)  # declared: the promise a type checker cannot see by itself


def undeclared(process_type: type) -> dict[str, list[str]]:
    """Per declared capability, the protocol methods ``process_type`` lacks (empty when it keeps its promises)."""
    gaps: dict[str, list[str]] = {}
    for capability in getattr(process_type, "capabilities", frozenset()):
        lacking = [name for name in sorted(_protocol_methods(capability)) if not callable(getattr(process_type, name, None))]
        if lacking:
            gaps[capability_name(capability)] = lacking
    return gaps


def _protocol_methods(capability: Capability) -> set[str]:
    """Public methods a protocol defines or inherits from other protocols."""
    names: set[str] = set()
    for cls in capability.__mro__:
        if cls is object or cls is Protocol or not getattr(cls, "_is_protocol", False):
            continue
        names |= {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}
    return names
