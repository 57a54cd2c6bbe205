"""Fixtures of SymmCD's tests: a tiny prototype dataset and a small model trained on it (once per session)."""

from __future__ import annotations

import pytest
import torch
from symmcd_testdata import load_small_config, prototype_crystals, train_small_model

from crystalgen_symmcd.model import SymmCD


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
    """The small preset's model trained on the prototype crystals (symmcd_testdata.train_small_model), once."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = train_small_model(prototype_items)
    torch.set_num_threads(old_threads)
    return model
