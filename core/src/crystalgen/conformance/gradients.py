"""The gradient-reach check: one training loss reaches every parameter that training updates.

Why: DistributedDataParallel (``torchrun ... crystalgen train``) refuses, on its first step, a model whose loss leaves
a trainable parameter out of the graph (SyMat's score network once carried SphereNet output blocks that nothing read).
``trainer.ddp_find_unused_parameters`` lets such a model train, at the cost of a walk over the graph every step; a
module that some configuration never uses should rather not be built in that configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pymatgen.core import Structure

from crystalgen.conformance.crystals import check_crystals
from crystalgen.conformance.expect import label, running
from crystalgen.conformance.transforms import check_transform
from crystalgen.data.crystal import collate
from crystalgen.models.base import GenerativeModel
from crystalgen.models.stages import Stage
from crystalgen.parameter_names import selected

#: parameter names listed in full in a failure (longer lists: the first ones and the count)
LISTED = 20


def check_gradients_reach_parameters(model: str | type[GenerativeModel], preset: str = "small", *,
                                     overrides: Sequence[str] = (), structures: Sequence[Structure] | None = None,
                                     device: torch.device | str = "cpu") -> list[str]:
    """One training loss on a small batch (``structures`` through the preset's transform, default
    :func:`check_crystals`) gives a gradient to every parameter that training updates, on the configuration of
    ``preset`` with ``overrides`` (as on the command line).

    A model trained in stages (``training_stages``) is checked stage by stage: the stage's ``loss`` must reach every
    parameter the stage trains (its ``trainable`` prefixes), after ``on_train_stage``. Parameters the model itself
    freezes (``requires_grad`` off) are left out. Returns the names of the parameters checked; raises AssertionError
    naming those the loss does not reach.
    """
    from crystalgen.plugins import get
    from crystalgen.runner.config import compose

    cls: type[GenerativeModel] = get("model", model) if isinstance(model, str) else model
    part = label("model", cls, getattr(cls, "name", None))
    cfg = running(part, f"preset {preset!r}", compose, cls.presets(), preset, model_name=cls.name, overrides=overrides)
    data = check_transform(running(part, "transform", cls.transform, cfg.model), structures or check_crystals())
    torch.manual_seed(0)
    built: GenerativeModel = running(part, "from_config", cls.from_config, cfg.model)
    running(part, "fit_statistics", built.fit_statistics, data)
    built.to(device).train()
    batch = collate(data).to(device)
    own = {name for name, p in built.named_parameters() if p.requires_grad}
    stages = list(built.training_stages()) or [Stage("whole")]
    checked: list[str] = []
    for stage in stages:
        trained = {name for name in own if selected(name, stage.trainable)}
        for name, param in built.named_parameters():
            param.requires_grad_(name in trained)
        if stage.name != "whole" and hasattr(built, "on_train_stage"):
            built.on_train_stage(stage)
        built.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        losses = running(part, "training_loss", built.training_loss, batch)
        loss = losses.get(stage.loss) if isinstance(losses, dict) else None
        where = f"stage {stage.name!r}: " if stage.name != "whole" else ""
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            raise AssertionError(f"{part}: {where}gradients: expected training_loss()[{stage.loss!r}] to be a tensor "
                                 f"that depends on the parameters")
        running(part, "backward", loss.backward)
        missed = sorted(name for name, p in built.named_parameters() if name in trained and p.grad is None)
        if missed:
            shown = ", ".join(missed[:LISTED]) + (f" and {len(missed) - LISTED} more" if len(missed) > LISTED else "")
            raise AssertionError(
                f"{part}: {where}gradients: expected the loss {stage.loss!r} to reach every trainable parameter; "
                f"{len(missed)} of {len(trained)} receive no gradient: {shown}. DistributedDataParallel refuses such "
                f"a model (torchrun): build only the modules this configuration uses")
        checked += sorted(trained)
    return checked
