"""Fixtures of SymmCD's tests: a tiny prototype dataset and a small model trained on it (once per session)."""

from __future__ import annotations

import pytest
import torch
from symmcd_testdata import load_small_config, prototype_crystals

from crystalgen.data.crystal import collate
from crystalgen_symmcd.model import SymmCD

TRAIN_STEPS = 150


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: these tiny models are far faster so, and on a shared machine two threads that wait
    for each other were measured 20x slower (0.06 s vs 1.3 s per training step)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def small_config():
    """The small preset (a fresh copy per test)."""
    return load_small_config()


@pytest.fixture(scope="session")
def prototype_items():
    transform = SymmCD.transform(load_small_config().model)
    return [transform(s) for s in prototype_crystals()]


@pytest.fixture(scope="session")
def trained_model(prototype_items):
    """The small preset's model trained for TRAIN_STEPS steps on the prototype crystals (batch 32, Adam 1e-3)."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SymmCD(load_small_config().model)
    model.fit_statistics(prototype_items)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(TRAIN_STEPS):
        order = torch.randperm(len(prototype_items), generator=generator)[:32]
        loss = model.training_loss(collate([prototype_items[i] for i in order]))["loss"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        optimiser.step()
    model.eval()
    torch.set_num_threads(old_threads)
    return model
