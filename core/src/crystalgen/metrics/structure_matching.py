"""The StructureMatcher comparison shared by reconstruction and crystal structure prediction (CDVAE appendix G.1,
DiffCSP section 4.1): the same tolerances and the same "a matcher failure is no match" rule.

Its own module so that importing it never shadows the lazily exported functions of ``crystalgen.metrics`` (importing
a submodule sets the package attribute of the same name).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from crystalgen.metrics.crystal_features import CompactCrystal, rebuild

MATCHER_TOLERANCES = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}


def rms_chunk(pairs: Sequence[tuple[CompactCrystal, CompactCrystal]], tolerances: dict) -> list[float | None]:
    """Worker: normalised RMS displacement of each matching pair, None when StructureMatcher finds no match."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(**tolerances)
    out: list[float | None] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for pred, true in pairs:
            try:
                rms = matcher.get_rms_dist(rebuild(pred), rebuild(true))
            except Exception:  # noqa: BLE001 - CDVAE counts a matcher failure as "no match"
                rms = None
            out.append(None if rms is None else float(rms[0]))
    return out
