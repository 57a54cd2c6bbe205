"""Fixtures of the StructRepDiff tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: the tensors here are small, and on a shared 2-core machine two threads waiting for each
    other were measured over 10x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)
