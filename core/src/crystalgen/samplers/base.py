"""The sampler contract: a loop over a time grid that turns predictions into a sample.

A sampler owns its time grid and update rule and nothing about the network (the diffusers scheduler/model
split). It talks to a model only through :class:`SamplingModel` and to each variable only through that
variable's noise process. It states what it needs from the *continuous* processes in ``requires``; categorical
processes always take their posterior step, and rule processes their rule, so every sampler handles them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from crystalgen.processes.base import NoiseProcess
from crystalgen.state import Condition


class IncompatibleSamplerError(ValueError):
    """The sampler needs a capability that one of the model's processes lacks."""


class SamplingModel(Protocol):
    """The part of a model a sampler may use."""

    processes: Mapping[str, NoiseProcess]

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        """Predictions for every variable at level ``t`` (LongTensor, one entry per crystal)."""
        ...


ProgressCallback = Callable[[int, int], None]


class Sampler(ABC):
    """Base class of all samplers.

    Subclasses set ``name``, ``requires`` (capabilities every continuous process must offer) and implement
    :meth:`run`. Options are keyword arguments of ``__init__`` and are saved with the samples.
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, steps: int | None = None) -> None:
        self.steps = steps

    # -- compatibility --------------------------------------------------------------------------------
    @classmethod
    def missing(cls, processes: Mapping[str, NoiseProcess]) -> dict[str, set[str]]:
        """Per variable, the capabilities this sampler needs and the process lacks."""
        gaps: dict[str, set[str]] = {}
        for var, proc in processes.items():
            if proc.discrete or "rule" in proc.capabilities:
                need = {"posterior"} if proc.discrete else set()
            else:
                need = set(cls.requires)
            lacking = need - set(proc.capabilities)
            if lacking:
                gaps[var] = lacking
        return gaps

    @classmethod
    def check(cls, processes: Mapping[str, NoiseProcess], available: Mapping[str, type[Sampler]] | None = None) -> None:
        """Raise before any sampling if this sampler cannot drive these processes, naming the ones that can."""
        gaps = cls.missing(processes)
        if not gaps:
            return
        detail = "; ".join(f"{var} ({type(processes[var]).__name__}) lacks {', '.join(sorted(c))}" for var, c in gaps.items())
        msg = f"Sampler {cls.name!r} cannot sample this model: {detail}."
        if available:
            ok = sorted(n for n, s in available.items() if not s.missing(processes))
            msg += f" Compatible samplers: {', '.join(ok) if ok else 'none installed'}."
        raise IncompatibleSamplerError(msg)

    @staticmethod
    def num_training_steps(processes: Mapping[str, NoiseProcess]) -> int:
        """The shared T of a model's processes (they must agree)."""
        steps = {p.num_steps for p in processes.values()}
        if len(steps) != 1:
            raise ValueError(f"processes disagree on the number of steps: {sorted(steps)}")
        return steps.pop()

    # -- sampling -------------------------------------------------------------------------------------
    def prior(self, model: SamplingModel, condition: Condition, generator: torch.Generator | None) -> dict[str, Tensor]:
        """x_T for every variable, with the condition's constraints applied."""
        state = {}
        for var, proc in model.processes.items():
            x = proc.sample_prior(condition.shapes[var], device=condition.device, generator=generator, **condition.args(var))
            state[var] = condition.constrain(var, x)
        return state

    @staticmethod
    def predict(model: SamplingModel, state: dict[str, Tensor], t: int, condition: Condition) -> dict[str, Tensor]:
        t_batch = torch.full((condition.num_crystals,), t, dtype=torch.long, device=condition.device)
        return model.denoise(state, t_batch, condition)

    @abstractmethod
    def run(self, model: SamplingModel, condition: Condition, *, generator: torch.Generator | None = None,
            progress: ProgressCallback | None = None) -> dict[str, Tensor]:
        """Sample a final state (t = 0) for the crystals described by ``condition``."""

    def config(self) -> dict[str, Any]:
        """Options to save beside the samples so the run can be repeated."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}
