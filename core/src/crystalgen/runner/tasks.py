"""Run a registered task (crystalgen.tasks) over the crystals of a dataset split, and score it.

The model must be able to run the task (``Task.unsupported``); otherwise the request is refused before any data is
read, naming the tasks the model supports. Results go to a sample directory whose rows also name the input crystal
(``input_index``, ``input_id``); the task's evaluation writes metrics.json and metrics.md into its ``metrics/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from crystalgen import plugins
from crystalgen.models.base import GenerativeModel, UnsupportedRequestError
from crystalgen.resources import GB, apply_process_resources, memory_budget
from crystalgen.runner.distributed import select_device
from crystalgen.runner.models import checkpoint_sampler, load_trained, model_class
from crystalgen.runner.sample_dir import write_sample_dir
from crystalgen.tasks.base import Scoring, Task, TaskJob, supported_tasks

log = logging.getLogger("crystalgen.tasks")

#: the sub-folder of a task's output folder that holds its evaluation
METRICS_DIR = "metrics"


@dataclass
class TaskRequest:
    """One task job as the user asked for it (the common options of ``crystalgen task``).

    ``sampler_options`` are the sampler's (``--option``); ``options`` the task's own (Task.options);
    ``model_overrides`` amend the checkpoint's model configuration (load_trained); ``resources`` is what the calling
    verb applied (None: the automatic choice is applied here); ``evaluate`` scores the output after writing it.
    """

    checkpoint: str | Path
    source: str
    out: str | Path
    num_crystals: int | None = None
    batch_size: int = 64
    sampler: str | None = None
    steps: int | None = None
    sampler_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    expected_model: str | None = None
    averaged: bool = True
    model_overrides: Sequence[str] = ()
    show_progress: bool = True
    resources: Mapping[str, Any] | None = None
    evaluate: bool = True
    scoring: Scoring = field(default_factory=Scoring)


def registered_tasks() -> dict[str, Task]:
    """Every installed task by name (instances; plugins register classes or instances)."""
    return {name: obj() if isinstance(obj, type) else obj for name, obj in plugins.default_host().registry("task").items()}


def get_task(name: str) -> Task:
    """The installed task ``name`` (UnknownComponentError lists the installed ones)."""
    obj = plugins.get("task", name)
    return obj() if isinstance(obj, type) else obj


def evaluation_task(name: str) -> Task:
    """The task whose evaluation ``crystalgen evaluate --task name`` asks for (its name or one of its
    evaluation_names)."""
    for task in registered_tasks().values():
        if name == task.name or name in task.evaluation_names:
            return task
    return get_task(name)  # raises, naming the installed tasks


def require_task(task: Task, model: type[GenerativeModel], model_name: str) -> None:
    """Refuse a model that cannot run ``task``, naming the reason and the tasks it supports."""
    reason = task.unsupported(model)
    if reason is not None:
        supported = ", ".join(supported_tasks(model, registered_tasks()))
        raise UnsupportedRequestError(f"model {model_name!r} does not support {task.name!r}: {reason}. "
                                      f"Tasks it supports: {supported}")


def run_task(name: str, request: TaskRequest) -> dict[str, Any]:
    """Apply task ``name`` to the first ``request.num_crystals`` crystals of ``request.source`` (NAME:SPLIT), write the
    candidates to ``request.out`` and, with ``request.evaluate``, score them into ``out/metrics``; returns the counts
    (and the metrics under ``"metrics"``)."""
    task = get_task(name)
    if request.expected_model:
        require_task(task, model_class(request.expected_model), request.expected_model)  # before the checkpoint is read
    record = dict(request.resources) if request.resources is not None else apply_process_resources()
    trained = load_trained(request.checkpoint, select_device(request.device), averaged=request.averaged,
                           model_overrides=request.model_overrides, expected_model=request.expected_model or None)
    require_task(task, type(trained.model), trained.name)
    chosen = checkpoint_sampler(trained, request.sampler, request.steps, request.sampler_options)
    device = next(trained.model.parameters()).device
    torch.manual_seed(request.seed)
    job = TaskJob(trained.model, trained.name, trained.config, chosen, request.source, request.num_crystals,
                  request.batch_size, torch.Generator(device=device).manual_seed(request.seed), request.seed,
                  request.precision, request.show_progress, dict(request.options))
    started = time.perf_counter()
    per_input = task.produce(job)
    records = job.inputs().records  # read once: the candidates, the rows' ids and the true structures agree
    if len(per_input) > len(records):
        raise RuntimeError(f"task {name!r} returned candidates for {len(per_input)} inputs, but {request.source} gave "
                           f"{len(records)} crystals (Task.produce returns one entry per record of TaskJob.inputs())")
    decoded = [d for results in per_input for d in results]
    if not decoded:
        raise ValueError(f"{request.source}: task {name!r} produced nothing (no usable input crystal)")
    extra = [{"input_index": i, "input_id": records[i].id} for i, results in enumerate(per_input) for _ in results]
    meta = {"model": trained.name, "task": name, "task_options": request.options,
            "model_overrides": list(request.model_overrides), "input": request.source,
            "checkpoint": str(Path(request.checkpoint).resolve()), "sampler": chosen.config(), "seed": request.seed,
            **record, "batch_size": request.batch_size, "memory_budget_gb": round(memory_budget() / GB, 3),
            "timings": {"total_seconds": time.perf_counter() - started}, **({"task_record": job.record} if job.record else {})}
    counts = write_sample_dir(request.out, decoded, meta, extra_rows=extra)
    log.info("%s: %d of %d crystals decoded -> %s", name, counts["ok"], counts["requested"], request.out)
    if request.evaluate:
        counts["metrics"] = score_task(task, request.out, [[d.structure for d in group] for group in per_input],
                                       [r.structure for r in records], request.scoring, reference=request.source,
                                       notes=list(job.inputs().notes), options=request.options)
    return counts


def score_task(task: Task, out: str | Path, candidates: Sequence[Sequence[Any]], true: Sequence[Any],
               scoring: Scoring, *, reference: str, notes: Sequence[str] = (), options: Mapping[str, Any] | None = None,
               metrics_dir: str | Path | None = None) -> dict[str, Any]:
    """The task's evaluation of ``candidates`` against the ``true`` structures of the same input crystals (those of
    ``reference``, DATASET:SPLIT, with its provenance ``notes``) into ``metrics_dir`` (default ``out/metrics``):
    metrics.json and metrics.md."""
    from crystalgen.metrics.report import write_outputs
    from crystalgen.runner.datasets import parse_split, provenance

    if len(candidates) > len(true):
        raise ValueError(f"{reference}: {len(candidates)} inputs, but only {len(true)} true crystals")
    dataset, _ = parse_split(reference)
    scoring = Scoring(**{**scoring.__dict__, "reference_name": scoring.reference_name or dataset,
                         "options": {**scoring.options, **(options or {})}})
    result = task.evaluate(candidates, true[:len(candidates)], scoring)
    result = {"task": task.name, "reference": scoring.reference_name, "reference_n": len(candidates),
              **provenance("reference", reference, list(notes)), **result}
    write_outputs(Path(metrics_dir) if metrics_dir is not None else Path(out) / METRICS_DIR, result, [],
                  reference_name=scoring.reference_name)
    return result
