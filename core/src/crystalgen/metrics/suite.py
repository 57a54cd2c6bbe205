"""``evaluate``: every generation metric of the five papers on one list of generated crystals.

Order of work (CDVAE's protocol unless noted, see docs/metrics.md):
1. validity of every sample (structure, composition; failed decodes and unreadable entries are invalid);
2. slow per-crystal features in worker processes: CrystalNN/Magpie fingerprints of every buildable sample,
   space groups and Wyckoff templates of the structurally valid ones; the reference side comes from the cache;
3. a crystal whose fingerprint fails is invalid (CDVAE); ``n_property_samples`` valid crystals are drawn (seeded);
4. coverage over all samples, diversity and property statistics over the draw, d_sg, templates;
5. the learned metrics: the Frechet distance (all buildable samples, as GemsDiff),
   then S.U.N. (slow; a seeded draw of buildable samples, valid or not, as SymmCD).
metrics.json is written (status partial) after stage 3 and after each metric, so a killed evaluation keeps what it
computed. A metric that cannot run (missing input, missing predictor, an error inside it) is reported as
``<metric>_unavailable: <reason>`` and the others still run. A crystal that a graph-building metric (wdist_prop,
fcd, sun) skips because its graph alone would exceed the memory budget (crystalgen.resources.memory_budget) is
left out as a crystal the model cannot handle, counted as ``<metric>_n_refused`` with the first reason, and named
with its reason in per_sample.csv's ``refused`` column.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from crystalgen.metrics.bulk import density, num_elements
from crystalgen.metrics.cache import structures_digest
from crystalgen.metrics.coverage import cov_cutoffs, coverage, mean_pairwise_distance
from crystalgen.metrics.crystal_features import FeatureRequest
from crystalgen.metrics.fingerprints import standardise_composition_fingerprints
from crystalgen.metrics.invalid_detail import invalidity_detail
from crystalgen.metrics.memory import refusal_summary
from crystalgen.metrics.options import EvaluationOptions, resolve_metrics
from crystalgen.metrics.parallel import WorkerPool
from crystalgen.metrics.reference import ReferenceSet, compute_features, stack_fingerprints
from crystalgen.metrics.report import write_outputs
from crystalgen.metrics.statistics import draw_subset, wasserstein
from crystalgen.metrics.symmetry import PAPER_REFERENCE_SYMPREC, spacegroup_distance
from crystalgen.metrics.templates import template_statistics
from crystalgen.metrics.validity import REASONS, sample_validity

log = logging.getLogger(__name__)

#: One metric's entries of metrics.json.
Result = dict[str, float | int | str]
#: Everything metrics.json records: the metrics' entries and the caller's annotations, as given.
Record = dict[str, object]
#: Positions of samples: a list, a range or an index array.
Indices = Sequence[int] | np.ndarray
# Reasons under which a sample's structure can still be built (CDVAE fingerprints those too).
_BUILDABLE = {None, "overlapping_atoms", "not_charge_balanced"}


class _Unavailable(Exception):
    """A metric cannot be computed for a stated reason (its message)."""


def _optional_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise _Unavailable(f"{name} is not available in this installation ({exc})") from exc


def _predict_with_reasons(predictor, structures: Sequence[Structure]) -> tuple[np.ndarray, list[str]]:
    """Values and refusal reasons; a plugin's predictor without ``predict_with_reasons`` refuses nothing."""
    if hasattr(predictor, "predict_with_reasons"):
        values, reasons = predictor.predict_with_reasons(structures)
        return np.asarray(values, dtype=np.float64), list(reasons)
    return np.asarray(predictor.predict(structures), dtype=np.float64), [""] * len(structures)


def _as_reference(structures, name: str, workers, progress) -> ReferenceSet:
    if isinstance(structures, ReferenceSet):
        return structures
    return ReferenceSet(structures, name=name, workers=workers, progress=progress)


