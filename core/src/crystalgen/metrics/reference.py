"""Features of a reference (or training) split, computed once and cached on disk per split content.

The reference side of every metric is the same for every model evaluated against a split, and it is the slow side
(9,046 MP-20 test crystals ~ 95,000 CrystalNN site fingerprints), so it is cached: see cache.py for the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from importlib.metadata import version

import numpy as np
from pymatgen.core import Structure

from crystalgen.metrics.bulk import densities, num_elements
from crystalgen.metrics.cache import ArrayCache, structures_digest
from crystalgen.metrics.crystal_features import FeatureRequest, compact, compute_chunk
from crystalgen.metrics.fingerprints import (
    COMPOSITION_FP_DIM,
    DEFAULT_FINGERPRINT_BACKEND,
    STRUCTURE_FP_DIM,
    featuriser_version,
)
from crystalgen.metrics.parallel import MIN_ITEMS_PER_WORKER, WorkerPool, map_chunks

#: Items per worker below which the fast features run in the calling process. A worker spends ~2.5 CPU s importing
#: pymatgen and matminer before its first crystal; the fast fingerprint takes ~5 ms per MP-20 crystal, so a worker
#: only pays for itself (in wall time, on two cores) from a few hundred crystals (docs/benchmarks.md, "Evaluation
#: speed").
FAST_ITEMS_PER_WORKER = 256


def compute_features(
    structures: Sequence[Structure],
    requests: FeatureRequest | Sequence[FeatureRequest],
    *,
    workers: int | None = None,
    pool: WorkerPool | None = None,
    progress: bool = True,
    desc: str = "",
) -> list[dict]:
    """Slow per-crystal features of ``structures`` (one request for all, or one each) in worker processes."""
    if isinstance(requests, FeatureRequest):
        requests = [requests] * len(structures)
    # Slow per-crystal work goes out in small chunks (even load, live progress); the fast fingerprint batches the
    # order parameters of a chunk's sites, so it wants larger ones.
    slow = any((r.fingerprints and r.fingerprint_backend == "matminer") or r.template_symprec is not None
               for r in requests)
    return map_chunks(
        compute_chunk,
        [(compact(s), r) for s, r in zip(structures, requests, strict=True)],
        workers=workers,
        pool=pool,
        desc=desc,
        progress=progress,
        chunk_size=8 if slow else 64,
        min_items_per_worker=MIN_ITEMS_PER_WORKER if slow else FAST_ITEMS_PER_WORKER,
    )


def stack_fingerprints(features: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(structure fps (n, 61), raw composition fps (n, 132)); NaN rows where the fingerprint failed."""
    struct = np.full((len(features), STRUCTURE_FP_DIM), np.nan)
    comp = np.full((len(features), COMPOSITION_FP_DIM), np.nan)
    for i, f in enumerate(features):
        if f.get("struct_fp") is not None:
            struct[i] = f["struct_fp"]
            comp[i] = f["comp_fp"]
    return struct, comp


class ReferenceSet:
    """A list of reference Structures with cached slow features (fingerprints, space groups, templates, property)."""

    def __init__(
        self,
        structures: Sequence[Structure],
        *,
        name: str = "reference",
        workers: int | None = None,
        progress: bool = True,
        cache: ArrayCache | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        self.structures = list(structures)
        self.name = name
        self.workers = workers
        self.pool = pool  # evaluate() lends its pool here for the duration of a call
        self.progress = progress
        self.cache = cache if cache is not None else ArrayCache()
        self.fingerprint_backend = DEFAULT_FINGERPRINT_BACKEND  # evaluate() sets the one of its options
        self._fingerprints: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.structures)

    @cached_property
    def digest(self) -> str:
        return structures_digest(self.structures)

    def _cached(self, kind: str, params: dict, compute) -> dict[str, np.ndarray]:
        key = self.cache.key(kind, self.digest, params)
        arrays = self.cache.load(key)
        if arrays is None:
            arrays = compute()
            try:
                self.cache.save(key, arrays)
            except OSError as exc:  # a read-only cache must not stop the evaluation
                import warnings

                warnings.warn(f"could not write the metrics cache {self.cache.directory}: {exc}", stacklevel=2)
        return arrays

    def _features(self, request: FeatureRequest, desc: str) -> list[dict]:
        return compute_features(
            self.structures, request, workers=self.workers, pool=self.pool, progress=self.progress, desc=desc
        )

    @property
    def fingerprints(self) -> tuple[np.ndarray, np.ndarray]:
        """(CrystalNN structure fps, raw Magpie composition fps), NaN rows where CrystalNN failed.

        Computed with ``self.fingerprint_backend``, cached on disk per backend and in memory per backend.
        """
        backend = self.fingerprint_backend
        if backend not in self._fingerprints:

            def compute():
                request = FeatureRequest(fingerprints=True, fingerprint_backend=backend)
                struct, comp = stack_fingerprints(self._features(request, f"{self.name} fingerprints"))
                return {"struct": struct, "comp": comp}

            arrays = self._cached("fingerprints", {"featuriser": featuriser_version(backend)}, compute)
            self._fingerprints[backend] = (arrays["struct"], arrays["comp"])
        return self._fingerprints[backend]

    def spacegroups(self, symprec: float) -> np.ndarray:
        def compute():
            features = self._features(FeatureRequest(spacegroup_symprec=symprec), f"{self.name} space groups")
            return {"spacegroup": np.array([f["spacegroup"] for f in features], dtype=np.int64)}

        params = {"symprec": symprec, "spglib": version("spglib"), "pymatgen": version("pymatgen")}
        return self._cached("spacegroups", params, compute)["spacegroup"]

    def templates(self, symprec: float) -> list[str | None]:
        def compute():
            features = self._features(FeatureRequest(template_symprec=symprec), f"{self.name} Wyckoff templates")
            return {"template": np.array([f["template"] or "" for f in features], dtype=str)}

        params = {"symprec": symprec, "spglib": version("spglib"), "pyxtal": version("pyxtal")}
        return [t or None for t in self._cached("templates", params, compute)["template"].tolist()]

    def properties(self, predictor) -> np.ndarray:
        """Predicted property of every reference crystal.

        Cached when the predictor names its weights and pipeline (``cache_identity``, see metrics/properties.py);
        a predictor without one is run every time rather than risk a stale value.
        """

        def compute():
            values = predictor.predict_reference(self.structures) if hasattr(predictor, "predict_reference") \
                else predictor.predict(self.structures)
            return {"property": np.asarray(values, dtype=np.float64).reshape(-1)}

        identity = getattr(predictor, "cache_identity", None)
        if not identity:
            return compute()["property"]
        return self._cached("property", {"predictor": predictor.name, "identity": identity}, compute)["property"]

    @cached_property
    def densities(self) -> np.ndarray:
        """Mass densities in g/cm^3 (cheap: not cached)."""
        return densities(self.structures)

    @cached_property
    def num_elements(self) -> np.ndarray:
        return np.array([num_elements(s) for s in self.structures], dtype=np.float64)
