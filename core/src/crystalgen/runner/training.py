"""The one training loop every model uses.

It talks to a model only through ``training_loss(batch) -> {"loss": scalar, ...}`` (and ``on_train_epoch``,
``memory_cost``, and for a model trained in stages ``training_stages`` / ``on_train_stage``), and owns everything
around it: data order, optimiser and schedule, clipping, EMA, autocast, compile, DDP, micro-batches for the memory
budget, validation, early stopping, time budget, training stages, checkpoints and logs. Everything that decides the
next step is saved in the checkpoint, so a resumed run continues exactly where the interrupted one stopped.

Stages (crystalgen.models.stages) run in order, each with its own optimiser and schedule over its trainable
parameters only, its own loss key, best loss and early stopping, and ``checkpoints/stage-<name>.ckpt`` when it
ends. A model without stages is one implicit stage over every parameter, trained exactly as before stages existed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from torch.utils.data import DataLoader, DistributedSampler
from torch_geometric.data import Data
from tqdm.auto import tqdm

from crystalgen.data.crystal import collate
from crystalgen.resources import memory_budget
from crystalgen.runner.budget import crystal_costs, micro_batches
from crystalgen.runner.checkpoint import rng_state, save_checkpoint, set_rng_state
from crystalgen.runner.config import to_yaml
from crystalgen.runner.distributed import Environment, autocast
from crystalgen.runner.ema import ExponentialMovingAverage
from crystalgen.runner.metric_log import MetricLog
from crystalgen.runner.optim import build_optimizer, build_scheduler, clip_gradients
from crystalgen.runner.stages import PlannedStage, plan_stages, trainable

log = logging.getLogger("crystalgen.train")

#: Seed offset of the generator used for validation noise, so that validation losses of different epochs are
#: measured on the same noise and do not disturb the training stream.
VALIDATION_SEED_OFFSET = 7919
#: Relative decrease of the monitored loss that counts as an improvement for early stopping.
IMPROVEMENT = 1e-4


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message says at which step and what to try."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # epoch being trained (0-based)
    batch_in_epoch: int = 0  # batches of ``epoch`` already done (non-zero only for a mid-epoch stop)
    global_step: int = 0  # optimiser steps so far
    best_loss: float = math.inf  # best monitored loss (validation, else training)
    bad_validations: int = 0  # validations since the best one (early stopping)
    train_seconds: float = 0.0  # training time spent, summed over resumes (time budget)
    epoch_loss_sum: float = 0.0  # sum of per-crystal losses so far in ``epoch`` (kept for mid-epoch resume)
    epoch_crystals: int = 0
    finished: bool = False
    stop_reason: str = ""
    stage: int = 0  # index of the training stage being trained (models with stages)
    stage_start_epoch: int = 0  # the epoch at which that stage began
    stage_begun: bool = False  # its optimiser and schedule exist (False at a stage boundary: it starts afresh)


def epoch_batches(num_items: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """Batches (item indices) of process ``rank`` in ``epoch``: a permutation seeded by (seed, epoch), split across
    ranks by DistributedSampler, so that the ranks' batch i together equal batch i of one process with
    ``world_size * batch_size`` items (DistributedSampler pads the permutation to a multiple of world_size)."""
    sampler: DistributedSampler[int] = DistributedSampler(cast(Any, range(num_items)), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=False)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class _LossModule(nn.Module):
    """``forward`` = ``training_loss`` so that DDP (which hooks ``forward``) and torch.compile can wrap it."""

    def __init__(self, model: Any) -> None:  # a GenerativeModel, or any module with training_loss (tests)
        super().__init__()
        self.model = model

    def forward(self, batch) -> dict[str, Tensor]:
        return self.model.training_loss(batch)


@dataclass(frozen=True)
class Checkpoints:
    folder: Path

    @property
    def last(self) -> Path:
        return self.folder / "last.ckpt"

    @property
    def best(self) -> Path:
        return self.folder / "best.ckpt"

    def stage(self, name: str) -> Path:
        """The checkpoint written when training stage ``name`` ends."""
        return self.folder / f"stage-{name}.ckpt"


class Trainer:
    """Trains ``model`` on preprocessed crystals (torch_geometric ``Data`` items).

    Args:
        model: a GenerativeModel (or any module with ``training_loss``), statistics already fitted.
        cfg: the full resolved run configuration (``trainer`` and ``data`` sections are used; the whole config is
            saved in checkpoints).
        env: device and DDP rank.
        checkpoints: folder for ``last.ckpt`` / ``best.ckpt`` (written by rank 0).
        metric_log: where rank 0 writes metrics (None: no log).
        model_name: registry name saved in checkpoints.
        show_progress: progress bar per epoch (rank 0 only).
        budget: working memory of one step in bytes (default :func:`crystalgen.resources.memory_budget`): a batch
            whose estimate (the model's ``memory_cost``) exceeds it runs as micro-batches (:meth:`_step`).
    """

    def __init__(self, model: nn.Module, cfg: DictConfig, env: Environment, checkpoints: Checkpoints | None,
                 metric_log: MetricLog | None = None, model_name: str = "", show_progress: bool = True,
                 budget: int | None = None) -> None:
        self.model: Any = model.to(env.device)  # a GenerativeModel, or any module with training_loss (tests)
        self.cfg = cfg
        self.tcfg = cfg.trainer
        self.env = env
        self.checkpoints = checkpoints
        self.metric_log = metric_log if env.is_main else None
        self.model_name = model_name
        self.show_progress = show_progress and env.is_main
        stages = getattr(self.model, "training_stages", None)  # plain modules (tests) have none
        self.plan = plan_stages(stages(), self.model, self.tcfg.max_epochs) if stages is not None else []
        self.total_epochs = sum(s.epochs for s in self.plan) if self.plan else self.tcfg.max_epochs
        self.loss_key = "loss"  # the key of training_loss's output minimised (the stage's)
        self.optimizer = build_optimizer(self.model.parameters(), self.tcfg)  # models with stages: one per stage
        self.scheduler: LRScheduler | ReduceLROnPlateau | None = None  # built in fit(), when the number of steps is known
        self._optimizer_state: dict[str, Any] | None = None  # with stages: loaded when the resumed stage begins
        self.ema = ExponentialMovingAverage(self.model, self.tcfg.ema_decay) if self.tcfg.ema_decay > 0 else None
        self.progress = Progress()
        self.budget = memory_budget() if budget is None else budget
        self._scheduler_state: dict[str, Any] | None = None
        self._eager_step: Any = None  # the (DDP-wrapped) loss module, alive only during fit()
        self.step_module: Any = None  # the same, compiled when trainer.compile is on (a callable, not a Module)

    def _wrap_for_training(self) -> None:
        step_module: nn.Module = _LossModule(self.model)
        if self.env.distributed:
            device_ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            step_module = DistributedDataParallel(step_module, device_ids=device_ids,
                                                  find_unused_parameters=self.tcfg.ddp_find_unused_parameters)
        self._eager_step = step_module
        self.step_module = torch.compile(step_module) if self.tcfg.compile else step_module

    def _unwrap(self) -> None:
        # DDP holds the process group and gradient hooks: release them while every rank is still in the group,
        # not later from a garbage collector after destroy_process_group (a hang seen on CI's gloo).
        self._eager_step = self.step_module = None

    def _epoch_batches(self, num_items: int, epoch: int) -> list[list[int]]:
        return epoch_batches(num_items, self.cfg.data.batch_size, epoch, self.tcfg.seed, self.env.rank, self.env.world_size)

    def _split(self, items: Sequence[Data], batch: list[int]) -> list[list[int]]:
        """``batch`` as consecutive micro-batches that each fit the memory budget by the model's estimate (one when
        the batch fits; always one for a module without ``memory_cost``)."""
        if not hasattr(self.model, "memory_cost"):
            return [batch]
        costs = crystal_costs(self.model, [items[i] for i in batch], training=True)
        groups = micro_batches(costs, self.budget, self.model.memory_overhead(training=True))
        return [[batch[k] for k in group] for group in groups]

    def _loader(self, items: Sequence[Data], batches: list[list[int]]) -> DataLoader:
        # An own generator: creating the iterator would otherwise draw its worker seed from the global RNG, and a
        # run resumed mid-epoch creates one iterator more than an uninterrupted run.
        return DataLoader(cast(Any, items), batch_sampler=batches, collate_fn=collate, num_workers=self.cfg.data.loader_workers,
                          generator=torch.Generator())

    # -- state --------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        rng = rng_state()
        if self.env.distributed:
            gathered: list[Any] = [None] * self.env.world_size
            dist.all_gather_object(gathered, rng)
            rngs = gathered
        else:
            rngs = [rng]
        return {
            "model_name": self.model_name,
            "config": to_yaml(self.cfg),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "rng": rngs,
            "progress": dataclasses.asdict(self.progress),
        }

    def load_state(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`state` (before :meth:`fit`)."""
        self.model.load_state_dict(payload["model"])
        if self.ema is not None and payload.get("ema") is not None:
            self.ema.load_state_dict(payload["ema"])
        if self.plan:
            self._optimizer_state = payload["optimizer"]
        else:
            self.optimizer.load_state_dict(payload["optimizer"])
        self._scheduler_state = payload.get("scheduler")
        self.progress = Progress(**payload["progress"])
        rngs = payload.get("rng") or []
        if len(rngs) == self.env.world_size:
            set_rng_state(rngs[self.env.rank])
        else:
            log.warning("checkpoint has random states of %d processes, this run has %d: "
                        "continuing with fresh seeds (not bit-exact)", len(rngs), self.env.world_size)

    def _save(self, which: str) -> None:
        """Write checkpoints/<which>.ckpt (rank 0; every rank joins the RNG gather)."""
        if self.checkpoints is not None:
            self._save_to(getattr(self.checkpoints, which))

    def _save_to(self, path: Path) -> None:
        payload = self.state()
        if self.env.is_main:
            save_checkpoint(payload, path)
        self.env.barrier()

    # -- the loop -----------------------------------------------------------------------------------
    def fit(self, train: Sequence[Data], val: Sequence[Data] = ()) -> Progress:
        """Train until max_epochs, the time budget, or early stopping; returns the final progress."""
        tcfg = self.tcfg
        if not train:
            raise ValueError("no training crystals: the training split is empty after preprocessing")
        steps_per_epoch = len(self._epoch_batches(len(train), 0))
        if not self.plan:
            self.scheduler = build_scheduler(self.optimizer, tcfg, total_steps=tcfg.max_epochs * steps_per_epoch)
            if self.scheduler is not None and self._scheduler_state is not None:
                self.scheduler.load_state_dict(self._scheduler_state)
        split = sum(len(self._split(train, b)) > 1 for b in self._epoch_batches(len(train), 0))
        if split and self.env.is_main:
            log.info("%d of %d batches of epoch 1 run as micro-batches (gradients accumulated) to fit the memory budget "
                     "of %.2g GB", split, steps_per_epoch, self.budget / 2**30)
        trainable_before = {name for name, param in self.model.named_parameters() if param.requires_grad}
        try:
            if not self.plan:
                self._wrap_for_training()
                return self._fit(train, val, steps_per_epoch)
            return self._fit_stages(train, val, steps_per_epoch, trainable_before)
        finally:
            self._unwrap()
            for name, param in self.model.named_parameters():
                param.requires_grad_(name in trainable_before)

    def _fit(self, train: Sequence[Data], val: Sequence[Data], steps_per_epoch: int) -> Progress:
        tcfg, p = self.tcfg, self.progress
        started = time.perf_counter() - p.train_seconds
        p.finished, p.stop_reason = False, ""  # a checkpoint written before the end says "not stopped by a rule"
        outcome = self._train_until(train, val, steps_per_epoch, started, 0, tcfg.max_epochs, self._budget())
        if outcome == "time":
            self._out_of_time(val)
        elif outcome == "done":
            p.stop_reason = f"reached max_epochs={tcfg.max_epochs}"
        p.finished = p.epoch >= tcfg.max_epochs or outcome == "early"
        return self._stop(started)

    def _fit_stages(self, train: Sequence[Data], val: Sequence[Data], steps_per_epoch: int,
                    allowed: set[str]) -> Progress:
        """The model's stages in order from ``progress.stage``; each ends after its epochs, by early stopping or when
        its share of the time budget is spent; the whole budget spent stops training (resume continues the stage)."""
        p, budget = self.progress, self._budget()
        started = time.perf_counter() - p.train_seconds
        p.finished, p.stop_reason = False, ""
        while p.stage < len(self.plan):
            planned = self.plan[p.stage]
            self._begin_stage(planned, steps_per_epoch, allowed)
            outcome = self._train_until(train, val, steps_per_epoch, started, p.stage_start_epoch,
                                        p.stage_start_epoch + planned.epochs, budget * planned.until)
            if outcome == "time" and time.perf_counter() - started >= budget:
                self._out_of_time(val)
                break
            if outcome == "time":  # the stage's share of the budget is spent: its partial epoch ends here
                p.epoch, p.batch_in_epoch, p.epoch_loss_sum, p.epoch_crystals = p.epoch + 1, 0, 0.0, 0
            self._end_stage(planned, outcome)
        else:
            p.stop_reason = f"completed the {len(self.plan)} training stages"
        p.finished = p.stage >= len(self.plan)
        return self._stop(started)

    def _budget(self) -> float:
        return self.tcfg.max_minutes * 60 if self.tcfg.max_minutes is not None else math.inf

    def _out_of_time(self, val: Sequence[Data]) -> None:
        self.progress.stop_reason = f"time budget of {self.tcfg.max_minutes} min spent"
        if val and not math.isfinite(self.progress.best_loss):
            self._first_best(val)

    def _stop(self, started: float) -> Progress:
        p = self.progress
        p.train_seconds = time.perf_counter() - started
        self._save("last")
        self.env.barrier()  # ranks leave fit() together, so none tears the process group down under another
        if self.env.is_main:
            log.info("training stopped after %d steps (%s), %.1f s", p.global_step, p.stop_reason, p.train_seconds)
        return p

    def _begin_stage(self, planned: PlannedStage, steps_per_epoch: int, allowed: set[str]) -> None:
        """Freeze what the stage does not train and build its optimiser and schedule: fresh at the stage's start,
        with the checkpoint's states when a run resumes inside it."""
        p, stage = self.progress, planned.stage
        self._unwrap()
        params = trainable(self.model, stage, allowed)
        if not p.stage_begun and self.ema is not None:
            # what this stage freezes is what validation and sampling will use: the moving average
            self.ema.copy_to(self.model, names={n for n, q in self.model.named_parameters() if not q.requires_grad})
        self.optimizer = build_optimizer(params, self.tcfg)
        self.scheduler = build_scheduler(self.optimizer, self.tcfg, total_steps=planned.epochs * steps_per_epoch)
        if p.stage_begun and self._optimizer_state is not None:
            self.optimizer.load_state_dict(self._optimizer_state)
            if self.scheduler is not None and self._scheduler_state is not None:
                self.scheduler.load_state_dict(self._scheduler_state)
        self._optimizer_state = self._scheduler_state = None
        p.stage_begun = True
        self.loss_key = stage.loss
        on_train_stage = getattr(self.model, "on_train_stage", None)
        if on_train_stage is not None:
            on_train_stage(stage)
        if self.env.is_main:
            log.info("training stage %d/%d %r: epochs %d-%d, %d parameter tensors trained, minimising %r",
                     p.stage + 1, len(self.plan), stage.name, p.stage_start_epoch + 1,
                     p.stage_start_epoch + planned.epochs, len(params), stage.loss)
        self._wrap_for_training()

    def _end_stage(self, planned: PlannedStage, outcome: str) -> None:
        """Write the stage's checkpoint and move to the next stage (fresh best loss and early-stopping count)."""
        p = self.progress
        if self.checkpoints is not None:
            self._save_to(self.checkpoints.stage(planned.stage.name))
        if self.env.is_main:
            why = {"early": "early stopping", "time": "its share of the time budget spent"}.get(outcome, "its epochs done")
            log.info("training stage %r ended (%s) at epoch %d", planned.stage.name, why, p.epoch)
        p.stage, p.stage_start_epoch, p.stage_begun = p.stage + 1, p.epoch, False
        p.best_loss, p.bad_validations = math.inf, 0
        if p.stage < len(self.plan):
            self._save("last")  # a run stopped now resumes at the start of the next stage

    def _train_until(self, train: Sequence[Data], val: Sequence[Data], steps_per_epoch: int, started: float,
                     first: int, end: int, deadline: float) -> str:
        """Epochs up to ``end`` (the current stage began at epoch ``first``); returns ``"done"``, ``"early"`` (early
        stopping) or ``"time"`` (``deadline`` seconds of training spent, mid-epoch)."""
        tcfg, p = self.tcfg, self.progress
        while p.epoch < end:
            on_train_epoch = getattr(self.model, "on_train_epoch", None)  # plain modules (tests) lack the hook
            if on_train_epoch is not None:
                on_train_epoch(p.epoch, self.total_epochs)
            out_of_time = self._train_epoch(train, steps_per_epoch, started, deadline)
            p.train_seconds = time.perf_counter() - started
            if out_of_time:
                return "time"
            done = p.epoch
            values = {"train/epoch_loss": self._reduce_mean(torch.tensor(p.epoch_loss_sum, device=self.env.device), p.epoch_crystals)}
            validating = (done + 1 - first) % tcfg.val_every == 0 or done + 1 == end
            if validating and val:
                values.update(self.validate(val))
            if self.metric_log:
                self.metric_log.log(p.global_step, done, values)
            p.epoch, p.batch_in_epoch, p.epoch_loss_sum, p.epoch_crystals = done + 1, 0, 0.0, 0
            monitored = f"val/{self.loss_key}"
            summary = ", ".join(f"{k} {v:.5g}" for k, v in values.items() if k in ("train/epoch_loss", monitored))
            stop = self._after_validation(values.get(monitored, values["train/epoch_loss"])) if validating else False
            if self.env.is_main:
                log.info("epoch %d/%d: %s (lr %.3g, %.0f s)", p.epoch, self.total_epochs, summary,
                         self.optimizer.param_groups[0]["lr"], p.train_seconds)
            if stop:
                p.stop_reason = f"early stopping: no improvement in {tcfg.early_stopping_patience} validations"
                return "early"
            if (p.epoch - first) % tcfg.checkpoint_every == 0 and p.epoch < end:
                self._save("last")
        return "done"

    def _train_epoch(self, train: Sequence[Data], steps_per_epoch: int, started: float, budget: float) -> bool:
        """One epoch from ``progress.batch_in_epoch`` on; True when the time budget ran out mid-epoch."""
        p, tcfg, device = self.progress, self.tcfg, self.env.device
        batches = self._epoch_batches(len(train), p.epoch)[p.batch_in_epoch:]
        self.model.train()
        bar = tqdm(total=steps_per_epoch, initial=p.batch_in_epoch, desc=f"epoch {p.epoch + 1}/{self.total_epochs}",
                   disable=not self.show_progress, leave=False, unit="step", dynamic_ncols=True)
        crystals = 0
        tick = time.perf_counter()
        plan = [self._split(train, batch) for batch in batches]
        loaded = iter(self._loader(train, [micro for groups in plan for micro in groups]))
        for groups in plan:
            micro = [next(loaded).to(device) for _ in groups]
            parts = self._step(micro)
            size = sum(m.num_graphs for m in micro)
            p.epoch_loss_sum += float(parts[self.loss_key]) * size
            p.epoch_crystals += size
            crystals += size
            p.global_step += 1
            p.batch_in_epoch += 1
            bar.update(1)
            if p.global_step % tcfg.log_every == 0:
                now = time.perf_counter()
                rate = crystals * self.env.world_size / max(now - tick, 1e-9)
                values = {f"train/{k}": float(v) for k, v in parts.items()}
                values["train/lr"] = self.optimizer.param_groups[0]["lr"]
                values["train/crystals_per_s"] = rate
                bar.set_postfix(loss=f"{values['train/loss']:.4g}", xtal_s=f"{rate:.0f}")
                if self.metric_log:
                    self.metric_log.log(p.global_step, p.epoch, values)
            if budget < math.inf and self._agree(time.perf_counter() - started >= budget):
                bar.close()
                return True
        bar.close()
        return False

    def _step(self, micro: list) -> dict[str, Tensor]:
        """One optimiser step on a batch given as micro-batches: each one's loss, weighted by its share of the
        batch's crystals, is back-propagated on its own, so the accumulated gradient is the full batch's for a loss
        that is a mean over crystals (GenerativeModel.training_loss). Under DDP only the last micro-batch
        synchronises gradients. The parts returned are the same weighted sums."""
        total = sum(m.num_graphs for m in micro)
        parts: dict[str, Tensor] = {}
        self.optimizer.zero_grad(set_to_none=True)
        for k, batch in enumerate(micro):
            weight = batch.num_graphs / total if len(micro) > 1 else None
            last = k == len(micro) - 1
            eager = self._eager_step
            with eager.no_sync() if isinstance(eager, DistributedDataParallel) and not last else contextlib.nullcontext():
                batch_parts = self._backward(batch, weight)
            for key, value in batch_parts.items():
                parts[key] = value if weight is None else parts.get(key, 0) + value * weight
        grad_norm = clip_gradients(self.model.parameters(), self.tcfg)
        self.optimizer.step()
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        if grad_norm is not None:
            parts["grad_norm"] = grad_norm
        return parts

    def _backward(self, batch, weight: float | None) -> dict[str, Tensor]:
        """Forward and backward of one (micro-)batch, its loss scaled by ``weight`` (None: unscaled); returns the
        detached parts."""
        p = self.progress
        with autocast(self.env.device, self.tcfg.precision):
            parts = self._compiled_or_eager(batch) if self.step_module is not self._eager_step else self.step_module(batch)
        loss = parts.get(self.loss_key)
        if loss is None:
            raise KeyError(f"the training stage minimises {self.loss_key!r}, but training_loss returned only "
                           f"{', '.join(sorted(parts))}")
        if not torch.isfinite(loss).item():
            raise NonFiniteLossError(
                f"the training loss is {loss.item()} at step {p.global_step + 1} (epoch {p.epoch + 1}); "
                "lower trainer.lr, set trainer.grad_clip, or check the data. The last good checkpoint is "
                "checkpoints/last.ckpt."
            )
        (loss if weight is None else loss * weight).backward()
        return {k: v.detach() for k, v in parts.items()}

    def _compiled_or_eager(self, batch) -> dict[str, Tensor]:
        """The compiled step; if dynamo cannot compile the model, say so and continue without compile (it is an
        optimisation, never a reason to stop training)."""
        from torch._dynamo.exc import TorchDynamoException

        try:
            return self.step_module(batch)
        except TorchDynamoException as exc:
            # The first line, with the next one when it only introduces the cause ("backend='inductor' raised:").
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            reason = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
            log.warning("torch.compile cannot compile this model's training loss (%s); training without it", reason)
            self.step_module = self._eager_step
            return self.step_module(batch)

    def _first_best(self, val: Sequence[Data]) -> None:
        """The budget ran out before any validation: validate once so that the run still has a best.ckpt. The random
        state is restored afterwards, and best_loss, the schedule and early stopping are left alone, so a resumed run
        continues exactly as if this had not happened (its first validation replaces this best.ckpt)."""
        with torch.random.fork_rng(devices=[self.env.device] if self.env.device.type == "cuda" else []):
            values = self.validate(val)
        self._save("best")
        if self.env.is_main:
            monitored = f"val/{self.loss_key}"
            log.info("validation at the end of the time budget: %s %.5g (written as best.ckpt)", monitored,
                     values.get(monitored, math.nan))

    def _after_validation(self, monitored: float) -> bool:
        """Plateau schedule, best checkpoint and early stopping on the monitored loss; True to stop."""
        p = self.progress
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(monitored)
        # Early stopping counts only improvements beyond float noise (relative, as ReduceLROnPlateau's threshold):
        # the same weights give slightly different epoch means when the data order changes.
        significant = not math.isfinite(p.best_loss) or monitored < p.best_loss - IMPROVEMENT * abs(p.best_loss)
        p.bad_validations = 0 if significant else p.bad_validations + 1
        if monitored < p.best_loss:
            p.best_loss = monitored
            self._save("best")
        patience = self.tcfg.early_stopping_patience
        return patience is not None and p.bad_validations >= patience

    @torch.no_grad()
    def validate(self, val: Sequence[Data]) -> dict[str, float]:
        """Mean validation loss parts per crystal (``val/<part>``), with the averaged weights when EMA is on."""
        device = self.env.device
        batches = [list(range(i, min(i + self.cfg.data.batch_size, len(val)))) for i in range(0, len(val), self.cfg.data.batch_size)]
        batches = [micro for batch in batches[self.env.rank::self.env.world_size] for micro in self._split(val, batch)]
        sums: dict[str, Tensor] = {}
        count = 0
        devices = [device] if device.type == "cuda" else []
        weights = self.ema.averaged(self.model) if self.ema else contextlib.nullcontext()
        with torch.random.fork_rng(devices=devices), weights:
            torch.manual_seed(self.tcfg.seed + VALIDATION_SEED_OFFSET)
            self.model.eval()
            for batch in self._loader(val, batches):
                batch = batch.to(device)
                with autocast(device, self.tcfg.precision):
                    parts = self.model.training_loss(batch)
                for k, v in parts.items():
                    sums[k] = sums.get(k, torch.zeros((), device=device)) + v.detach().float() * batch.num_graphs
                count += batch.num_graphs
            self.model.train()
        totals = {k: float(v) for k, v in sums.items()}
        if self.env.distributed:  # a rank may hold no validation batch, so merge whatever each rank has
            gathered: list[Any] = [None] * self.env.world_size
            dist.all_gather_object(gathered, (totals, count))
            totals = {k: sum(t.get(k, 0.0) for t, _ in gathered) for k in sorted({k for t, _ in gathered for k in t})}
            count = sum(c for _, c in gathered)
        return {f"val/{k}": v / max(count, 1) for k, v in sorted(totals.items())}

    def _reduce_mean(self, total: Tensor, count: int) -> float:
        if self.env.distributed:
            both = torch.stack([total.float(), torch.tensor(float(count), device=total.device)])
            dist.all_reduce(both)
            total, count = both[0], int(both[1].item())
        return float(total) / max(count, 1)

    def _agree(self, flag: bool) -> bool:
        """All ranks stop together: True when any rank says so."""
        if not self.env.distributed:
            return flag
        t = torch.tensor(float(flag), device=self.env.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())
