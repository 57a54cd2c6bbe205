"""Per-crystal features that are slow to compute (fingerprints, space groups, Wyckoff templates), run in workers.

Crystals travel to workers in a compact form, ``(lattice (3, 3) rows = vectors in Angstrom, atomic numbers (N,),
fractional coordinates (N, 3))``, which pickles ~10x faster than a pymatgen Structure. A failure on one crystal
gives None for that feature and never stops the batch.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition, Element, Lattice, Structure

CompactCrystal = tuple[np.ndarray, np.ndarray, np.ndarray]

# spglib's C code prints "ssm_get_exact_positions failed" and the like for every hard cell unless told not to;
# a failed analysis is handled (P1, no template), so the message is noise in thousands of lines of output.
os.environ.setdefault("SPGLIB_WARNING", "OFF")


@dataclass(frozen=True)
class FeatureRequest:
    """Which features to compute; a symprec of None skips that feature."""

    fingerprints: bool = False  # CrystalNN structure fingerprint + raw Magpie composition fingerprint
    fingerprint_backend: str = "fast"  # 'fast' (crystalgen.metrics.crystalnn) or 'matminer' (the reference)
    spacegroup_symprec: float | None = None  # Angstrom, spglib through SpacegroupAnalyzer
    template_symprec: float | None = None  # Angstrom, refinement before pyxtal's Wyckoff assignment


def compact(structure: Structure) -> CompactCrystal:
    return (
        np.asarray(structure.lattice.matrix, dtype=np.float64),
        np.asarray(structure.atomic_numbers, dtype=np.int64),
        np.asarray(structure.frac_coords, dtype=np.float64).reshape(-1, 3),
    )


def rebuild(crystal: CompactCrystal) -> Structure:
    lattice, numbers, frac = crystal
    return Structure(Lattice(lattice), [Element.from_Z(int(z)) for z in numbers], frac)


def _matminer_sites(crystal: CompactCrystal, sites: list[int]) -> np.ndarray:
    from crystalgen.metrics.fingerprints import site_fingerprints

    return site_fingerprints(rebuild(crystal), sites)


def _matminer_shells(crystal: CompactCrystal, requests: list) -> list[np.ndarray | None]:
    from crystalgen.metrics.fingerprints import shell_order_parameters

    return shell_order_parameters(rebuild(crystal), requests)


def _fast_fingerprints(crystals: Sequence[CompactCrystal]) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """(structure, raw composition) fingerprints of a batch, the fast way (crystalnn and magpie modules)."""
    from crystalgen.metrics.crystalnn.fingerprint import crystalnn_fingerprints
    from crystalgen.metrics.magpie import element_amounts, magpie_fingerprints

    structure = crystalnn_fingerprints(crystals, _matminer_sites, _matminer_shells)
    composition = magpie_fingerprints([element_amounts(numbers) for _, numbers, _ in crystals])
    return list(zip(structure, composition, strict=True))


def _features(crystal: CompactCrystal, request: FeatureRequest,
              fingerprints: tuple[np.ndarray | None, np.ndarray] | None = None) -> dict:
    """Features of one crystal; ``fingerprints`` are its (structure, composition) fingerprints when already computed
    in a batch (the fast backend)."""
    from crystalgen.metrics.fingerprints import composition_fingerprint, structure_fingerprint
    from crystalgen.metrics.symmetry import spacegroup_number
    from crystalgen.metrics.templates import wyckoff_template

    out: dict = {}
    if request.fingerprints:
        try:
            if fingerprints is not None:
                out["struct_fp"], out["comp_fp"] = fingerprints
            else:
                out["struct_fp"] = structure_fingerprint(rebuild(crystal))
                counts = Counter(Element.from_Z(int(z)).symbol for z in crystal[1])
                out["comp_fp"] = composition_fingerprint(Composition(counts))
            if out["struct_fp"] is None:
                raise ValueError("no CrystalNN fingerprint")
        except Exception:  # noqa: BLE001 - CDVAE: a crystal whose fingerprint fails is invalid, not an error
            out["struct_fp"] = out["comp_fp"] = None
    if request.spacegroup_symprec is not None or request.template_symprec is not None:
        structure = rebuild(crystal)
        if request.spacegroup_symprec is not None:
            out["spacegroup"] = spacegroup_number(structure, request.spacegroup_symprec)
        if request.template_symprec is not None:
            out["template"] = wyckoff_template(structure, request.template_symprec)
    return out


def compute_chunk(items: Sequence[tuple[CompactCrystal, FeatureRequest]]) -> list[dict]:
    """Worker entry point: the requested features of each ``(crystal, request)`` of a chunk."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spglib deprecations, CrystalNN/matminer notices: one per crystal
        fast = [i for i, (_, r) in enumerate(items) if r.fingerprints and r.fingerprint_backend == "fast"]
        batch: list[tuple | None] = [None] * len(items)
        for i, fps in zip(fast, _fast_fingerprints([items[i][0] for i in fast]), strict=True):
            batch[i] = fps  # one batch: the order parameters of all its sites are computed together
        return [_features(crystal, request, fps) for (crystal, request), fps in zip(items, batch, strict=True)]
