"""Fixtures shared by the core's, the plugins' and the cross-package tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def benchmark_data_root() -> Path | None:
    """$CRYSTALGEN_DATA when it points at a folder holding the CDVAE benchmark CSVs, else None."""
    root = os.environ.get("CRYSTALGEN_DATA")
    if not root:
        return None
    path = Path(root)
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder with <dataset>/<split>.csv; tests over real data skip cleanly without it."""
    root = benchmark_data_root()
    if root is None:
        pytest.skip("benchmark data not available: set CRYSTALGEN_DATA to a folder with perov_5/, carbon_24/, mp_20/")
    return root


def benchmark_csv(name: str, split: str) -> Path:
    """Path of one benchmark split, skipping the calling test when it is absent."""
    root = benchmark_data_root()
    path = root / name / f"{split}.csv" if root else None
    if path is None or not path.is_file():
        pytest.skip(f"{name}/{split}.csv not found under CRYSTALGEN_DATA")
    return path
