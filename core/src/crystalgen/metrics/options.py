"""Options of the evaluation suite and the names of its metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

from crystalgen.metrics.composition_validity import DEFAULT_OXIDATION_STATES, check_oxidation_state_set
from crystalgen.metrics.coverage import COV_CUTOFF_SETS
from crystalgen.metrics.fingerprints import DEFAULT_FINGERPRINT_BACKEND, check_fingerprint_backend
from crystalgen.metrics.statistics import N_PROPERTY_SAMPLES
from crystalgen.metrics.symmetry import SYMPREC

#: Metric names accepted by ``evaluate(metrics=...)`` / ``--metrics``, in the order they run.
METRICS: tuple[str, ...] = (
    "validity",
    "coverage",
    "diversity",
    "wdist_density",
    "wdist_num_elems",
    "wdist_prop",
    "d_sg",
    "templates",
    "fcd",
    "sun",
)
#: Shorthands for groups of metrics.
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "all": METRICS,
    "cdvae": ("validity", "coverage", "diversity", "wdist_density", "wdist_num_elems", "wdist_prop"),
    "property_statistics": ("wdist_density", "wdist_num_elems", "wdist_prop"),
    "symmcd": ("d_sg", "templates", "sun"),
}
#: Metrics that run learned models (CHGNet embeddings, relaxations: minutes per thousand crystals); metrics.json
#: is written before each of them starts, so an interrupted run keeps the fast metrics.
SLOW_METRICS = frozenset({"fcd", "sun"})


def resolve_metrics(names: Sequence[str] | str | None) -> list[str]:
    """Expand groups, check names, keep the suite's order; None = all."""
    if names is None:
        return list(METRICS)
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    wanted: set[str] = set()
    for raw in names:
        name = raw.strip()
        if name in METRIC_GROUPS:
            wanted.update(METRIC_GROUPS[name])
        elif name in METRICS:
            wanted.add(name)
        else:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)} or a group ({', '.join(METRIC_GROUPS)})")
    return [m for m in METRICS if m in wanted]


@dataclass
class EvaluationOptions:
    """Protocol choices; the defaults reproduce CDVAE's code (and SymmCD's for d_sg, with documented fixes)."""

    oxidation_states: str = DEFAULT_OXIDATION_STATES  # 'smact14' (papers) or 'icsd24' (smact 4 default)
    cov_cutoffs: str | tuple[float, float] = "cdvae"  # a name of COV_CUTOFF_SETS or (struct, comp)
    n_property_samples: int = N_PROPERTY_SAMPLES  # valid crystals drawn for property statistics / diversity / S.U.N.
    seed: int = 0  # for that draw
    symprec: float = SYMPREC  # Angstrom, space groups and Wyckoff templates
    paper_protocol: bool = False  # d_sg exactly as SymmCD's script (229 bins, reference at symprec 0.01, subset)
    sun_options: dict = field(default_factory=dict)  # passed to crystalgen.metrics.sun.sun_metrics
    predictor_options: dict = field(default_factory=dict)  # passed to properties.get_predictor
    fingerprint_backend: str = DEFAULT_FINGERPRINT_BACKEND  # CrystalNN fingerprint: 'fast' or 'matminer' (reference)

    def __post_init__(self) -> None:
        check_oxidation_state_set(self.oxidation_states)
        check_fingerprint_backend(self.fingerprint_backend)
        if isinstance(self.cov_cutoffs, Sequence) and not isinstance(self.cov_cutoffs, str):
            self.cov_cutoffs = tuple(float(x) for x in self.cov_cutoffs)  # type: ignore[assignment]
            if len(self.cov_cutoffs) != 2:
                raise ValueError(f"cov_cutoffs must be a named set ({', '.join(COV_CUTOFF_SETS)}) or (struct_cutoff, comp_cutoff)")
        if self.n_property_samples < 1:
            raise ValueError("n_property_samples must be at least 1")

    @classmethod
    def coerce(cls, options: EvaluationOptions | Mapping | None) -> EvaluationOptions:
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        assert isinstance(options, Mapping)
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown evaluation option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**dict(options))
