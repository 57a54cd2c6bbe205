"""What a sampler carries between steps: the diffusion state and the fixed condition.

A *state* is a plain ``dict[str, Tensor]``, one entry per diffused variable (``frac_coords``, ``lattice_k``,
``atom_types``, ...). Rows of per-atom variables are concatenated over the crystals of a batch, as in
torch_geometric; the model knows which row belongs to which crystal (it is part of the condition).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class Constraint:
    """Entries of a variable that sampling must keep fixed: ``x <- where(free, x, value)``.

    Used for padding, SymmCD's space-group mask on the lattice vector k (with its hexagonal offset), or
    inpainting. ``free`` and ``value`` broadcast against the variable.
    """

    free: Tensor
    value: Tensor

    def apply(self, x: Tensor) -> Tensor:
        return torch.where(self.free, x, self.value.to(x.dtype))


@dataclass
class Condition:
    """Everything that stays fixed during sampling.

    Attributes:
        num_crystals: crystals in the batch.
        shapes: shape of each diffused variable (the sampler draws the prior with it).
        constraints: per-variable :class:`Constraint`, applied by the sampler after every update.
        process_args: per-variable keyword arguments for that variable's noise-process calls (e.g. a per-row
            marginal distribution for a categorical process).
        data: model-specific conditioning (latent z, space group, composition, crystal index of each row, ...).
    """

    num_crystals: int
    shapes: dict[str, tuple[int, ...]]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    constraints: dict[str, Constraint] = field(default_factory=dict)
    process_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def args(self, variable: str) -> dict[str, Any]:
        return self.process_args.get(variable, {})

    def constrain(self, variable: str, x: Tensor) -> Tensor:
        c = self.constraints.get(variable)
        return x if c is None else c.apply(x)


@dataclass
class SampleRequest:
    """What the user asked ``sample`` for; models refuse conditions they do not support.

    Attributes:
        num_samples: crystals to generate in this batch.
        spacegroup: international number(s) 1..230 to condition on, or None to sample from the model's prior.
        composition: reduced or full formula(s) (e.g. ``"SrTiO3"``) to condition on, or None.
        options: model-specific extras, the keys in the model's ``request_options`` (e.g.
            ``spacegroup_prior="top10"`` for SymmCD).
    """

    num_samples: int
    spacegroup: int | list[int] | None = None
    composition: str | list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def requested_conditions(self) -> set[str]:
        asked = set()
        if self.spacegroup is not None:
            asked.add("spacegroup")
        if self.composition is not None:
            asked.add("composition")
        return asked
