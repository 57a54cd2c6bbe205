"""Generation in batches: request -> condition -> sampler loop -> decode, never crashing on a bad crystal."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import torch
from tqdm.auto import tqdm

from crystalgen.models.base import Decoded, GenerativeModel
from crystalgen.resources import memory_budget
from crystalgen.runner.budget import sampling_batch_size
from crystalgen.runner.distributed import autocast
from crystalgen.samplers.base import Sampler, SamplingModel
from crystalgen.state import SampleRequest

log = logging.getLogger("crystalgen.sample")
T = TypeVar("T")


@dataclass
class Generated:
    decoded: list[Decoded]
    seconds: float
    batches: int
    batch_size: int  # crystals per batch as run: the requested batch size, or fewer for the memory budget
    timings: dict[str, float] = field(default_factory=dict)


def per_crystal(value: T | Sequence[T] | None, count: int, what: str) -> list[T] | T | None:
    """One condition for all crystals, or exactly one per crystal (a list of ``count`` values)."""
    if value is None or not isinstance(value, (list, tuple)):
        return cast("T | None", value)
    if len(value) == 1:
        return value[0]
    if len(value) != count:
        raise ValueError(f"give one {what} for all crystals or exactly {count} (one per crystal), got {len(value)}")
    return list(value)


def generate(model: GenerativeModel, sampler: Sampler, num_samples: int, batch_size: int, *,
             spacegroup: int | list[int] | None = None, composition: str | list[str] | None = None,
             options: dict[str, Any] | None = None, seed: int = 0, precision: str = "fp32",
             show_progress: bool = True, budget: int | None = None) -> Generated:
    """Sample ``num_samples`` crystals in batches of ``batch_size`` on the model's device, or in smaller batches
    when a batch of the largest crystals the model can draw would exceed the memory budget (``budget`` bytes,
    default :func:`crystalgen.resources.memory_budget`); MemoryBudgetError when not even one crystal fits.

    Conditions are checked against the model before anything runs (UnsupportedRequestError). Crystals the
    decoder cannot build are returned with their reason; a batch whose sampling or decoding raises (e.g. NaN
    probabilities) fails only its own crystals, with the error as reason. Even when every batch fails the result
    comes back, so that the caller can write the reasons down before it reports the failure.
    """
    spacegroup = per_crystal(spacegroup, num_samples, "space group")
    composition = per_crystal(composition, num_samples, "composition")
    model.check_request(SampleRequest(num_samples, spacegroup=spacegroup, composition=composition, options=dict(options or {})))
    batch_size = sampling_batch_size(model, batch_size, memory_budget() if budget is None else budget)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    decoded: list[Decoded] = []
    timings = {"prepare": 0.0, "sampler": 0.0, "decode": 0.0}
    started = time.perf_counter()
    starts = list(range(0, num_samples, batch_size))
    bar = tqdm(total=num_samples, desc="sampling", unit="crystal", disable=not show_progress, dynamic_ncols=True)
    model.eval()
    for start in starts:
        stop = min(start + batch_size, num_samples)
        request = SampleRequest(
            stop - start,
            spacegroup=spacegroup[start:stop] if isinstance(spacegroup, list) else spacegroup,
            composition=composition[start:stop] if isinstance(composition, list) else composition,
            options=dict(options or {}),
        )
        try:
            with torch.no_grad(), autocast(device, precision):
                tick = time.perf_counter()
                condition = model.prepare_sampling(request)
                timings["prepare"] += time.perf_counter() - tick
                tick = time.perf_counter()
                state = sampler.run(cast(SamplingModel, model), condition, generator=generator, progress=_step_reporter(bar))
                timings["sampler"] += time.perf_counter() - tick
        except (RuntimeError, ValueError, FloatingPointError) as exc:  # e.g. NaN probabilities in a categorical step
            log.warning("sampling crystals %d-%d failed (%s: %s); continuing with the next batch",
                        start, stop - 1, type(exc).__name__, exc)
            decoded.extend(Decoded(None, f"sampling failed: {type(exc).__name__}: {exc}") for _ in range(start, stop))
            bar.update(stop - start)
            continue
        tick = time.perf_counter()
        decoded.extend(_decode(model, state, condition, stop - start))
        timings["decode"] += time.perf_counter() - tick
        bar.update(stop - start)
    bar.close()
    return Generated(decoded, time.perf_counter() - started, len(starts), batch_size, timings)


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
        raise RuntimeError(f"model {model.name!r} decoded {len(batch)} crystals for a batch of {expected}")
    return batch
