"""A model's optional tasks (reconstruct, optimize) over the crystals of a dataset split.

The model must list the task in ``GenerativeModel.tasks``; otherwise the request is refused before any data is
read. Results go to a sample directory whose rows also name the input crystal (``input_index``, ``input_id``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from crystalgen.data.crystal import collate
from crystalgen.models.base import Decoded
from crystalgen.resources import GB, apply_process_resources, memory_budget, pack_by_cost
from crystalgen.runner.budget import crystal_costs, refusals
from crystalgen.runner.datasets import parse_split, prepared_split
from crystalgen.runner.distributed import autocast, select_device
from crystalgen.runner.models import checkpoint_sampler, load_trained
from crystalgen.runner.sample_dir import write_sample_dir

log = logging.getLogger("crystalgen.tasks")

TASKS = ("reconstruct", "optimize")


def run_task(task: str, checkpoint: str | Path, source: str, out: str | Path, *, num_crystals: int | None,
             batch_size: int, sampler: str | None = None, steps: int | None = None,
             options: dict[str, Any] | None = None, seed: int = 0, device: str = "auto", precision: str = "fp32",
             expected_model: str | None = None, averaged: bool = True, show_progress: bool = True,
             task_options: dict[str, Any] | None = None, model_overrides: Sequence[str] = (),
             resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Apply ``task`` to the first ``num_crystals`` crystals of ``source`` (NAME:SPLIT); returns the counts.

    Crystals go in batches of at most ``batch_size`` whose estimated memory (GenerativeModel.memory_cost, from each
    input's size) fits the memory budget; a crystal that alone exceeds it gets a row with the reason instead.

    ``task_options`` are passed to the model's task method (e.g. ``direction`` and ``steps`` for optimize);
    ``model_overrides`` amend the checkpoint's model configuration (load_trained). ``resources``: what the calling
    verb applied; None applies the automatic choice here. sampling.json records it.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    record = dict(resources) if resources is not None else apply_process_resources()
    trained = load_trained(checkpoint, select_device(device), averaged=averaged, model_overrides=model_overrides,
                           expected_model=expected_model or None)
    model = trained.model
    model.require_task(task)
    chosen = checkpoint_sampler(trained, sampler, steps, options)
    name, split = parse_split(source)
    data_cfg = trained.config.data.copy()
    data_cfg.dataset = name
    items = prepared_split(data_cfg, split, type(model).transform(trained.config.model), max_rows=num_crystals,
                           show_progress=show_progress)
    if not items:
        raise ValueError(f"{source}: no crystals to {task}")
    device_ = next(model.parameters()).device
    torch.manual_seed(seed)
    generator = torch.Generator(device=device_).manual_seed(seed)
    method = getattr(model, task)
    budget = memory_budget()
    refused = dict(refusals(model, items, budget, training=False))
    batches, _ = pack_by_cost(crystal_costs(model, items, training=False), budget - model.memory_overhead(training=False),
                              max_items=batch_size)
    per_input = [[Decoded(None, refused[i])] if i in refused else [] for i in range(len(items))]
    if refused:
        log.warning("%s: %d of %d crystals refused for the memory budget (first: %s)", task, len(refused), len(items),
                    next(iter(refused.values())))
    started = time.perf_counter()
    for chosen_items in tqdm(batches, desc=task, disable=not show_progress, unit="batch"):
        batch = collate([items[i] for i in chosen_items]).to(device_)
        # optimisation differentiates through the model (latent gradients); reconstruction does not
        with torch.no_grad() if task == "reconstruct" else torch.enable_grad(), autocast(device_, precision):
            result = method(batch, chosen, generator=generator, **(task_options or {}))
        # one crystal per input, or (optimize) the same number per input, input-major (e.g. a trajectory)
        if not result or len(result) % batch.num_graphs:
            raise RuntimeError(f"model {trained.name!r} returned {len(result)} crystals for {batch.num_graphs} inputs")
        k = len(result) // batch.num_graphs
        for j, i in enumerate(chosen_items):
            per_input[i] = result[j * k:(j + 1) * k]
    decoded = [d for results in per_input for d in results]
    sources = [i for i, results in enumerate(per_input) for _ in results]
    extra = [{"input_index": i, "input_id": getattr(items[i], "material_id", None) or getattr(items[i], "id", None)}
             for i in sources]
    meta = {"model": trained.name, "task": task, "task_options": task_options or {},
            "model_overrides": list(model_overrides), "input": source,
            "checkpoint": str(Path(checkpoint).resolve()), "sampler": chosen.config(), "seed": seed, **record,
            "batch_size": batch_size, "batches": len(batches), "memory_budget_gb": round(budget / GB, 3),
            "timings": {"total_seconds": time.perf_counter() - started}}
    counts = write_sample_dir(out, decoded, meta, extra_rows=extra)
    log.info("%s: %d of %d crystals decoded -> %s", task, counts["ok"], counts["requested"], out)
    return counts
