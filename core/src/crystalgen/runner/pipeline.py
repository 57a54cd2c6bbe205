"""The runner's jobs, as used by the command line and from Python: train, sample, evaluate, run.

``run`` = train -> sample -> evaluate -> report in one run directory (see crystalgen.runner.run_dir).
"""

from __future__ import annotations

import functools
import logging
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch_geometric.data import Data

from crystalgen.models.base import GenerativeModel
from crystalgen.resources import GB, apply_process_resources, flat_record, memory_budget
from crystalgen.runner.budget import admitted, refusals
from crystalgen.runner.checkpoint import load_checkpoint
from crystalgen.runner.conditions import ConditionSpec
from crystalgen.runner.conditions import describe as describe_conditions
from crystalgen.runner.config import as_dict, to_yaml
from crystalgen.runner.datasets import parse_split, prepared_split, provenance, reference_statistics, split_structures
from crystalgen.runner.distributed import Environment, seed_everything, select_device, setup, teardown
from crystalgen.runner.errors import NoCrystalsGeneratedError
from crystalgen.runner.init_from import load_initial_weights
from crystalgen.runner.init_from import write_report as write_init_report
from crystalgen.runner.metric_log import MetricLog
from crystalgen.runner.models import (
    checkpoint_sampler,
    checkpoint_sampler_name,
    load_trained,
    model_class,
    saved_config,
    split_options,
)
from crystalgen.runner.run_dir import RunDir
from crystalgen.runner.run_state import evaluate_argv, record_stage
from crystalgen.runner.run_state import reference as reference_of
from crystalgen.runner.sample_dir import JSONL, write_sample_dir
from crystalgen.runner.sampling import generate
from crystalgen.runner.size_limit import SplitSizes, check_condition_sizes, record_limit
from crystalgen.runner.training import Checkpoints, Progress, Trainer

log = logging.getLogger("crystalgen.run")


def announce(cfg: DictConfig, model_name: str) -> None:
    """Say which preset runs and what it shrank, so nobody mistakes a CPU-sized run for a paper-sized one."""
    log.info("model %s, preset %s, dataset %s", model_name, cfg.preset, cfg.data.dataset)
    if cfg.preset_note:
        log.info("preset note: %s", cfg.preset_note)


def apply_memory_budget(cfg: DictConfig) -> None:
    """Make the run config's ``memory_gb`` the budget of this process and its workers (null: keep the default)."""
    from crystalgen.resources import set_memory_budget

    set_memory_budget(cfg.get("memory_gb"))


def prepare_training_data(model_name: str, cfg: DictConfig, env: Environment, show_progress: bool = True,
                          model: GenerativeModel | None = None) -> tuple[list[Data], list[Data]]:
    """Training and validation crystals, preprocessed with the model's transform. Under DDP rank 0 fills the
    cache first and the other ranks read it. Crystals above ``data.max_atoms`` are left out as ``too many atoms``,
    and ``cfg.data.size_limit`` records the largest training crystal kept (runner.size_limit). With ``model``,
    crystals whose training step alone would exceed the memory budget (its ``memory_cost``) are left out, each with
    its reason among the skipped rows."""
    transform = model_class(model_name).transform(cfg.model)
    data = cfg.data
    refuse = functools.partial(refusals, model, budget=memory_budget()) if model is not None else None
    items: tuple[list[Data], list[Data]] = ([], [])
    sizes = {"train": SplitSizes(), "val": SplitSizes()}
    for turn in (True, False):  # rank 0's turn, then everyone else's
        if env.is_main == turn:
            train = prepared_split(data, data.train_split, transform, max_rows=data.max_train_rows,
                                   show_progress=show_progress and env.is_main, refuse=refuse,
                                   max_atoms=data.max_atoms, sizes=sizes["train"])
            val = prepared_split(data, data.val_split, transform, max_rows=data.max_val_rows,
                                 show_progress=show_progress and env.is_main, refuse=refuse, max_atoms=data.max_atoms,
                                 sizes=sizes["val"]) if data.val_split else []
            items = (train, val)
        env.barrier()
    record_limit(cfg, sizes["train"].largest, {split: s.excluded for split, s in sizes.items()})
    return items


