"""Wyckoff templates (SymmCD section 5.1, Table 1).

A crystal's template is its space group plus the multiset of occupied Wyckoff positions, element identities
ignored (e.g. ``225:4a,4b,8c``). As in SymmCD's code, the structure is first refined by spglib (SpacegroupAnalyzer,
symprec 0.1 Angstrom), then pyxtal assigns the Wyckoff positions (``from_seed`` at its default tolerance).
Reported: the number of unique generated templates, the percentage of those that occur in the training set, and
the number that do not (new templates).
"""

from __future__ import annotations

from collections.abc import Iterable

from pymatgen.core import Structure

from crystalgen.metrics.symmetry import SYMPREC


def wyckoff_template(structure: Structure, symprec: float = SYMPREC) -> str | None:
    """``"<space group>:<multiplicity><letter>,..."`` (positions sorted), or None when the analysis fails."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from pyxtal import pyxtal

    try:
        refined = SpacegroupAnalyzer(structure, symprec=symprec).get_refined_structure()
        crystal = pyxtal()
        crystal.from_seed(refined)
        positions = sorted((site.wp.multiplicity, site.wp.letter) for site in crystal.atom_sites)
        return f"{crystal.group.number}:" + ",".join(f"{m}{letter}" for m, letter in positions)
    except Exception:  # noqa: BLE001 - spglib/pyxtal fail on degenerate cells: no template
        return None


def template_statistics(generated: Iterable[str | None], train: Iterable[str | None]) -> dict[str, float | int]:
    """templates_unique, templates_in_train_pct (of the unique ones), templates_new, and the counts behind them."""
    generated = [t for t in generated if t is not None]
    unique = set(generated)
    train_set = {t for t in train if t is not None}
    in_train = len(unique & train_set)
    return {
        "templates_unique": len(unique),
        "templates_in_train_pct": 100.0 * in_train / len(unique) if unique else float("nan"),
        "templates_new": len(unique - train_set),
        "templates_n": len(generated),
        "train_templates_unique": len(train_set),
    }
