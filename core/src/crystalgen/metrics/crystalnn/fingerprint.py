"""matminer's ``CrystalNNFingerprint.from_preset("ops")``, averaged over the sites of each crystal, for a batch.

Per site: Voronoi faces (voronoi.py) -> CrystalNN coordination shells and probabilities (weights.py) -> for each
coordination number cn in 1..24, the feature "wt" = P(cn) and, for the motifs of that cn, P(cn) * order parameter
of the cn nearest-by-weight neighbours (order_parameters.py, evaluated for all shells of one size in the batch at
once). The layout and motif parameters are read from matminer's own preset, so the columns are matminer's.

A site whose shells this cannot reproduce exactly (voronoi.py, weights.py: a degenerate cell, a weight on a rounding
boundary) is computed by matminer instead; where only some order parameters are in doubt (order_parameters.py: an
angle on a threshold, an order-dependent motif whose value depends on the order of neighbours of equal weight),
the shell fallback asks matminer for those values alone. A crystal matminer fails on gives None, as before. On the
first 500 MP-20 test crystals (development check): 4 of 5,103 sites deferred whole, 113 single bcc values asked.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from crystalgen.metrics.crystalnn.order_parameters import order_parameters
from crystalgen.metrics.crystalnn.voronoi import SEARCH_CUTOFF, crystal_faces
from crystalgen.metrics.crystalnn.weights import DISTANCE_CUTOFFS, X_DIFF_WEIGHT, coordination_shells, tie_groups

CompactCrystal = tuple[np.ndarray, np.ndarray, np.ndarray]  # lattice rows (3, 3) A, atomic numbers (N,), frac (N, 3)
_SHELLS_PER_CALL = 256  # neighbour sets per order-parameter call: bounds the (B, n, n, n, 3) arrays to ~10 MB


@dataclass(frozen=True)
class Layout:
    """Where each coordination number's features sit in the 61 columns, and its motifs with their parameters."""

    offset: dict[int, int]  # cn -> column of its "wt"; its motifs follow
    motifs: dict[int, list[tuple[str, dict | None]]]
    width: int


@cache
def preset_layout() -> Layout:
    """Read matminer's "ops" preset; refuse if its CrystalNN settings are not the ones weights.py reproduces."""
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    featuriser = CrystalNNFingerprint.from_preset("ops")
    cnn = featuriser.cnn
    expected = dict(weighted_cn=False, cation_anion=False, distance_cutoffs=DISTANCE_CUTOFFS, x_diff_weight=X_DIFF_WEIGHT,
                    porous_adjustment=True, search_cutoff=SEARCH_CUTOFF)
    actual = {key: getattr(cnn, key) for key in expected}
    actual["distance_cutoffs"] = tuple(float(x) for x in actual["distance_cutoffs"])
    if actual != expected or featuriser.chem_info is not None:
        raise RuntimeError(f"matminer's CrystalNNFingerprint 'ops' preset changed ({actual}); the fast fingerprint "
                           "reproduces {expected}: use fingerprint_backend='matminer'")
    offset, motifs, column = {}, {}, 0
    for cn in sorted(featuriser.ops):
        offset[cn] = column
        motifs[cn] = [(op._types[0], op._params[0]) for op in featuriser.ops[cn] if op != "wt"]
        column += 1 + len(motifs[cn])
    return Layout(offset, motifs, column)


def _site_shells(crystal: CompactCrystal) -> list[list[tuple] | None]:
    """Per site: its shells as (cn, P(cn), unit vectors, distances, tie group labels), or None to defer."""
    lattice, numbers, frac = crystal
    faces = crystal_faces(lattice, frac)
    distance_all = np.linalg.norm(faces.vector, axis=1)
    unit_all = faces.vector / distance_all[:, None]
    bounds = np.searchsorted(faces.site, np.arange(len(numbers) + 1))
    sites: list[list[tuple] | None] = []
    for i in range(len(numbers)):
        part = slice(bounds[i], bounds[i + 1])
        shells = None
        if faces.exact[i]:
            shells = coordination_shells(faces.solid_angle[part], faces.area[part], distance_all[part],
                                         int(numbers[i]), numbers[faces.neighbour[part]])
        if shells is None:
            sites.append(None)
            continue
        counts, probabilities, order, sorted_weight = shells
        # Neighbours of equal weight within a shell: pymatgen's order among them is arbitrary (order_parameters).
        groups = tie_groups(sorted_weight)
        unit, distance = unit_all[part], distance_all[part]
        sites.append([(cn, p, unit[order[:cn]], distance[order[:cn]], groups[:cn])
                      for cn, p in zip(counts, probabilities, strict=True)])
    return sites


