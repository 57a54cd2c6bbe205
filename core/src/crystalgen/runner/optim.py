"""Optimiser, learning-rate schedule and gradient clipping from the ``trainer`` config section."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau


def build_optimizer(params: Iterable[nn.Parameter], cfg: DictConfig) -> Optimizer:
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    return kind(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: Optimizer, cfg: DictConfig, total_steps: int) -> LRScheduler | ReduceLROnPlateau | None:
    """``cosine`` anneals per optimiser step over ``total_steps``; ``plateau`` steps on the monitored loss."""
    sched = cfg.scheduler
    if sched.name == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(total_steps, 1), eta_min=sched.min_lr)
    if sched.name == "plateau":
        return ReduceLROnPlateau(optimizer, mode="min", factor=sched.factor, patience=sched.patience, min_lr=sched.min_lr)
    return None


def clip_gradients(params: Iterable[nn.Parameter], cfg: DictConfig) -> torch.Tensor | None:
    """Clip in place; returns the total gradient norm before clipping (``norm`` mode) for logging."""
    if cfg.grad_clip is None:
        return None
    params = [p for p in params if p.grad is not None]
    if cfg.grad_clip_mode == "value":
        torch.nn.utils.clip_grad_value_(params, cfg.grad_clip)
        return None
    return torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
