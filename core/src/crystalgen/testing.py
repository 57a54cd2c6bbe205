"""Helpers for a plugin's own tests (public, like the top-level ``crystalgen`` names).

* Exact denoisers for known targets (:mod:`crystalgen.samplers.analytic`): prove a sampler or a process against
  the truth, with no network.
* Conformance checks (:mod:`crystalgen.conformance`): hold every part a plugin registers to its kind's contract,
  e.g. ``check_plugin("crystalgen-my-model")`` in the plugin's own tests (docs/plugins.md, "Conformance"), and
  ``check_gradients_reach_parameters("my_model")`` for a model that must train under DistributedDataParallel.
* Benchmark data: tests over real data call these and skip cleanly when $CRYSTALGEN_DATA is unset or lacks the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from pymatgen.core import Structure

from crystalgen.conformance import (
    check_crystals,
    check_decoder,
    check_denoiser,
    check_encoder,
    check_gradients_reach_parameters,
    check_model,
    check_plugin,
    check_process,
    check_sampler,
    check_transform,
)
from crystalgen.samplers.analytic import AnalyticModel, Categorical, GaussianMixture, Target, WrappedNormalMixture

__all__ = ["AnalyticModel", "Categorical", "GaussianMixture", "Target", "WrappedNormalMixture", "benchmark_csv",
           "benchmark_data_root", "benchmark_structures", "check_crystals", "check_decoder", "check_denoiser",
           "check_encoder", "check_gradients_reach_parameters", "check_model", "check_plugin", "check_process",
           "check_sampler", "check_transform"]


def benchmark_data_root() -> Path | None:
    """$CRYSTALGEN_DATA when it names an existing folder, else None."""
    root = os.environ.get("CRYSTALGEN_DATA")
    return Path(root) if root and Path(root).is_dir() else None


def benchmark_csv(name: str, split: str) -> Path:
    """Path of ``<name>/<split>.csv``; skips the calling test when it is absent."""
    import pytest

    root = benchmark_data_root()
    path = root / name / f"{split}.csv" if root else None
    if path is None or not path.is_file():
        pytest.skip(f"{name}/{split}.csv not found under CRYSTALGEN_DATA")
    return path


def benchmark_structures(name: str, split: str, n: int | None = None, seed: int = 0) -> list[tuple[str, Structure]]:
    """``(material_id, Structure)`` pairs from a benchmark split: all rows, or ``n`` drawn reproducibly."""
    import pandas as pd

    frame = pd.read_csv(benchmark_csv(name, split), usecols=["material_id", "cif"])
    if n is not None and n < len(frame):
        frame = frame.sample(n=n, random_state=seed)
    return [(str(mid), Structure.from_str(cif, fmt="cif")) for mid, cif in zip(frame["material_id"], frame["cif"])]
