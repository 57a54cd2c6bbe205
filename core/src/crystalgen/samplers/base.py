"""The sampler contract: a loop over a time grid that turns predictions into a sample.

A sampler owns its time grid and update rule and nothing about the network (the diffusers scheduler/model
split). It talks to a model only through :class:`SamplingModel` and to each variable only through that
variable's noise process, seen as a :class:`~crystalgen.capabilities.Process` and narrowed to the capability
protocols it declared (:meth:`Sampler.continuous`, :func:`~crystalgen.capabilities.capable`), so a type checker
sees every call. It states what it needs from the *continuous* processes in ``requires``; categorical
processes always take their posterior step (``reverse_step``) and rule processes their rule (``reverse_step``
between levels, ``corrector_step`` at extra model calls within a level), so every sampler handles them.

:meth:`Sampler.run` checks compatibility and draws the prior before any model call, then hands over to the
subclass's :meth:`Sampler.loop` under ``torch.no_grad``. Every update is followed by the condition's constraints, and
every process call receives :meth:`Sampler.step_args`: ``condition.args(variable)`` plus the current values of the
other variables the process reads (``NoiseProcess.reads``; Cartesian steps under the current lattice).

A model that takes gradients inside ``denoise`` (scores as autograd gradients of an energy or of distance scores)
sets ``grad_in_denoise = True``: :func:`denoise` then runs its ``denoise`` with gradients enabled on detached copies
of the state and detaches the predictions, so no autograd graph outlives the call or links one step to the next.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import torch
from torch import Tensor

from crystalgen.capabilities import Capability, Posterior, Process, Rule, capability_name, capable, offered
from crystalgen.state import Condition


class IncompatibleSamplerError(ValueError):
    """The sampler needs a capability that one of the model's processes lacks."""


class SamplingModel(Protocol):
    """The part of a model a sampler may use."""

    @property
    def processes(self) -> Mapping[str, Process]:
        """One noise process per diffused variable."""
        ...

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        """Predictions for every variable at level ``t`` (LongTensor, one entry per crystal)."""
        ...


