"""Generation in batches: request -> condition -> sampler loop -> decode, never crashing on a bad crystal."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch_geometric.data import Data
from tqdm.auto import tqdm

from crystalgen.models.base import Decoded, GenerativeModel
from crystalgen.resources import memory_budget, pack_by_cost
from crystalgen.runner.budget import refusals, sampling_batch_size
from crystalgen.runner.conditions import Conditions
from crystalgen.runner.distributed import autocast
from crystalgen.samplers.base import Sampler

log = logging.getLogger("crystalgen.sample")


@dataclass
class Generated:
    decoded: list[Decoded]
    seconds: float
    batches: int
    batch_size: int  # crystals per batch as run: the requested batch size, or fewer for the memory budget
    timings: dict[str, float] = field(default_factory=dict)


def generate(model: GenerativeModel, sampler: Sampler, num_samples: int, batch_size: int, *,
             conditions: Conditions | None = None, options: dict[str, Any] | None = None, seed: int = 0,
             precision: str = "fp32", show_progress: bool = True, budget: int | None = None) -> Generated:
    """Sample ``num_samples`` crystals in batches of ``batch_size`` on the model's device, or in smaller batches
    when a batch would exceed the memory budget (``budget`` bytes, default :func:`crystalgen.resources.memory_budget`).

    ``conditions`` (``num_samples`` of them, crystalgen.runner.conditions) are checked against the model before
    anything runs (UnsupportedRequestError). When they fix each crystal's atoms (composition, num_atoms), batches
    are packed by each crystal's estimated cost (GenerativeModel.memory_cost of its atom count, an upper bound for
    models whose graph has fewer nodes than atoms) and a crystal that alone exceeds the budget gets the reason
    instead; otherwise every batch is sized for the largest crystal the model can draw (MemoryBudgetError when not
    even one fits).

    Crystals the decoder cannot build are returned with their reason. A batch whose sampling raises (e.g. NaN
    probabilities, a collapsed cell the neighbour search refuses) is sampled again in halves, so that the failure
    stays with the crystals that cause it (:func:`confine_failures`); a batch whose decoding raises fails only its
    own crystals. Failed crystals carry the error as their reason. Even when every batch fails the result comes back,
    so that the caller can write the reasons down before it reports the failure.
    """
    conditions = conditions or Conditions.none(num_samples)
    if conditions.count != num_samples:
        raise ValueError(f"{conditions.count} conditions for {num_samples} crystals")
    model.check_request(conditions.request(0, num_samples, options))
    budget = memory_budget() if budget is None else budget
    batches, refused = condition_batches(model, conditions, batch_size, budget)
    batch_size = max((stop - start for start, stop in batches), default=0)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    decoded: list[Decoded | None] = [None] * num_samples
    for i, reason in refused.items():
        decoded[i] = Decoded(None, reason)
    timings = {"prepare": 0.0, "sampler": 0.0, "decode": 0.0}
    started = time.perf_counter()
    bar = tqdm(total=num_samples, desc="sampling", unit="crystal", disable=not show_progress, dynamic_ncols=True)
    model.eval()
    bar.update(len(refused))

    def sample_and_decode(start: int, stop: int) -> list[Decoded]:
        request = conditions.request(start, stop, options)
        with torch.no_grad(), autocast(device, precision):
            tick = time.perf_counter()
            condition = model.prepare_sampling(request)
            timings["prepare"] += time.perf_counter() - tick
            tick = time.perf_counter()
            state = sampler.run(model.as_sampling_model(), condition, generator=generator, progress=_step_reporter(bar))
            timings["sampler"] += time.perf_counter() - tick
        tick = time.perf_counter()
        out = _decode(model, state, condition, stop - start)
        timings["decode"] += time.perf_counter() - tick
        return out

    for start, stop in batches:
        decoded[start:stop] = confine_failures(sample_and_decode, start, stop, generator)
        bar.update(stop - start)
    bar.close()
    return Generated([d for d in decoded if d is not None], time.perf_counter() - started, len(batches), batch_size,
                     timings)


#: What a failing sampling step raises (NaN probabilities in a categorical step, a cell the neighbour search
#: refuses, a linear-algebra routine that does not converge): a crystal's failure, not a bug of the caller.
SAMPLING_ERRORS = (RuntimeError, ValueError, FloatingPointError)
#: Re-sampling after a failure may cost at most this many times the failed batch's crystals.
RETRY_FACTOR = 2


def confine_failures(run: Callable[[int, int], list[Decoded]], start: int, stop: int,
                     generator: torch.Generator) -> list[Decoded]:
    """``run(start, stop)``; when it raises, the crystals are sampled again in halves, breadth first, and each half
    that fails again in halves, so that one crystal whose chain breaks (a collapsed cell, NaN) fails alone instead of
    taking its whole batch with it. Re-sampling stops after RETRY_FACTOR times the batch's crystals (a failure that
    every crystal shares costs no more than that); crystals left failing get the error as their reason. The random
    streams continue afterwards from where the first attempt left them, so the later batches are those of a run
    without retries. Re-sampled crystals are new draws: their noise is not the noise of the failed attempt."""
    try:
        return run(start, stop)
    except SAMPLING_ERRORS as exc:
        error: BaseException = exc
    after_first = (generator.get_state(), torch.get_rng_state())
    log.warning("sampling crystals %d-%d failed (%s: %s); sampling them again in halves", start, stop - 1,
                type(error).__name__, error)
    out: dict[int, Decoded] = {}
    pending: deque[tuple[int, int]] = deque()
    budget, lost = RETRY_FACTOR * (stop - start), 0

    def split_or_fail(a: int, b: int, cause: BaseException) -> None:
        nonlocal budget, lost
        if b - a > 1 and budget >= b - a:
            budget -= b - a
            pending.extend(((a, (a + b) // 2), ((a + b) // 2, b)))
        else:
            reason = f"sampling failed: {type(cause).__name__}: {cause}"
            out.update({i: Decoded(None, reason) for i in range(a, b)})
            lost += b - a

    split_or_fail(start, stop, error)
    while pending:
        a, b = pending.popleft()
        try:
            out.update(zip(range(a, b), run(a, b), strict=True))
        except SAMPLING_ERRORS as again:
            split_or_fail(a, b, again)
    generator.set_state(after_first[0])
    torch.set_rng_state(after_first[1])
    log.warning("crystals %d-%d: %d of %d sampled after the failure", start, stop - 1, stop - start - lost,
                stop - start)
    return [out[i] for i in range(start, stop)]


def condition_batches(model: GenerativeModel, conditions: Conditions, batch_size: int,
                      budget: float) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """(start, stop) of each batch, and the reason of each crystal refused for the memory budget (see generate)."""
    atoms = conditions.atom_counts()
    if atoms is None:
        size = sampling_batch_size(model, batch_size, budget)
        return [(start, min(start + size, conditions.count)) for start in range(0, conditions.count, size)], {}
    counts = torch.tensor(atoms)
    items = [Data(num_nodes=n) for n in atoms]
    refused = dict(refusals(model, items, budget, training=False))
    kept = [i for i in range(conditions.count) if i not in refused]
    costs = model.memory_cost(counts[kept], training=False).tolist() if kept else []
    groups, _ = pack_by_cost(costs, budget - model.memory_overhead(training=False), max_items=batch_size)
    # pack_by_cost keeps the order, so consecutive crystals share a batch; a refused crystal splits a run in two
    batches: list[tuple[int, int]] = []
    for group in groups:
        positions = [kept[g] for g in group]
        run_start = positions[0]
        for previous, current in zip(positions, positions[1:]):
            if current != previous + 1:
                batches.append((run_start, previous + 1))
                run_start = current
        batches.append((run_start, positions[-1] + 1))
    return batches, refused


def _step_reporter(bar: tqdm):
    """Show the sampler's step in the bar, refreshing about 100 times per batch."""

    def report(step: int, total: int) -> None:
        if step == total or step % max(total // 100, 1) == 0:
            bar.set_postfix_str(f"step {step}/{total}")

    return report


def _decode(model: GenerativeModel, state, condition, expected: int) -> list[Decoded]:
    try:
        batch = model.decode(state, condition)
    except Exception as exc:  # the contract says decoders report, not raise; keep the other batches anyway
        log.warning("decoding a batch of %d crystals raised %s: %s", expected, type(exc).__name__, exc)
        return [Decoded(None, f"decoder raised {type(exc).__name__}: {exc}") for _ in range(expected)]
    if len(batch) != expected:
        # a broken contract, not a crystal's failure: TypeError is not retried as one (SAMPLING_ERRORS)
        raise TypeError(f"model {model.name!r} decoded {len(batch)} crystals for a batch of {expected}")
    return batch
