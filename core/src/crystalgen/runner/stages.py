"""The runner's plan of a model's training stages (crystalgen.models.stages): epochs and time share of each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from crystalgen.models.stages import Stage
from crystalgen.parameter_names import selected, unmatched


@dataclass(frozen=True)
class PlannedStage:
    """A stage with its number of epochs and the fraction of the time budget that may be spent when it ends."""

    stage: Stage
    epochs: int
    until: float  # cumulative share of trainer.max_minutes (1.0 for the last stage)


def plan_stages(stages: Sequence[Stage], model: nn.Module, max_epochs: int) -> list[PlannedStage]:
    """Each stage's epochs and time share; ValueError for duplicate names or a ``trainable`` prefix that selects no
    parameter (named with the model's modules). An empty plan: the model trains as one whole."""
    stages = list(stages)
    names = [s.name for s in stages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{type(model).__name__}.training_stages: stage names must be unique, repeated: {duplicates}")
    parameters = [name for name, _ in model.named_parameters()]
    for stage in stages:
        typos = unmatched(parameters, stage.trainable)
        if typos:
            modules = sorted({n.split(".")[0] for n in parameters})
            raise ValueError(f"{type(model).__name__} stage {stage.name!r}: trainable {typos} select no parameter; "
                             f"the model's modules: {', '.join(modules)}")
    total = sum(s.share for s in stages)
    plan, spent = [], 0.0
    for k, stage in enumerate(stages):
        spent += stage.share
        epochs = stage.epochs if stage.epochs is not None else max(1, round(max_epochs * stage.share / total))
        plan.append(PlannedStage(stage, epochs, 1.0 if k == len(stages) - 1 else spent / total))
    return plan


def trainable(model: nn.Module, stage: Stage, allowed: set[str]) -> list[nn.Parameter]:
    """Set ``requires_grad`` of every parameter: on for those under the stage's ``trainable`` prefixes among
    ``allowed`` (those the model itself leaves trainable), off for the others; returns the trainable ones."""
    out = []
    for name, param in model.named_parameters():
        param.requires_grad_(name in allowed and selected(name, stage.trainable))
        if param.requires_grad:
            out.append(param)
    if not out:
        raise ValueError(f"stage {stage.name!r} trains no parameter")
    return out
