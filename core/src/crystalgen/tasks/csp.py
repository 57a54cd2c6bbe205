"""Crystal structure prediction (CSP): for every crystal of a split, k candidates generated from its composition,
scored by match rate and RMSE against the true structure (crystalgen.metrics.csp, DiffCSP's protocol).

Any model that declares the ``composition`` condition runs it: the model's ``prepare_sampling`` receives each
crystal's composition (SampleRequest.composition) and must keep it. Candidates are drawn by the runner's conditioned
sampling (crystalgen.runner.sampling.generate), whose batches are packed by each crystal's estimated memory.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from pymatgen.core import Structure

from crystalgen.metrics.csp import DEFAULT_KS
from crystalgen.models.base import Decoded, GenerativeModel
from crystalgen.tasks.base import Scoring, Task, TaskJob


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


class CrystalStructurePrediction(Task):
    """k candidates per crystal from its composition; match@k and RMSE for each k asked for."""

    name = "csp"
    summary = "predict the structure of each crystal of a split from its composition (match@k, RMSE)"

    def unsupported(self, model: type[GenerativeModel]) -> str | None:
        if "composition" in model.conditions:
            return None
        accepted = ", ".join(sorted(model.conditions)) or "none"
        return f"it does not accept a composition condition (its conditions: {accepted})"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-k", "--k", nargs="+", type=_positive, metavar="K", default=list(DEFAULT_KS),
                            help="candidates per crystal to score: match@K for each K; max(K) are generated "
                                 f"(default: {' '.join(map(str, DEFAULT_KS))}, as DiffCSP)")

    def options(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"k": sorted(set(args.k))}

    def produce(self, job: TaskJob) -> list[list[Decoded]]:
        from crystalgen.runner.conditions import ConditionSpec
        from crystalgen.runner.sampling import generate

        per = max(job.options.get("k") or DEFAULT_KS)
        spec = ConditionSpec(source=job.source, take=("composition",), max_crystals=job.num_crystals, per_condition=per)
        conditions = spec.resolve(job.model_name, job.model.conditions, None, show_progress=job.show_progress,
                                  loaded=job.inputs())
        generated = generate(job.model, job.sampler, conditions.count, job.batch_size, conditions=conditions,
                             seed=job.seed, precision=job.precision, show_progress=job.show_progress)
        inputs = max(conditions.input_index or [-1]) + 1
        per_input: list[list[Decoded]] = [[] for _ in range(inputs)]
        for i, decoded in zip(conditions.input_index or [], generated.decoded, strict=True):
            per_input[i].append(decoded)
        return per_input

    def evaluate(self, candidates: Sequence[Sequence[Structure | None]], true: Sequence[Structure],
                 scoring: Scoring) -> dict[str, Any]:
        from crystalgen.metrics.csp import csp_metrics

        kept = [i for i, group in enumerate(candidates) if group]
        groups = [candidates[i] for i in kept]
        ks = scoring.options.get("k") or sorted({1, min((len(g) for g in groups), default=1)})
        return csp_metrics(groups, [true[i] for i in kept], ks=ks, oxidation_states=scoring.oxidation_states,
                           workers=scoring.workers, progress=scoring.progress)