def train(model_name: str, cfg: DictConfig, run: RunDir, *, resume: str | Path | None = None,
          data: tuple[Sequence[Data], Sequence[Data]] | None = None, show_progress: bool = True,
          resources: Mapping[str, Any] | None = None) -> Progress:
    """Train ``model_name`` with ``cfg`` into ``run`` (continuing checkpoint ``resume`` when given).

    ``data`` (train, val) bypasses the data layer (tests, notebooks). Joins the torchrun process group when
    launched by torchrun. ``resources``: what the calling verb applied (apply_process_resources); None applies
    ``cfg.threads`` here. It is recorded in the run's resources.json.
    """
    record = dict(resources) if resources is not None else apply_process_resources(cfg.get("threads"))
    apply_memory_budget(cfg)
    env = setup(cfg.trainer.device)
    metric_log = None
    try:
        seed_everything(cfg.trainer.seed + env.rank)
        payload = load_checkpoint(resume) if resume else None
        if env.is_main:
            run.path.mkdir(parents=True, exist_ok=True)
            run.config.write_text(to_yaml(cfg))
            run.record_resources("train", record)
            announce(cfg, model_name)
        # the model first: its memory estimate decides which crystals a training step can hold (building it draws
        # its initial weights, and preparing the data draws nothing from torch's generator, so the order is free)
        model = model_class(model_name).from_config(cfg.model)
        if payload is None and cfg.trainer.init_from:
            init_weights(model, cfg, run, env)
        if data is None:
            train_items, val_items = prepare_training_data(model_name, cfg, env, show_progress, model)
            if env.is_main:
                run.config.write_text(to_yaml(cfg))  # with data.size_limit
        else:
            train_items, val_items = (admitted(model, items, memory_budget(), what)
                                      for items, what in zip(data, ("training", "validation"), strict=True))
        if payload is None:
            model.fit_statistics(train_items)
        if env.is_main:
            resume_step = payload["progress"]["global_step"] if payload else None
            metric_log = MetricLog(run.train_log, resume_step=resume_step, tensorboard_dir=run.tensorboard)
        trainer = Trainer(model, cfg, env, Checkpoints(run.checkpoints), metric_log, model_name, show_progress)
        if payload is not None:
            trainer.load_state(payload)
            log.info("resuming from %s at epoch %d, step %d", resume, trainer.progress.epoch, trainer.progress.global_step)
        return trainer.fit(list(train_items), list(val_items))
    finally:
        if metric_log is not None:
            metric_log.close()
        teardown(env)


def init_weights(model: GenerativeModel, cfg: DictConfig, run: RunDir, env: Environment) -> None:
    """Fine-tuning (``trainer.init_from``): the checkpoint's weights, before the data statistics are fitted on this
    run's own training split; what was loaded is written to the run's init_from.json."""
    t = cfg.trainer
    report = load_initial_weights(model, t.init_from, keys=list(t.init_from_keys or []), strict=t.init_from_strict,
                                  averaged=t.init_from_ema)
    if env.is_main:
        write_init_report(report, run.init_from)


def resume_config(resume: str | Path, overrides: Sequence[str] = (),
                  more_minutes: float | None = None) -> tuple[str, DictConfig, RunDir, Path]:
    """(model name, config, run directory, checkpoint) to continue a run from a run directory or checkpoint.

    The saved configuration is amended with ``overrides`` (e.g. a larger ``trainer.max_epochs``). ``more_minutes``
    grants another time budget on top of the training time already spent: the budget (``trainer.max_minutes``)
    counts all training of the run, so resuming with the same budget would stop again after one step.
    """
    from crystalgen.runner.config import ConfigError, apply_user_layers

    path = Path(resume)
    ckpt = path / "checkpoints" / "last.ckpt" if path.is_dir() else path
    payload = load_checkpoint(ckpt)
    cfg = apply_user_layers(saved_config(payload, str(ckpt)), overrides=overrides)
    if more_minutes is not None:
        if any(item.startswith("trainer.max_minutes=") for item in overrides):
            raise ConfigError("give either --more-minutes or trainer.max_minutes=..., not both")
        if not more_minutes > 0:
            raise ConfigError(f"--more-minutes must be a positive number of minutes, got {more_minutes}")
        spent = payload["progress"]["train_seconds"] / 60
        cfg.trainer.max_minutes = spent + more_minutes
        log.info("time budget: %.2f min spent so far + %g more = trainer.max_minutes %.2f", spent, more_minutes,
                 cfg.trainer.max_minutes)
    return payload["model_name"], cfg, RunDir(ckpt.parent.parent), ckpt


