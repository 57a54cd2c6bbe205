"""Exponential moving average of model weights (e.g. GemsDiff's decay 0.995)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class ExponentialMovingAverage:
    """Shadow copy ``ema <- decay * ema + (1 - decay) * w`` of the floating-point parameters and buffers.

    Buffers are averaged too when they are floating point (running statistics); integer buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, Tensor] = {k: v.detach().clone() for k, v in self._tracked(model)}

    @staticmethod
    def _tracked(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
        yield from model.named_parameters()
        yield from model.named_buffers()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, value in self._tracked(model):
            ema = self.shadow[name]
            if ema.is_floating_point():
                ema.lerp_(value.detach(), 1.0 - self.decay)
            else:
                ema.copy_(value)

    @torch.no_grad()
    def copy_to(self, model: nn.Module, names: set[str] | None = None) -> None:
        """The averages into the model's tensors (only those in ``names`` when given)."""
        for name, value in self._tracked(model):
            if names is None or name in names:
                value.copy_(self.shadow[name])

    @contextmanager
    def averaged(self, model: nn.Module):
        """Use the averaged weights inside the block, then put the trained ones back."""
        backup = {k: v.detach().clone() for k, v in self._tracked(model)}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in self._tracked(model):
                    value.copy_(backup[name])

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:5]}")
        for name in self.shadow:
            self.shadow[name].copy_(state[name])
