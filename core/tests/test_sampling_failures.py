"""A crystal whose sampling chain breaks fails alone: its batch is sampled again in halves, within a bounded cost,
and the random streams of the later batches are those of a run without the failure."""

from __future__ import annotations

import pytest
import torch

from crystalgen.models.base import Decoded
from crystalgen.runner.sampling import RETRY_FACTOR, confine_failures


class Chain:
    """A stand-in for sampling and decoding crystals a..b: it draws noise for each, as a sampler does, and raises
    as the neighbour search does on a collapsed cell when one of the ``bad`` crystals is in the batch."""

    def __init__(self, generator: torch.Generator, bad: set[int]) -> None:
        self.generator, self.bad, self.calls = generator, bad, []

    def __call__(self, a: int, b: int) -> list[Decoded]:
        self.calls.append((a, b))
        torch.randn(b - a, 3, generator=self.generator)
        broken = sorted(self.bad & set(range(a, b)))
        if broken:
            raise ValueError(f"crystal {broken[0] - a} of the batch has a singular or non-finite lattice")
        return [Decoded(None, f"crystal {i}") for i in range(a, b)]


def reasons(decoded: list[Decoded]) -> list[str | None]:
    return [d.reason for d in decoded]


def test_one_broken_crystal_fails_alone_and_the_rest_of_its_batch_is_sampled():
    chain = Chain(torch.Generator().manual_seed(0), bad={21})
    out = reasons(confine_failures(chain, 16, 32, chain.generator))
    assert out[:5] + out[6:] == [f"crystal {i}" for i in range(16, 32) if i != 21]
    assert out[5].startswith("sampling failed: ValueError: crystal 0 of the batch has a singular")
    # halves, breadth first, only the failing half split again: 16 + 8 + 8 + 4 + 4 + 2 + 2 + 1 + 1 crystals
    assert chain.calls == [(16, 32), (16, 24), (24, 32), (16, 20), (20, 24), (20, 22), (22, 24), (20, 21), (21, 22)]


def test_a_failure_every_crystal_shares_costs_at_most_the_retry_factor_more():
    chain = Chain(torch.Generator().manual_seed(0), bad=set(range(64)))
    out = confine_failures(chain, 0, 64, chain.generator)
    assert all(r.startswith("sampling failed: ValueError") for r in reasons(out))
    assert sum(b - a for a, b in chain.calls) == (1 + RETRY_FACTOR) * 64


def test_later_batches_draw_the_noise_of_a_run_without_retries():
    with_failure = Chain(torch.Generator().manual_seed(7), bad={3})
    confine_failures(with_failure, 0, 8, with_failure.generator)
    without = Chain(torch.Generator().manual_seed(7), bad=set())
    confine_failures(without, 0, 8, without.generator)
    assert len(with_failure.calls) > 1 and len(without.calls) == 1
    assert torch.equal(torch.randn(4, generator=with_failure.generator), torch.randn(4, generator=without.generator))


def test_a_broken_contract_is_not_retried_as_a_crystals_failure():
    calls = []

    def wrong_count(a: int, b: int) -> list[Decoded]:
        calls.append((a, b))
        raise TypeError("model 'm' decoded 3 crystals for a batch of 4")

    with pytest.raises(TypeError, match="decoded 3 crystals"):
        confine_failures(wrong_count, 0, 4, torch.Generator())
    assert calls == [(0, 4)]
