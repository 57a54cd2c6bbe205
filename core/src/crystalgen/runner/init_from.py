"""Fine-tuning: a new run's model starts from the weights of a checkpoint (``trainer.init_from``).

Only weights travel. The run keeps its own fresh optimiser, learning-rate schedule, step and epoch counters, best
loss, early-stopping count and random stream, and fits its data statistics on its own training split after the
weights are loaded (``GenerativeModel.fit_statistics`` overwrites the statistics buffers the checkpoint carried):
pretrain on one dataset, fine-tune on another. ``trainer.init_from_keys`` takes a subset (parameter-name prefixes,
crystalgen.parameter_names); ``trainer.init_from_strict`` decides whether a tensor that does not fit stops the run or
is left at its fresh initialisation, each one named either way. The checkpoint is read with the runner's verified
loader (crystalgen.runner.checkpoint: digest checked, weights only).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from crystalgen.atomic import replace_text
from crystalgen.parameter_names import selected, unmatched
from crystalgen.runner.checkpoint import load_checkpoint

log = logging.getLogger("crystalgen.train")


class InitFromError(ValueError):
    """``trainer.init_from`` cannot initialise the model: the message names every tensor that does not fit."""


@dataclass
class InitReport:
    """What fine-tuning took from its checkpoint (written to the run directory as init_from.json)."""

    checkpoint: str
    checkpoint_model: str
    averaged: bool  # the checkpoint's EMA weights were used
    keys: list[str]  # the prefixes asked for ([]: every tensor)
    strict: bool
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model (selected), not in the checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint (selected), not in the model
    mismatched: list[str] = field(default_factory=list)  # in both, with other shapes: "name (checkpoint (a,), model (b,))"

    def problems(self) -> str:
        """Every tensor that does not fit, by reason, on one line ('' when all fit)."""
        parts = [f"{what}: {', '.join(names)}" for what, names in (
            ("missing in the checkpoint", self.missing), ("not in the model", self.unexpected),
            ("shape differs", self.mismatched)) if names]
        return "; ".join(parts)


def checkpoint_weights(payload: dict[str, Any], averaged: bool) -> tuple[dict[str, Tensor], bool]:
    """The checkpoint's state dict, its parameters and buffers replaced by their moving averages when ``averaged``
    and it has them; and whether it did."""
    weights = dict(payload["model"])
    ema = payload.get("ema") if averaged else None
    if ema:
        weights.update({k: v for k, v in ema.items() if k in weights})
    return weights, bool(ema)


def load_initial_weights(model: nn.Module, path: str | Path, *, keys: list[str] | tuple[str, ...] = (),
                         strict: bool = True, averaged: bool = True) -> InitReport:
    """Load the weights of checkpoint ``path`` (verified) into ``model``: the tensors under ``keys`` (all when
    empty) whose names and shapes fit. ``strict``: any selected tensor of either side without a counterpart of the
    same shape raises InitFromError naming each, and nothing is loaded; otherwise the fitting ones are loaded and
    the others named in a warning. A prefix that selects nothing on either side is always refused (a typo)."""
    payload = load_checkpoint(path)
    source, used_average = checkpoint_weights(payload, averaged)
    target = model.state_dict()
    keys = list(keys)
    where = f"trainer.init_from {path}"
    typos = unmatched(list(target) + list(source), keys)
    if typos:
        modules = sorted({name.split(".")[0] for name in target})
        raise InitFromError(f"{where}: trainer.init_from_keys {typos} select no tensor of the model or the checkpoint; "
                            f"the model's modules: {', '.join(modules)}")
    wanted = [k for k in target if selected(k, keys)]
    offered = [k for k in source if selected(k, keys)]
    report = InitReport(str(Path(path).resolve()), str(payload.get("model_name") or ""), used_average, keys, strict)
    report.missing = [k for k in wanted if k not in source]
    report.unexpected = [k for k in offered if k not in target]
    for k in wanted:
        if k in source and _shape(source[k]) != _shape(target[k]):
            report.mismatched.append(f"{k} (checkpoint {_shape(source[k])}, model {_shape(target[k])})")
    report.loaded = [k for k in wanted if k in source and _shape(source[k]) == _shape(target[k])]
    problems = report.problems()
    if problems and strict:
        raise InitFromError(f"{where} does not fit model {type(model).__name__} (checkpoint of "
                            f"{report.checkpoint_model!r}): {problems}. Set trainer.init_from_strict=false to load the "
                            "tensors that fit and keep these freshly initialised, or trainer.init_from_keys to take a subset")
    model.load_state_dict({k: source[k] for k in report.loaded}, strict=False)
    if problems:
        log.warning("%s: %d tensors loaded, these left at their fresh initialisation: %s", where, len(report.loaded), problems)
    log.info("initialised %d of the model's %d tensors from %s (%s weights of %r); optimiser, schedule, counters and "
             "data statistics start afresh", len(report.loaded), len(target), path,
             "averaged" if used_average else "trained", report.checkpoint_model)
    return report


def write_report(report: InitReport, path: Path) -> None:
    replace_text(path, json.dumps(asdict(report), indent=2) + "\n")


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, Tensor) else ()
