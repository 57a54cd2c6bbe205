"""Fixtures of GemsDiff's tests: the small preset, and a small model trained briefly on the conformance crystals."""

from __future__ import annotations

import pytest
import torch
from gemsdiff_testdata import small_config, train_briefly

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
    """(model, losses before, losses after): the small preset trained TRAIN_STEPS full-batch Adam steps."""
    torch.manual_seed(0)
    model = GemsDiff(small_config().model)
    model.fit_statistics(items)
    before, after = train_briefly(model, items, TRAIN_STEPS)
    return model, before, after
