"""Fixtures shared by the core's, the plugins' and the cross-package tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystalgen.testing import benchmark_data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder with <dataset>/<split>.csv; tests over real data skip cleanly without it."""
    root = benchmark_data_root()
    if root is None:
        pytest.skip("benchmark data not available: set CRYSTALGEN_DATA to a folder with perov_5/, carbon_24/, mp_20/")
    return root