SiteFallback = Callable[[CompactCrystal, list[int]], np.ndarray]


@dataclass(frozen=True)
class ShellRequest:
    """Some motifs of one coordination shell of one site, to be computed the reference way."""

    site: int
    cn: int
    motifs: list[int]  # positions in the layout's motif list of this cn
    probability: float  # P(cn) of the fast path: the reference's must be the same, else the site is deferred


#: ``(crystal, requests) -> per request P(cn) x order parameter of each asked motif, or None (defer the site)``.
ShellFallback = Callable[[CompactCrystal, list[ShellRequest]], list[np.ndarray | None]]


def crystalnn_fingerprints(
    crystals: Sequence[CompactCrystal], fallback: SiteFallback, shell_fallback: ShellFallback | None = None
) -> list[np.ndarray | None]:
    """Site-averaged CrystalNN "ops" fingerprints (61,) of each crystal, or None where matminer fails.

    ``fallback(crystal, site indices)`` computes the deferred sites' fingerprints (n, 61) the reference way, or
    raises if the crystal cannot be fingerprinted. With ``shell_fallback``, a site whose shells are certain but
    some of whose order parameters are not (an angle on a threshold, an order-dependent motif with neighbours of
    equal weight) asks the reference for those values only; without it the whole site is deferred.
    """
    layout = preset_layout()
    table_rows: list[np.ndarray] = []
    deferred: dict[int, list[int]] = defaultdict(list)  # crystal -> its sites for the fallback
    uncertain: dict[int, list[ShellRequest]] = defaultdict(list)  # crystal -> motifs for the shell fallback
    pending: dict[int, list[tuple]] = defaultdict(list)  # cn -> (row, P, unit, distance, tie groups)
    first_row: list[int] = []
    for c, crystal in enumerate(crystals):
        first_row.append(len(table_rows))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sites = _site_shells(crystal)
        except (ValueError, np.linalg.LinAlgError):
            sites = [None] * len(crystal[1])
        for i, shells in enumerate(sites):
            row = np.zeros(layout.width)
            if shells is None:
                deferred[c].append(i)
            for cn, p, unit, distance, ties in shells or []:
                if cn in layout.offset:
                    row[layout.offset[cn]] = p
                    if layout.motifs[cn] and p != 0:
                        pending[cn].append((len(table_rows), p, unit, distance, ties))
            table_rows.append(row)
    first_row.append(len(table_rows))
    table = np.array(table_rows).reshape(-1, layout.width)
    crystal_of_row = np.repeat(np.arange(len(crystals)), np.diff(first_row))
    for cn, shells in pending.items():
        columns = layout.offset[cn] + 1 + np.arange(len(layout.motifs[cn]))
        for start in range(0, len(shells), _SHELLS_PER_CALL):
            part = shells[start:start + _SHELLS_PER_CALL]
            values, unsure = order_parameters(np.stack([s[2] for s in part]), np.stack([s[3] for s in part]),
                                              layout.motifs[cn], np.stack([s[4] for s in part]))
            rows = np.array([s[0] for s in part])
            table[rows[:, None], columns[None, :]] = values * np.array([s[1] for s in part])[:, None]
            for k in np.flatnonzero(unsure.any(axis=1)):
                c = int(crystal_of_row[rows[k]])
                site = int(rows[k]) - first_row[c]
                if shell_fallback is None:
                    deferred[c].append(site)
                else:
                    uncertain[c].append(ShellRequest(site, cn, np.flatnonzero(unsure[k]).tolist(), part[k][1]))
    results: list[np.ndarray | None] = []
    for c, crystal in enumerate(crystals):
        rows = table[first_row[c]:first_row[c + 1]]
        try:
            requests = [r for r in uncertain.get(c, []) if r.site not in deferred.get(c, [])]
            answers = shell_fallback(crystal, requests) if requests and shell_fallback is not None else []
            for request, answer in zip(requests, answers, strict=True):
                if answer is None:
                    deferred[c].append(request.site)
                else:
                    rows[request.site, layout.offset[request.cn] + 1 + np.array(request.motifs)] = answer
            if c in deferred:
                deferred_sites = sorted(set(deferred[c]))
                rows[deferred_sites] = fallback(crystal, deferred_sites)
        except Exception:  # noqa: BLE001 - matminer's failure on a crystal makes it unfingerprintable
            results.append(None)
            continue
        results.append(rows.mean(axis=0))
    return results
