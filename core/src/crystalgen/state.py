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
    """What the user asked ``sample`` for: one batch of crystals and, per crystal, the conditions it fixes.

    Conditions arrive per crystal (a list of ``num_samples`` values), whatever the user wrote: one value given for
    all crystals is repeated, so a model reads ``request.composition[i]`` for crystal ``i`` and never has to
    broadcast. Values are parsed and checked on construction (crystalgen.conditions raises ConditionError for an
    unknown element or a space group outside 1..230); a model refuses kinds it does not declare in
    ``GenerativeModel.conditions`` (``check_request``).

    Attributes:
        num_samples: crystals to generate in this batch.
        composition: per crystal, the pymatgen Composition of its whole cell (whole numbers of atoms), or None.
        spacegroup: per crystal, an international number 1..230, or None (the model's prior).
        num_atoms: per crystal, the number of atoms in its cell, or None.
        options: model-specific extras, the keys in the model's ``request_options`` (e.g.
            ``spacegroup_prior="top10"`` for SymmCD).
    """

    num_samples: int
    spacegroup: Any = None
    composition: Any = None
    num_atoms: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from crystalgen.conditions import ConditionError, per_crystal

        self.spacegroup = per_crystal("spacegroup", self.spacegroup, self.num_samples)
        self.composition = per_crystal("composition", self.composition, self.num_samples)
        self.num_atoms = per_crystal("num_atoms", self.num_atoms, self.num_samples)
        if self.composition is not None and self.num_atoms is not None:
            for i, (c, n) in enumerate(zip(self.composition, self.num_atoms, strict=True)):
                if int(c.num_atoms) != n:
                    raise ConditionError(f"crystal {i}: composition {c.formula} has {int(c.num_atoms)} atoms, "
                                         f"but num_atoms asks for {n}")

    def requested_conditions(self) -> set[str]:
        """The condition kinds this request fixes."""
        return {kind for kind in ("composition", "spacegroup", "num_atoms") if getattr(self, kind) is not None}

    def atom_counts(self) -> list[int] | None:
        """Atoms of each crystal's cell when the request fixes them (by ``num_atoms`` or ``composition``)."""
        if self.num_atoms is not None:
            return list(self.num_atoms)
        if self.composition is not None:
            return [int(c.num_atoms) for c in self.composition]
        return None