class _Evaluation:
    """State shared by the stages of one ``evaluate`` call."""

    def __init__(self, samples, failures, reference: ReferenceSet, train: ReferenceSet | None, opts, reference_name,
                 workers, progress, out_dir, sample_ids):
        self.samples: list[Structure | None] = list(samples)
        self.failures = list(failures) if failures is not None else [None] * len(self.samples)
        if len(self.failures) != len(self.samples):
            raise ValueError(f"failures has {len(self.failures)} entries for {len(self.samples)} samples")
        self.ids = [str(i) for i in (sample_ids if sample_ids is not None else range(len(self.samples)))]
        self.reference = reference
        self.train = train
        self.opts: EvaluationOptions = opts
        self.reference_name = reference_name
        self.pool = WorkerPool(workers)
        self.progress = progress
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.result: Record = {}
        self.features: list[dict] = [{} for _ in self.samples]
        self.refused: list[dict[str, str]] = [{} for _ in self.samples]  # metric -> why it skipped the sample

    # -- stage 1 and 2 ---------------------------------------------------------------------------------------
    def check_validity(self) -> None:
        self.checks = [sample_validity(s, f, self.opts.oxidation_states) for s, f in zip(self.samples, self.failures)]

    def _is_the_reference(self) -> bool:
        """True when the samples are the reference split itself (ground-truth runs): reuse its cached features."""
        present = [s for s in self.samples if s is not None]
        if len(present) != len(self.samples) or len(present) != len(self.reference):
            return False
        return structures_digest(present) == self.reference.digest

    def compute_features(self, wanted: Sequence[str]) -> None:
        fingerprints = "coverage" in wanted or "diversity" in wanted
        spacegroups = "d_sg" in wanted
        templates = "templates" in wanted and self.train is not None
        self.fingerprinted = fingerprints
        if fingerprints and self._is_the_reference():
            struct, comp = self.reference.fingerprints
            for i, check in enumerate(self.checks):
                if check.reason in _BUILDABLE and np.isfinite(struct[i]).all():
                    self.features[i].update(struct_fp=struct[i], comp_fp=comp[i])
                elif check.reason in _BUILDABLE:
                    self.features[i].update(struct_fp=None, comp_fp=None)
            fingerprints = False  # taken from the reference cache
        elif fingerprints and "coverage" in wanted:
            # The reference first: a large one starts the workers, which the generated crystals then share instead
            # of being computed here next to them (each process pays the pymatgen/matminer imports once).
            self.reference.fingerprints  # noqa: B018 - computed (or read from the cache) now, used by coverage
        todo: list[int] = []
        todo_structures: list[Structure] = []
        requests: list[FeatureRequest] = []
        for i, (sample, check) in enumerate(zip(self.samples, self.checks)):
            request = FeatureRequest(
                fingerprints=fingerprints and check.reason in _BUILDABLE,
                fingerprint_backend=self.opts.fingerprint_backend,
                spacegroup_symprec=self.opts.symprec if spacegroups and check.struct_valid else None,
                template_symprec=self.opts.symprec if templates and check.struct_valid else None,
            )
            if request != FeatureRequest() and sample is not None:  # a request implies a structure (buildable)
                todo.append(i)
                todo_structures.append(sample)
                requests.append(request)
        computed = compute_features(
            todo_structures, requests, pool=self.pool, progress=self.progress, desc="generated crystals"
        )
        for i, features in zip(todo, computed):
            self.features[i].update(features)

    # -- stage 3 ---------------------------------------------------------------------------------------------
    def settle_validity(self) -> None:
        """Reasons and rates; with fingerprints, a valid sample whose fingerprint failed becomes invalid (CDVAE)."""
        self.reasons = [c.reason for c in self.checks]
        if self.fingerprinted:
            for i, reason in enumerate(self.reasons):
                if reason is None and self.features[i].get("struct_fp") is None:
                    self.reasons[i] = "fingerprint_failed"
        n = len(self.samples)
        self.valid = np.array([r is None for r in self.reasons], dtype=bool)
        struct = np.array([c.struct_valid for c in self.checks], dtype=bool)
        comp = np.array([c.comp_valid for c in self.checks], dtype=bool)
        counts = Counter(r for r in self.reasons if r is not None)
        self.result.update({
            "n_samples": n,
            "struct_valid": float(struct.mean()) if n else float("nan"),
            "comp_valid": float(comp.mean()) if n else float("nan"),
            "valid": float(self.valid.mean()) if n else float("nan"),
            "n_struct_valid": int(struct.sum()),
            "n_comp_valid": int(comp.sum()),
            "n_valid": int(self.valid.sum()),
            "comp_valid_oxidation_states": self.opts.oxidation_states,
        })
        self.result.update({f"n_invalid_{reason}": int(counts.get(reason, 0)) for reason in REASONS})
        self.subset = draw_subset(np.flatnonzero(self.valid), self.opts.n_property_samples, self.opts.seed)

    # -- stage 4 ---------------------------------------------------------------------------------------------
    def _generated_fingerprints(self, indices: Indices) -> tuple[np.ndarray, np.ndarray]:
        struct, comp = stack_fingerprints([self.features[i] for i in indices])
        ok = np.isfinite(struct).all(axis=1)
        return struct[ok], standardise_composition_fingerprints(comp[ok])

    def coverage(self) -> Result:
        struct_cut, comp_cut = cov_cutoffs(self.reference_name, self.opts.cov_cutoffs)
        ref_struct, ref_comp = self.reference.fingerprints
        ok = np.isfinite(ref_struct).all(axis=1)
        gen_struct, gen_comp = self._generated_fingerprints(range(len(self.samples)))
        out: Result = dict(coverage(gen_struct, gen_comp, ref_struct[ok], standardise_composition_fingerprints(ref_comp[ok]),
                                    struct_cut, comp_cut, n_generated=len(self.samples)))
        cutoff_set = self.opts.cov_cutoffs if isinstance(self.opts.cov_cutoffs, str) else "custom"
        out.update({"cov_n": len(self.samples), "cov_n_fingerprints": len(gen_struct), "cov_reference_n": int(ok.sum()),
                    "cov_struct_cutoff": struct_cut, "cov_comp_cutoff": comp_cut, "cov_cutoff_set": cutoff_set})
        return out

    def diversity(self) -> Result:
        struct, comp = self._generated_fingerprints(self.subset)
        return {"struct_div": mean_pairwise_distance(struct), "comp_div": mean_pairwise_distance(comp),
                "div_n": len(struct)}

    def wdist_density(self) -> Result:
        generated = [density(self.samples[i]) for i in self.subset]
        return {"wdist_density": wasserstein(generated, self.reference.densities), "wdist_density_n": len(generated)}

    def wdist_num_elems(self) -> Result:
        generated = [num_elements(self.samples[i]) for i in self.subset]
        return {"wdist_num_elems": wasserstein(generated, self.reference.num_elements),
                "wdist_num_elems_n": len(generated)}

    def wdist_prop(self, property_predictor: str | None, reference_properties) -> Result:
        properties = _optional_module("crystalgen.metrics.properties")
        name = property_predictor or (
            properties.default_predictor_for(self.reference_name, self.opts.predictor_options.get("models_dir"))
            if self.reference_name else None
        )
        if name is None:
            raise _Unavailable(f"no default property predictor for reference {self.reference_name!r}; "
                               "pass property_predictor (--property-predictor)")
        predictor = properties.get_predictor(name, **self.opts.predictor_options)
        generated, reasons = _predict_with_reasons(predictor, [self.samples[i] for i in self.subset])
        self._note_refusals("wdist_prop", self.subset, reasons)
        if reference_properties is not None:
            ref_values = np.asarray(reference_properties, dtype=np.float64).reshape(-1)
            source = "given"
        else:
            ref_values = self.reference.properties(predictor)
            source = "predicted"
        return {"wdist_prop": wasserstein(generated, ref_values), "wdist_prop_n": len(generated),
                "wdist_prop_reference_n": int(np.isfinite(ref_values).sum()), "wdist_prop_predictor": predictor.name,
                "wdist_prop_units": str(getattr(predictor, "units", "")), "wdist_prop_reference_source": source,
                **refusal_summary("wdist_prop", reasons)}

    def d_sg(self) -> Result:
        paper = self.opts.paper_protocol
        generated_idx = self.subset if paper else np.flatnonzero(self.valid)
        generated = [self.features[i]["spacegroup"] for i in generated_idx]
        ref_symprec = PAPER_REFERENCE_SYMPREC if paper else self.opts.symprec
        reference = self.reference.spacegroups(ref_symprec)
        return {"d_sg": spacegroup_distance(generated, reference, paper_protocol=paper), "d_sg_n": len(generated),
                "d_sg_reference_n": len(reference), "d_sg_symprec": self.opts.symprec,
                "d_sg_reference_symprec": ref_symprec, "d_sg_protocol": "symmcd_code" if paper else "crystalgen"}

    def templates(self) -> Result:
        if self.train is None:
            raise _Unavailable("Wyckoff templates need the training split (train= / --train NAME:train)")
        generated = [self.features[i].get("template") for i, c in enumerate(self.checks) if c.struct_valid]
        out: Result = dict(template_statistics(generated, self.train.templates(self.opts.symprec)))
        out["templates_train_n"] = len(self.train)
        return out

    # -- stage 5 ---------------------------------------------------------------------------------------------
    def _buildable(self) -> np.ndarray:
        return np.array([i for i, c in enumerate(self.checks) if c.reason in _BUILDABLE], dtype=np.int64)

    def fcd(self) -> Result:
        """GemsDiff computed its FAD on the generated crystals "without any filtering": every buildable sample."""
        frechet = _optional_module("crystalgen.metrics.frechet")
        buildable = self._buildable()
        reasons: list[str] = []
        out = dict(frechet.frechet_distance([self.samples[i] for i in buildable], self.reference.structures,
                                            progress=self.progress, refused=reasons))
        self._note_refusals("fcd", buildable, reasons)
        return out

    def sun(self) -> Result:
        """SymmCD draws 1,000 of the generated crystals, valid or not: the same seeded draw from buildable samples."""
        if self.train is None:
            raise _Unavailable("S.U.N. needs the training split for novelty (train= / --train NAME:train)")
        sun = _optional_module("crystalgen.metrics.sun")
        buildable = self._buildable()
        drawn = draw_subset(buildable, self.opts.n_property_samples, self.opts.seed + 1)
        options = {"progress": self.progress, **self.opts.sun_options}
        reasons: list[str] = []
        out = dict(sun.sun_metrics([self.samples[i] for i in drawn], self.reference.structures,
                                   self.train.structures, refused=reasons, **options))
        self._note_refusals("sun", drawn, reasons)
        out["sun_drawn_from_n"] = len(buildable)
        return out

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def _note_refusals(self, metric: str, indices: Indices, reasons: Sequence[str]) -> None:
        """Keep, per sample, why ``metric`` skipped it for the memory budget (per_sample.csv's ``refused``); no
        reasons at all means an implementation that refuses nothing."""
        for i, reason in zip(indices, reasons or [""] * len(indices), strict=True):
            if reason:
                self.refused[int(i)][metric] = reason

    def run_metric(self, name: str, fn: Callable[[], Result]) -> None:
        try:
            self.result.update(fn())
        except _Unavailable as exc:
            self.result[f"{name}_unavailable"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - one failing metric must not lose the others
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            log.warning("metric %s failed (%s: %s); the other metrics are kept", name, type(exc).__name__, first)
            log.debug("metric %s failed", name, exc_info=True)  # the traceback, for -v
            self.result[f"{name}_unavailable"] = f"failed: {type(exc).__name__}: {first}"

    def write(self, final: bool) -> None:
        if self.out_dir is None:
            return
        rows = [
            {"index": i, "id": self.ids[i], "struct_valid": c.struct_valid, "comp_valid": c.comp_valid,
             "valid": bool(self.valid[i]), "reason": self.reasons[i] or "", "detail": self._detail(i),
             "spacegroup": self.features[i].get("spacegroup", ""), "template": self.features[i].get("template") or "",
             "in_property_subset": i in self._subset_set,
             "refused": "; ".join(f"{metric}: {reason}" for metric, reason in self.refused[i].items())}
            for i, c in enumerate(self.checks)
        ]
        write_outputs(self.out_dir, self.result, rows, reference_name=self.reference_name, final=final)

    def _detail(self, i: int) -> str:
        """The reader's failure string, else what the validity checks found (never empty for an invalid sample)."""
        failure, reason = self.failures[i], self.reasons[i]
        if failure:
            return failure
        try:
            return invalidity_detail(self.samples[i], reason, self.opts.oxidation_states)
        except Exception as exc:  # noqa: BLE001 - a detail must not cost the results
            label = reason if reason is None else REASONS.get(reason, reason)
            return f"{label} (detail unavailable: {type(exc).__name__})"

    @property
    def _subset_set(self) -> set[int]:
        return set(int(i) for i in self.subset)


def evaluate(
    samples: Sequence[Structure | None],
    reference: Sequence[Structure] | ReferenceSet,
    *,
    train: Sequence[Structure] | ReferenceSet | None = None,
    metrics: Sequence[str] | str | None = None,
    reference_name: str | None = None,
    property_predictor: str | None = None,
    reference_properties: Sequence[float] | None = None,
    failures: Sequence[str | None] | None = None,
    out_dir: Path | str | None = None,
    workers: int | None = None,
    progress: bool = True,
    options: EvaluationOptions | Mapping | None = None,
    sample_ids: Sequence[str] | None = None,
    annotations: Mapping[str, object] | None = None,
) -> Record:
    """All requested metrics of generated ``samples`` against ``reference`` (flat dict; see docs/metrics.md).

    samples: generated crystals (Angstrom lattices, fractional coordinates); None = a failed decode, whose reason
        is ``failures[i]`` (``"<reason key>: detail"`` or free text, counted as decode_failed).
    reference: the reference split (e.g. the test set); its slow features are cached on disk.
    train: the training split, for Wyckoff templates and S.U.N. novelty.
    metrics: names or groups from crystalgen.metrics.options (default: all); validity always runs.
    reference_name: dataset name ('mp_20', 'perov_5', 'carbon_24' or 'mp_20:test'): selects COV cutoffs, the
        default property predictor and the published numbers in metrics.md.
    property_predictor / reference_properties: predictor name for wdist_prop, and optionally the reference's
        property values (default: predicted by the same model, as CDVAE does).
    out_dir: when given, metrics.json (after the fast metrics and again at the end), metrics.md and
        per_sample.csv are written there.
    workers: processes for the per-crystal work (default: the usable cores; 1 = in this process).
    sample_ids: names of the samples for per_sample.csv (default: their positions).
    annotations: extra keys recorded as given, e.g. provenance notes of the splits (a partial training file).
    """
    opts = EvaluationOptions.coerce(options)
    wanted = resolve_metrics(metrics)
    reference_set = _as_reference(reference, "reference", workers, progress)
    train_set = _as_reference(train, "train", workers, progress) if train is not None else None
    run = _Evaluation(samples, failures, reference_set, train_set, opts, reference_name, workers, progress, out_dir,
                      sample_ids)
    run.result["reference"] = reference_name or "reference"
    run.result["reference_n"] = len(reference_set)
    run.result.update(annotations or {})
    if train_set is not None:
        run.result["train_n"] = len(train_set)
    lent = [s for s in (reference_set, train_set) if s is not None and s.pool is None]
    for s in lent:
        s.pool = run.pool
    for split in (reference_set, train_set):
        if split is not None:
            split.fingerprint_backend = opts.fingerprint_backend
    finished = False
    try:
        _run_stages(run, wanted, property_predictor, reference_properties)
        finished = True
    finally:
        for s in lent:
            s.pool = None
        run.pool.close(wait=finished)
    return run.result


def _run_stages(run: _Evaluation, wanted: list[str], property_predictor, reference_properties) -> None:
    if "coverage" in wanted:  # fail fast, before any fingerprint is computed
        try:
            cov_cutoffs(run.reference_name, run.opts.cov_cutoffs)
        except ValueError as exc:
            run.result["coverage_unavailable"] = str(exc)
            wanted.remove("coverage")
    run.check_validity()
    run.compute_features(wanted)
    run.settle_validity()
    run.result["property_subset_n"] = len(run.subset)
    stages: dict[str, Callable[[], Result]] = {
        "coverage": run.coverage,
        "diversity": run.diversity,
        "wdist_density": run.wdist_density,
        "wdist_num_elems": run.wdist_num_elems,
        "wdist_prop": lambda: run.wdist_prop(property_predictor, reference_properties),
        "d_sg": run.d_sg,
        "templates": run.templates,
        "fcd": run.fcd,
        "sun": run.sun,
    }
    for name in wanted:
        if name == "validity":
            continue
        run.write(final=False)  # what is known so far survives a kill during this metric (e.g. out of memory)
        run.run_metric(name, stages[name])
    run.write(final=True)
