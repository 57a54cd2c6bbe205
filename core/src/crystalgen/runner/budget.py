"""Batches sized by the memory budget, from the model's own estimate of what each crystal costs.

Why: a batch's memory grows with its crystals' graphs, not with their count. For training and sampling the count of
crystals per batch (``data.batch_size``, ``sample.batch_size``) is also the method's hyperparameter, so the budget
never changes what a batch *is*: a training batch that would exceed it runs as micro-batches whose accumulated
gradient is the batch's (runner.training), and sampling draws fewer crystals per batch. A crystal that alone
exceeds the budget is refused with the estimate (training: left out of the split, like an unreadable row).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from crystalgen.models.base import GenerativeModel
from crystalgen.resources import over_budget_reason, pack_by_cost
from crystalgen.runner.errors import MemoryBudgetError

log = logging.getLogger("crystalgen.budget")

#: Leading word of the reason of a crystal left out for its size (the data layer groups skipped rows by it).
OVER_BUDGET = "over memory budget"


def node_counts(items: Sequence[Data]) -> Tensor:
    """(B,) nodes of each preprocessed crystal: what GenerativeModel.memory_cost is a function of."""
    return torch.tensor([int(item.num_nodes) for item in items], dtype=torch.long)


def crystal_costs(model: GenerativeModel, items: Sequence[Data], *, training: bool) -> list[float]:
    """Estimated working bytes of each item in a batch (the model's per-batch overhead not included)."""
    if not items:
        return []
    return model.memory_cost(node_counts(items), training=training).tolist()


def refusals(model: GenerativeModel, items: Sequence[Data], budget: float, *, training: bool = True) -> list[tuple[int, str]]:
    """(index, reason) of every item that would exceed ``budget`` in a batch of its own."""
    overhead = model.memory_overhead(training=training)
    what = "training step" if training else "sampling batch"
    return [(i, f"{OVER_BUDGET}: {over_budget_reason(f'a {what} of this crystal ({int(items[i].num_nodes)} nodes)', overhead + cost, budget)}")
            for i, cost in enumerate(crystal_costs(model, items, training=training)) if overhead + cost > budget]


def admitted(model: GenerativeModel, items: Sequence[Data], budget: float, what: str) -> list[Data]:
    """``items`` without those :func:`refusals` names, each refusal logged with its reason and the count summed up
    (for items that do not come from a dataset split, e.g. passed to runner.pipeline.train directly)."""
    refused = refusals(model, items, budget)
    for i, reason in refused:
        log.warning("%s crystal %d left out: %s", what, i, reason)
    if refused:
        log.warning("%s: %d of %d crystals left out for the memory budget", what, len(refused), len(items))
    dropped = {i for i, _ in refused}
    return [item for i, item in enumerate(items) if i not in dropped]


def micro_batches(costs: Sequence[float], budget: float, overhead: float = 0.0) -> list[list[int]]:
    """Consecutive positions of one batch grouped so that each group's estimate stays within ``budget``: the whole
    batch as one group when it fits. Every item must fit alone (see :func:`refusals`)."""
    groups, refused = pack_by_cost(costs, budget - overhead)
    if refused:
        raise MemoryBudgetError(over_budget_reason(f"one crystal of this batch (position {refused[0]})",
                                                   overhead + costs[refused[0]], budget))
    return groups


def sampling_batch_size(model: GenerativeModel, batch_size: int, budget: float) -> int:
    """Crystals per sampling batch: ``batch_size``, or fewer so that a batch of the largest crystals the model can
    draw fits ``budget``; MemoryBudgetError when not even one fits."""
    largest = model.max_sample_nodes()
    if largest is None:
        log.warning("model %r does not say how large its crystals can be (max_sample_nodes): sampling in batches of "
                    "%d without a memory estimate", model.name, batch_size)
        return batch_size
    cost = float(model.memory_cost(torch.tensor([largest]), training=False)[0])
    overhead = model.memory_overhead(training=False)
    if overhead + cost > budget:
        raise MemoryBudgetError(over_budget_reason(f"sampling one crystal of up to {largest} nodes with {model.name}",
                                                   overhead + cost, budget))
    fits = int((budget - overhead) // cost) if cost > 0 else batch_size
    if fits < batch_size:
        log.info("sampling in batches of %d crystals instead of %d: %d crystals of up to %d nodes fit the memory "
                 "budget of %.2g GB", fits, batch_size, fits, largest, budget / 2**30)
    return max(1, min(batch_size, fits))