def sample(checkpoint: str | Path, out: str | Path, *, num_samples: int | None, sampler: str | None = None,
           steps: int | None = None, batch_size: int = 100, seed: int = 0, options: dict[str, Any] | None = None,
           conditions: ConditionSpec | None = None, device: str = "auto", precision: str = "fp32",
           expected_model: str | None = None, averaged: bool = True, model_overrides: Sequence[str] = (), show_progress: bool = True,
           resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Generate crystals from a checkpoint into the sample directory ``out``; returns the counts.

    ``averaged`` uses the EMA weights when the checkpoint has them. ``options`` are the sampler's, plus the model's
    request options that the sampler does not take (split_options). ``conditions`` are checked against the model
    before its sampler is built, and decide the number of crystals with ``num_samples`` (crystalgen.runner.conditions;
    None: unconditioned, ``num_samples`` of them). ``model_overrides`` amend the checkpoint's model configuration
    (load_trained). ``resources``: what the calling verb applied; None applies the automatic choice
    here. sampling.json records it."""
    record = dict(resources) if resources is not None else apply_process_resources()
    trained = load_trained(checkpoint, select_device(device), averaged=averaged, model_overrides=model_overrides,
                           expected_model=expected_model or None,
                           check=lambda cfg: check_condition_sizes(cfg, conditions, str(checkpoint)))
    spec = conditions or ConditionSpec()
    spec.check(trained.name, trained.model.conditions)
    sampler_options, model_options = split_options(trained.model, checkpoint_sampler_name(trained, sampler), options)
    chosen = checkpoint_sampler(trained, sampler, steps, sampler_options)
    resolved = spec.resolve(trained.name, trained.model.conditions, num_samples, show_progress=show_progress)
    num_samples = resolved.count
    log.info("sampling %d crystals with %s (%s) from %s; conditions: %s", num_samples, type(chosen).__name__,
             chosen.config(), checkpoint, describe_conditions(resolved.summary()))
    generated = generate(trained.model, chosen, num_samples, batch_size, conditions=resolved, options=model_options,
                         seed=seed, precision=precision, show_progress=show_progress)
    meta = {
        "model": trained.name,
        "checkpoint": str(Path(checkpoint).resolve()),
        "preset": trained.config.get("preset"),
        "preset_note": trained.config.get("preset_note", ""),
        "sampler": chosen.config(),
        "model_options": model_options,
        "model_overrides": list(model_overrides),
        "ema_weights": averaged and trained.payload.get("ema") is not None,
        "seed": seed,
        "num_samples": num_samples,
        "batch_size": batch_size,
        "effective_batch_size": generated.batch_size,
        "memory_budget_gb": round(memory_budget() / GB, 3),
        "conditions": resolved.summary(),
        "device": str(next(trained.model.parameters()).device),
        "precision": precision,
        **record,
        "timings": {"total_seconds": generated.seconds, **{f"{k}_seconds": v for k, v in generated.timings.items()},
                    "batches": generated.batches},
        "host": platform.node(),
        "torch": torch.__version__,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    counts = write_sample_dir(out, generated.decoded, meta, extra_rows=resolved.rows())
    if counts["ok"] == 0:
        reason = next((d.reason for d in generated.decoded if d.reason), "no reason given")
        raise NoCrystalsGeneratedError(
            f"none of the {counts['requested']} crystals could be generated; the first failure: {reason}. "
            f"{Path(out) / JSONL} lists every crystal's reason (set CRYSTALGEN_TRACEBACK=1 and -v for details)")
    log.info("%d of %d crystals decoded (%s) in %.1f s -> %s", counts["ok"], counts["requested"],
             ", ".join(f"{k}: {v}" for k, v in counts["failed_by_reason"].items()) or "no failures", generated.seconds, out)
    return counts


def evaluate(samples: str | Path, out: str | Path, cfg: DictConfig, show_progress: bool = True,
             resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Compare a sample directory with the configured reference split (crystalgen.metrics.evaluate); writes
    metrics.json, metrics.md and per_sample.csv into ``out``. ``resources``: what the calling verb applied; None
    applies ``cfg.threads`` here. metrics.json records it (``threads``, ``threads_source``, ...)."""
    from crystalgen.metrics import evaluate as evaluate_metrics
    from crystalgen.metrics import read_samples

    record = dict(resources) if resources is not None else apply_process_resources(cfg.get("threads"))
    apply_memory_budget(cfg)
    e = cfg.evaluate
    structures, failures, ids = read_samples(samples, workers=e.workers, progress=show_progress)
    name, split = parse_split(reference_of(cfg))
    reference, notes = split_structures(name, split, workers=e.workers, progress=show_progress)
    annotations = provenance("reference", reference_of(cfg), notes) | flat_record(record)
    train, train_notes = None, list[str]()
    if e.train_split:
        train, train_notes = split_structures(cfg.data.dataset, e.train_split, workers=e.workers, progress=show_progress)
        annotations |= provenance("train", f"{cfg.data.dataset}:{e.train_split}", train_notes)
    for note in notes + train_notes:
        log.warning("evaluation data: %s", note)
    log.info("evaluating %d samples against %s (%d crystals)", len(structures), reference_of(cfg), len(reference))
    return evaluate_metrics(structures, reference, train=train, metrics=list(e.metrics) if e.metrics else None,
                            reference_name=name, failures=failures, out_dir=out, workers=e.workers,
                            progress=show_progress, options=as_dict(e.options) or None, sample_ids=ids,
                            annotations=annotations)


def best_checkpoint(run: RunDir, which: str) -> Path:
    """checkpoints/<which>.ckpt, or last.ckpt when no validation has written best.ckpt."""
    chosen = run.checkpoints / f"{which}.ckpt"
    if not chosen.is_file() and which == "best":
        log.info("no best.ckpt (no completed validation); sampling from last.ckpt")
        chosen = run.checkpoints / "last.ckpt"
    return chosen


def run_pipeline(model_name: str, cfg: DictConfig, run: RunDir, *, show_progress: bool = True,
                 resources: Mapping[str, Any] | None = None, rerun: bool = False) -> Path:
    """train -> sample -> evaluate -> report in ``run``; returns the report's path. ``resources``: what the calling
    verb applied; None applies ``cfg.threads`` here, once for every stage.

    A failed sampling or evaluation does not stop the run from writing its report, which says so at the top with
    the reason and the command that completes the run (crystalgen.runner.run_state). Evaluation runs as a child
    command, so that even its kill (out of memory) leaves the report to be written. With ``rerun`` (the run
    directory holds an earlier, stopped run of the same configuration) each stage picks up where that run stopped:
    training resumes from checkpoints/last.ckpt unless it had ended by its own rule, and sampling and evaluation
    are skipped when they are complete and nothing before them ran again (runner.run_state.finished_stages).
    """
    from crystalgen.runner.report import write_report
    from crystalgen.runner.run_state import finished_stages

    s = cfg.sample
    conditions = ConditionSpec.from_config(s.get("condition"))
    accepted = model_class(model_name).conditions
    conditions.check(model_name, accepted)  # before any training or data read
    record = dict(resources) if resources is not None else apply_process_resources(cfg.get("threads"))
    started = time.perf_counter()
    done = finished_stages(run) if rerun else set()
    last = run.checkpoints / "last.ckpt"
    if "training" in done:
        stop_reason = load_checkpoint(last)["progress"]["stop_reason"]
        log.info("training: complete in the earlier run of %s (%s); not repeated", run.path, stop_reason)
    else:
        resume = last if rerun and last.is_file() else None
        if resume is not None:
            log.info("training: resuming the earlier run of %s from %s", run.path, resume)
        stop_reason = train(model_name, cfg, run, resume=resume, show_progress=show_progress,
                            resources=record).stop_reason
        done = set()  # a new checkpoint: the samples and metrics of the earlier run are stale
    if "sampling" in done:
        log.info("sampling: complete in the earlier run (%s); not repeated", run.samples)
        _evaluate_stage(run, cfg, show_progress, done)
        sampled = True
    else:
        sampled = _sample_and_evaluate(model_name, cfg, run, show_progress, record, conditions)
    if sampled and conditions.scores_csp(accepted) and "csp" not in done:
        _score_csp(run, cfg, show_progress)
    report = write_report(run.path, _reference_statistics(reference_of(cfg)))
    log.info("run finished in %.1f s (%s); report: %s", time.perf_counter() - started, stop_reason, report)
    return report


def _sample_and_evaluate(model_name: str, cfg: DictConfig, run: RunDir, show_progress: bool,
                         record: Mapping[str, Any], conditions: ConditionSpec) -> bool:
    """Sampling, then (when it completed) the evaluation; returns whether sampling completed."""
    s = cfg.sample
    record_stage(run, "sampling", "running", model=model_name)
    try:
        sample(best_checkpoint(run, s.checkpoint), run.samples,
               num_samples=None if conditions.decides_count() else s.num_samples, sampler=s.sampler,
               steps=s.steps, batch_size=s.batch_size, seed=s.seed,
               options=as_dict(s.options), conditions=conditions, device=cfg.trainer.device,
               precision=cfg.trainer.precision, show_progress=show_progress, resources=record)
    except Exception as exc:  # noqa: BLE001 - the report must still say what happened
        log.error("sampling failed: %s: %s", type(exc).__name__, exc)
        record_stage(run, "sampling", "failed", f"{type(exc).__name__}: {exc}")
        return False
    record_stage(run, "sampling", "complete")
    _evaluate_stage(run, cfg, show_progress, set())
    return True


def _evaluate_stage(run: RunDir, cfg: DictConfig, show_progress: bool, done: set[str]) -> None:
    """The evaluation in a child process, unless ``done`` says the earlier run of the directory completed it."""
    if "evaluation" in done:
        log.info("evaluation: complete in the earlier run (%s); not repeated", run.metrics)
        return
    _child_stage(run, "evaluation", evaluate_argv(run, cfg), show_progress, doing="evaluating")


def _score_csp(run: RunDir, cfg: DictConfig, show_progress: bool) -> None:
    """Score the samples as structure predictions of the crystals of ``sample.condition.from`` (task ``csp``'s
    evaluation), in a child command like the evaluation, into metrics/csp/."""
    from crystalgen.runner.run_state import csp_argv

    _child_stage(run, "csp", csp_argv(run, cfg), show_progress, doing="scoring crystal structure prediction",
                 name="CSP scoring")


def _child_stage(run: RunDir, stage: str, argv: list[str], show_progress: bool, *, doing: str,
                 name: str | None = None) -> None:
    """``crystalgen ARGV`` as the run's ``stage`` in a child process, so that even its kill (out of memory) leaves
    the report to be written; a failure is recorded for the report, not raised."""
    from crystalgen.runner.stage_process import run_child

    record_stage(run, stage, "running")
    argv = argv + ([] if show_progress else ["--no-progress"])
    log.info("%s in a child process: crystalgen %s", doing, " ".join(argv))
    started = time.perf_counter()
    child = run_child(argv)
    seconds = time.perf_counter() - started  # the stage's wall time, in stages.json and the report
    if child.ok:
        record_stage(run, stage, "complete", seconds=seconds)
    else:
        log.error("%s failed: %s", name or stage, child.reason)
        record_stage(run, stage, "failed", child.reason, seconds=seconds)


def _reference_statistics(spec: str) -> dict[str, list[float]] | None:
    """The reference histograms of the report, or None when the split cannot be read (the report still comes)."""
    try:
        return reference_statistics(spec)
    except Exception as exc:  # noqa: BLE001 - a missing reference must not cost the report
        log.warning("report without reference histograms: %s: %s", type(exc).__name__, exc)
        return None