def denoise(model: SamplingModel, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
    """``model.denoise``, with gradients enabled inside it (and only there) when the model sets
    ``grad_in_denoise``: its inputs are detached copies and its predictions are detached, so each call's graph is
    freed when it returns, whatever grad mode the caller runs in."""
    if not getattr(model, "grad_in_denoise", False):
        return model.denoise(state, t, condition)
    with torch.enable_grad():
        prediction = model.denoise({var: x.detach() for var, x in state.items()}, t, condition)
    return {var: x.detach() for var, x in prediction.items()}


def current_values(model: SamplingModel, names: frozenset[str], state: dict[str, Tensor],
                   condition: Condition) -> dict[str, Tensor]:
    """The current values of state variables ``names`` as the processes reading them take them: the model's
    ``current_values`` when it has one (a model that keeps a variable in another form, e.g. lattice features, gives
    the (B, 3, 3) lattice), else the state's own tensors."""
    if not names:
        return {}
    convert = getattr(model, "current_values", None)
    return convert(names, state, condition) if convert is not None else {name: state[name] for name in names}


#: called as progress(done, total) after each model evaluation
ProgressCallback = Callable[[int, int], None]
Role = Literal["continuous", "categorical", "rule"]
C = TypeVar("C")


def role(process: Process) -> Role:
    """How samplers treat a process: rule processes follow their rule, categorical ones their posterior,
    continuous ones the sampler's own update."""
    if Rule in offered(process):
        return "rule"
    return "categorical" if process.discrete else "continuous"


def time_grid(num_steps: int, steps: int | None = None) -> list[int]:
    """Descending levels T = t_0 > t_1 > ... > t_steps = 0, evenly spaced (rounded half up), all T by default."""
    steps = num_steps if steps is None else int(steps)
    if not 1 <= steps <= num_steps:
        raise ValueError(f"steps must be between 1 and the model's T = {num_steps}, got {steps}")
    return [(2 * num_steps * (steps - i) + steps) // (2 * steps) for i in range(steps + 1)]


def installed_samplers() -> dict[str, type[Sampler]]:
    """Samplers registered by the installed plugins (empty if the plugin host cannot be built)."""
    from crystalgen.plugins import default_host

    try:
        return dict(default_host().registry("sampler").items())
    except Exception:  # listing alternatives must never hide the real error
        return {}


class Sampler(ABC):
    """Base class of all samplers.

    Subclasses set ``name``, ``requires`` (capability protocols every continuous process must offer) and implement
    :meth:`loop`. Options are keyword arguments of ``__init__``, stored as attributes of the same name, and are
    saved with the samples (:meth:`config`).
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[Capability]] = frozenset()

    def __init__(self, steps: int | None = None) -> None:
        self.steps = steps

    # -- compatibility --------------------------------------------------------------------------------
    @classmethod
    def needs(cls, process: Process) -> set[Capability]:
        """Capabilities this sampler needs from one process."""
        kind = role(process)
        if kind == "rule":
            return set()
        return {Posterior} if kind == "categorical" else set(cls.requires)

    @classmethod
    def missing(cls, processes: Mapping[str, Process]) -> dict[str, set[Capability]]:
        """Per variable, the capabilities this sampler needs and the process lacks."""
        gaps = {var: cls.needs(proc) - offered(proc) for var, proc in processes.items()}
        return {var: lacking for var, lacking in gaps.items() if lacking}

    @classmethod
    def check(cls, processes: Mapping[str, Process], available: Mapping[str, type[Sampler]] | None = None) -> None:
        """Raise before any sampling if this sampler cannot drive these processes, naming the ones that can
        (among ``available``, by default the installed samplers)."""
        gaps = cls.missing(processes)
        if not gaps:
            return
        detail = "; ".join(f"{var} ({type(processes[var]).__name__}) lacks {', '.join(sorted(map(capability_name, c)))}"
                           for var, c in gaps.items())
        msg = f"Sampler {cls.name!r} cannot sample this model: {detail}."
        available = installed_samplers() if available is None else available
        ok = sorted(n for n, s in available.items() if isinstance(s, type) and issubclass(s, Sampler) and not s.missing(processes))
        msg += f" Compatible samplers: {', '.join(ok) if ok else 'none installed'}."
        raise IncompatibleSamplerError(msg)

    @staticmethod
    def num_training_steps(processes: Mapping[str, Process]) -> int:
        """The shared T of a model's processes (they must agree)."""
        steps = {p.num_steps for p in processes.values()}
        if len(steps) != 1:
            raise ValueError(f"processes disagree on the number of steps: {sorted(steps)}")
        return steps.pop()

    def grid(self, model: SamplingModel) -> list[int]:
        return time_grid(self.num_training_steps(model.processes), self.steps)

    # -- sampling -------------------------------------------------------------------------------------
    def run(self, model: SamplingModel, condition: Condition, *, generator: torch.Generator | None = None,
            progress: ProgressCallback | None = None) -> dict[str, Tensor]:
        """Sample a final state (t = 0) for the crystals described by ``condition``."""
        self.check(model.processes)
        self.grid(model)  # validates ``steps`` before the first model call
        state = self.prior(model, condition, generator)
        with torch.no_grad():
            return self.loop(model, state, condition, generator=generator, progress=progress)

    @abstractmethod
    def loop(self, model: SamplingModel, state: dict[str, Tensor], condition: Condition, *,
             generator: torch.Generator | None, progress: ProgressCallback | None) -> dict[str, Tensor]:
        """Turn the prior state x_T into x_0."""

    def prior(self, model: SamplingModel, condition: Condition, generator: torch.Generator | None) -> dict[str, Tensor]:
        """x_T for every variable, with the condition's constraints applied (drawn from the condition alone: no
        process reads another variable here)."""
        state: dict[str, Tensor] = {}
        for var, proc in model.processes.items():
            x = proc.sample_prior(condition.shapes[var], device=condition.device, generator=generator, **condition.args(var))
            state[var] = condition.constrain(var, x)
        return state

    @staticmethod
    def continuous(model: SamplingModel, capability: type[C]) -> dict[str, C]:
        """The continuous processes, typed as ``capability`` (one of ``requires``), for this sampler's own update."""
        return {var: capable(proc, capability) for var, proc in model.processes.items() if role(proc) == "continuous"}

    @staticmethod
    def predict(model: SamplingModel, state: dict[str, Tensor], t: int, condition: Condition) -> dict[str, Tensor]:
        """The model's predictions for every variable at level ``t`` (:func:`denoise`: with gradients inside
        ``denoise`` for a model that asks for them)."""
        t_batch = torch.full((condition.num_crystals,), t, dtype=torch.long, device=condition.device)
        return denoise(model, state, t_batch, condition)

    @staticmethod
    def step_args(model: SamplingModel, var: str, state: dict[str, Tensor], condition: Condition) -> dict[str, Any]:
        """Keyword arguments of every call to ``var``'s process while the sampler is at ``state``: the condition's
        fixed ones, plus the current values of the variables the process reads (``NoiseProcess.reads``)."""
        reads: frozenset[str] = getattr(model.processes[var], "reads", frozenset())
        return {**condition.args(var), **current_values(model, reads, state, condition)}

    @staticmethod
    def reverse_all(model: SamplingModel, state: dict[str, Tensor], t: int, s: int, prediction: dict[str, Tensor],
                    condition: Condition, generator: torch.Generator | None, roles: tuple[Role, ...]) -> dict[str, Tensor]:
        """``reverse_step`` t -> s for the variables whose role is in ``roles`` (others unchanged), constrained."""
        out = dict(state)
        for var, proc in model.processes.items():
            if role(proc) in roles:
                x = capable(proc, Posterior).reverse_step(state[var], t, s, prediction[var], generator=generator,
                                                          **Sampler.step_args(model, var, state, condition))
                out[var] = condition.constrain(var, x)
        return out

    @staticmethod
    def correct_rules(model: SamplingModel, state: dict[str, Tensor], t: int, prediction: dict[str, Tensor],
                      condition: Condition, generator: torch.Generator | None) -> dict[str, Tensor]:
        """``corrector_step`` of the rule processes after an extra model call within level t, constrained."""
        out = dict(state)
        for var, proc in model.processes.items():
            if role(proc) == "rule":
                x = capable(proc, Rule).corrector_step(state[var], t, prediction[var], generator=generator,
                                                       **Sampler.step_args(model, var, state, condition))
                out[var] = condition.constrain(var, x)
        return out

    def config(self) -> dict[str, Any]:
        """Options to save beside the samples so the run can be repeated."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}
