"""The tasks that hand each input crystal to a model method: ``reconstruct`` and ``optimize`` (CDVAE,
StructRepDiff). The model must list the task in ``GenerativeModel.tasks`` and implement the method of that name.

Crystals go in batches of at most ``batch_size`` whose estimated memory (GenerativeModel.memory_cost, from each
input's size) fits the memory budget; a crystal that alone exceeds it, or that the model's transform refuses, gets a
candidate with the reason instead, so that every input keeps its place.

``optimize --fit-head-on NAME:SPLIT --property NAME`` first has the model fit a new property head on the frozen
latents of that split's crystals (``GenerativeModel.fit_property_head``), for a model trained without one or on a
training split that lacks the property; the fit's summary goes to sampling.json (``task_record``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from pymatgen.core import Structure
from torch_geometric.data import Data
from tqdm.auto import tqdm

from crystalgen.models.base import Decoded
from crystalgen.tasks.base import Scoring, Task, TaskJob


class ModelMethodTask(Task):
    """Calls ``model.<name>(batch, sampler, generator=..., **options)`` on the preprocessed inputs in batches."""

    #: the method differentiates through the model (latent gradients); otherwise it runs without autograd
    needs_grad: ClassVar[bool] = False

    def produce(self, job: TaskJob) -> list[list[Decoded]]:
        from crystalgen.data.crystal import collate
        from crystalgen.runner.distributed import autocast

        by_input = job.prepared_by_input()
        items = [item for item in by_input if not isinstance(item, str)]
        position = [i for i, item in enumerate(by_input) if not isinstance(item, str)]  # of each item in by_input
        if not items:
            raise ValueError(f"{job.source}: no crystals to {self.name}")
        batches, refused = packed_batches(job, items)
        # a crystal the transform refused, or that alone exceeds the budget, gets a candidate with the reason
        per_input = [[Decoded(None, item)] if isinstance(item, str) else [] for item in by_input]
        for k, reason in refused.items():
            per_input[position[k]] = [Decoded(None, reason)]
        device = next(job.model.parameters()).device
        method, options = getattr(job.model, self.name), self.method_options(job)
        for chosen in tqdm(batches, desc=self.name, disable=not job.show_progress, unit="batch"):
            batch = collate([items[i] for i in chosen]).to(device)
            with torch.enable_grad() if self.needs_grad else torch.no_grad(), autocast(device, job.precision):
                result = method(batch, job.sampler, generator=job.generator, **options)
            # one crystal per input, or the same number per input, input-major (e.g. an optimisation trajectory)
            if not result or len(result) % batch.num_graphs:
                raise RuntimeError(f"model {job.model_name!r} returned {len(result)} crystals for {batch.num_graphs} inputs")
            k = len(result) // batch.num_graphs
            for j, i in enumerate(chosen):
                per_input[position[i]] = result[j * k:(j + 1) * k]
        return per_input

    def method_options(self, job: TaskJob) -> dict[str, Any]:
        """The keyword arguments of the model method: the task's options (default: all of them)."""
        return dict(job.options)


def packed_batches(job: TaskJob, items: Sequence[Data]) -> tuple[list[list[int]], dict[int, str]]:
    """Indices of ``items`` in batches of at most ``job.batch_size`` that fit the memory budget
    (GenerativeModel.memory_cost), and the crystals that alone exceed it, with the reason."""
    from crystalgen.resources import memory_budget, pack_by_cost
    from crystalgen.runner.budget import crystal_costs, refusals

    model, budget = job.model, memory_budget()
    refused = dict(refusals(model, items, budget, training=False))
    batches, _ = pack_by_cost(crystal_costs(model, items, training=False),
                              budget - model.memory_overhead(training=False), max_items=job.batch_size)
    return batches, refused


class Reconstruct(ModelMethodTask):
    """Encode each input crystal and decode it back; scored by CDVAE's reconstruction match rate and RMSE."""

    name = "reconstruct"
    summary = "encode each crystal of a split and decode it back (match rate, RMSE)"
    evaluation_names = ("reconstruction",)

    def evaluate(self, candidates: Sequence[Sequence[Structure | None]], true: Sequence[Structure],
                 scoring: Scoring) -> dict[str, Any]:
        from crystalgen.metrics import reconstruction

        pairs = [(group[0], true[i]) for i, group in enumerate(candidates) if group]
        return reconstruction([p for p, _ in pairs], [t for _, t in pairs], oxidation_states=scoring.oxidation_states,
                              workers=scoring.workers, progress=scoring.progress)


