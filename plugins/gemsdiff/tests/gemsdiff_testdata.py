"""The small preset as GemsDiff's tests load it, and the brief training they share."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from crystalgen import collate
from crystalgen.runner.config import compose
from crystalgen_gemsdiff.model import GemsDiff


def small_config() -> DictConfig:
    """A fresh copy of the `small` preset over the runner's defaults (its interpolations read `data`)."""
    return compose(GemsDiff.presets(), "small", model_name="gemsdiff")


def train_briefly(model: torch.nn.Module, items: list, steps: int) -> tuple[float, float]:
    """``steps`` full-batch Adam steps (lr 2e-3, gradient norm clipped at 1) on ``items``, one thread; returns the
    mean training loss over 8 fixed seeds (the level t and the noise are random) before and after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    batch = collate(items)

    def fixed_loss() -> float:
        with torch.no_grad():
            values = []
            for seed in range(8):
                torch.manual_seed(seed)
                values.append(float(model.training_loss(batch)["loss"]))
        return sum(values) / len(values)

    before = fixed_loss()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for step in range(steps):
        torch.manual_seed(100 + step)
        loss = model.training_loss(batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
    model.eval()
    after = fixed_loss()
    torch.set_num_threads(old)
    return before, after
