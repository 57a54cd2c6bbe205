"""One implementation of the crystal-generation metrics, shared by every model (see docs/metrics.md).

    from crystalgen.metrics import evaluate, read_samples
    structures, failures, ids = read_samples("samples/")
    metrics = evaluate(structures, reference, train=train, reference_name="mp_20", failures=failures, out_dir="out/")
"""

from crystalgen.metrics.optimization import optimization_success
from crystalgen.metrics.options import METRIC_GROUPS, METRICS, EvaluationOptions
from crystalgen.metrics.reconstruction import reconstruction
from crystalgen.metrics.reference import ReferenceSet
from crystalgen.metrics.samples import read_samples
from crystalgen.metrics.suite import evaluate

__all__ = [
    "METRICS",
    "METRIC_GROUPS",
    "EvaluationOptions",
    "ReferenceSet",
    "evaluate",
    "optimization_success",
    "read_samples",
    "reconstruction",
]
