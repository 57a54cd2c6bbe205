"""Property-optimisation success rates SR5 / SR10 / SR15 (CDVAE section 4.3 and ``OptEval``).

Each optimisation start (a test crystal's latent code) yields several decoded crystals along its trajectory. The
valid decodes are scored by an independent property model; a start succeeds at level k when its best (lowest)
score is at or below the dataset's k-th percentile (5, 10, 15; CDVAE's fixed values, cdvae_constants.py). A start
without any valid decode fails. SR_k is the fraction of starts that succeed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from crystalgen.metrics.cdvae_constants import SR_PERCENTILES, canonical_dataset
from crystalgen.metrics.composition_validity import DEFAULT_OXIDATION_STATES
from crystalgen.metrics.validity import sample_validity


def success_rates(best: Sequence[float], percentiles: Sequence[float]) -> dict[str, float]:
    """SR5/SR10/SR15 from each start's best property (inf or NaN = no valid decode)."""
    values = np.asarray(best, dtype=np.float64)
    values = np.where(np.isnan(values), np.inf, values)
    return {f"SR{k}": float((values <= p).mean()) for k, p in zip((5, 10, 15), percentiles, strict=True)}


def optimization_success(
    decoded: Sequence[Sequence[Structure | None]],
    *,
    dataset: str | None = None,
    percentiles: Sequence[float] | None = None,
    property_predictor: str | None = None,
    properties: Sequence[Sequence[float]] | None = None,
    oxidation_states: str = DEFAULT_OXIDATION_STATES,
    predictor_options: dict | None = None,
) -> dict[str, float | int | str]:
    """SR5/SR10/SR15 of ``decoded[start][step]`` crystals (None = failed decode).

    Properties come from ``properties`` (same nesting, e.g. precomputed predictions) or from ``property_predictor``
    (a name for crystalgen.metrics.properties, built with ``predictor_options``; default: the dataset's default
    predictor). Percentiles default to CDVAE's values for ``dataset``.
    """
    if percentiles is None:
        key = canonical_dataset(dataset)
        if key is None:
            raise ValueError(f"no SR percentiles for dataset {dataset!r}; pass percentiles=(p5, p10, p15)")
        percentiles = SR_PERCENTILES[key]
    valid = [[s is not None and sample_validity(s, None, oxidation_states).reason is None for s in row] for row in decoded]
    result: dict[str, float | int | str] = {}
    if properties is None:
        from crystalgen.metrics.properties import default_predictor_for, get_predictor

        name = property_predictor or (
            default_predictor_for(dataset, (predictor_options or {}).get("models_dir")) if dataset else None)
        if name is None:
            raise ValueError(f"no property predictor for dataset {dataset!r}; pass property_predictor or properties")
        predictor = get_predictor(name, **(predictor_options or {}))
        flat = [s for row, ok in zip(decoded, valid) for s, v in zip(row, ok) if v and s is not None]  # valid: not None
        predictions = iter(np.asarray(predictor.predict(flat), dtype=np.float64).reshape(-1)) if flat else iter(())
        properties = [[next(predictions) if v else np.nan for v in ok] for ok in valid]
        result["SR_property_predictor"] = predictor.name
    best = [
        min((p for p, v in zip(row, ok) if v and np.isfinite(p)), default=np.inf) for row, ok in zip(properties, valid)
    ]
    result.update(success_rates(best, percentiles))
    result["SR_n"] = len(decoded)
    result["SR_n_valid_decodes"] = int(sum(sum(ok) for ok in valid))
    return result