class Optimize(ModelMethodTask):
    """Move each input crystal towards a lower or higher property value (CDVAE's latent gradient descent); scored by
    the success rates SR5/SR10/SR15 of an independent property model."""

    name = "optimize"
    summary = "move each crystal of a split towards a lower or higher property (SR5/SR10/SR15)"
    evaluation_names = ("optimization",)
    needs_grad = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--direction", choices=("min", "max"), default="min", help="minimise (default) or maximise")
        parser.add_argument("--opt-steps", type=int, help="optimisation steps (default: the model's)")
        parser.add_argument("--fit-head-on", metavar="NAME:SPLIT",
                            help="first fit a new property head on the frozen latents of this split's crystals (for a "
                                 "model trained without one, or on data without the property); needs --property")
        parser.add_argument("--property", metavar="NAME", help="the property (a column of --fit-head-on's split) the "
                            "fitted head predicts; only with --fit-head-on")

    def options(self, args: argparse.Namespace) -> dict[str, Any]:
        if (args.fit_head_on is None) != (args.property is None):
            raise ValueError("--fit-head-on NAME:SPLIT and --property NAME go together: the head is fitted on that "
                             "split's column NAME (without both, the checkpoint's own head is used)")
        head = {"fit_head_on": args.fit_head_on, "property": args.property} if args.fit_head_on else {}
        return {"direction": args.direction, "steps": args.opt_steps, **head}

    def produce(self, job: TaskJob) -> list[list[Decoded]]:
        source = job.options.get("fit_head_on")
        if source is not None:
            job.model.require_task("fit_property_head")  # before any data is read
            job.record["property_head"] = fit_property_head(job, source, str(job.options["property"]))
        return super().produce(job)

    def method_options(self, job: TaskJob) -> dict[str, Any]:
        return {k: v for k, v in job.options.items() if k not in ("fit_head_on", "property")}

    def evaluate(self, candidates: Sequence[Sequence[Structure | None]], true: Sequence[Structure],
                 scoring: Scoring) -> dict[str, Any]:
        from crystalgen.metrics import optimization_success
        from crystalgen.metrics.cdvae_constants import canonical_dataset

        if scoring.percentiles is None and canonical_dataset(scoring.reference_name) is None:
            raise ValueError(f"{scoring.reference_name or 'this reference'}: SR5/SR10/SR15 have published thresholds only "
                             "for perov_5, carbon_24 and mp_20; for other data pass --percentiles P5,P10,P15 (the "
                             "property's 5th, 10th and 15th percentiles over the training set) and --property-predictor NAME")
        result = optimization_success([list(group) for group in candidates if group], dataset=scoring.reference_name,
                                      percentiles=scoring.percentiles, property_predictor=scoring.property_predictor,
                                      oxidation_states=scoring.oxidation_states,
                                      predictor_options=scoring.predictor_options)
        if scoring.options.get("fit_head_on"):  # what the optimised head predicted, beside what scored it
            result.update(SR_head_property=scoring.options["property"], SR_head_fitted_on=scoring.options["fit_head_on"])
        return result


def fit_property_head(job: TaskJob, source: str, property: str) -> dict[str, Any]:
    """The model's new property head fitted on the latents of every crystal of ``source`` (in memory-budgeted
    batches); the model's summary with the split and the crystals left out."""
    from crystalgen.data.crystal import collate

    items = job.prepared_split(source)
    if not items:
        raise ValueError(f"{source}: no crystals to fit a property head on")
    batches, refused = packed_batches(job, items)
    device = next(job.model.parameters()).device
    loaded = (collate([items[i] for i in chosen]).to(device) for chosen in batches)
    summary = job.model.fit_property_head(loaded, property, generator=job.generator)
    return {"source": source, "property": property, "left_out_over_memory_budget": len(refused), **summary}
