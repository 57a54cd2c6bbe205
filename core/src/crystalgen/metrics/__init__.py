"""One implementation of the crystal-generation metrics, shared by every model (see docs/metrics.md).

    from crystalgen.metrics import evaluate, read_samples
    structures, failures, ids = read_samples("samples/")
    metrics = evaluate(structures, reference, train=train, reference_name="mp_20", failures=failures, out_dir="out/")

The names below are imported on first use, so that importing a submodule (e.g. crystalgen.metrics.properties)
does not load scipy, pymatgen's analysis modules and the whole suite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "evaluate": "crystalgen.metrics.suite",
    "reconstruction": "crystalgen.metrics.reconstruction",
    "optimization_success": "crystalgen.metrics.optimization",
    "csp_metrics": "crystalgen.metrics.csp",
    "read_samples": "crystalgen.metrics.samples",
    "ReferenceSet": "crystalgen.metrics.reference",
    "EvaluationOptions": "crystalgen.metrics.options",
    "METRICS": "crystalgen.metrics.options",
    "METRIC_GROUPS": "crystalgen.metrics.options",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from crystalgen.metrics.csp import csp_metrics
    from crystalgen.metrics.optimization import optimization_success
    from crystalgen.metrics.options import METRIC_GROUPS, METRICS, EvaluationOptions
    from crystalgen.metrics.reconstruction import reconstruction
    from crystalgen.metrics.reference import ReferenceSet
    from crystalgen.metrics.samples import read_samples
    from crystalgen.metrics.suite import evaluate


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'crystalgen.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
