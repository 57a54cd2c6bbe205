"""Fixtures of GemsDiff's tests: the small preset, and a small model trained briefly on the conformance crystals."""

from __future__ import annotations

import pytest
import torch
from gemsdiff_testdata import small_config

from crystalgen import collate
from crystalgen.testing import check_crystals
from crystalgen_gemsdiff.model import GemsDiff

TRAIN_STEPS = 60


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: far faster for these tiny graphs on a shared machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def items():
    transform = GemsDiff.transform(small_config().model)
    return [transform(s) for s in check_crystals()]


@pytest.fixture(scope="session")
def trained(items):
    """(model, losses before, losses after): the small preset trained TRAIN_STEPS full-batch Adam steps; the losses
    are the mean training loss over 8 fixed seeds (the level t and the noise are random)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GemsDiff(small_config().model)
    model.fit_statistics(items)
    batch = collate(items)

    def fixed_loss() -> float:
        with torch.no_grad():
            values = []
            for seed in range(8):
                torch.manual_seed(seed)
                values.append(float(model.training_loss(batch)["loss"]))
        return sum(values) / len(values)

    before = fixed_loss()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for step in range(TRAIN_STEPS):
        torch.manual_seed(100 + step)
        loss = model.training_loss(batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
    model.eval()
    after = fixed_loss()
    torch.set_num_threads(old)
    return model, before, after
