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
from crystalgen.metrics.crystalnn.weights import DISTANCE_CUTOFFS, X_DIFF_WEIGHT, Shells, coordination_shells

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


@dataclass(frozen=True)
class BatchShells:
    """The coordination shells of every site of a batch of crystals, sites numbered across the batch."""

    shells: Shells
    unit: np.ndarray  # (F,  3) unit vector from the site to the neighbour across each face
    distance: np.ndarray  # (F,) A
    deferred: np.ndarray  # (n_sites,) bool: the fast path cannot promise this site's shells
    first_site: np.ndarray  # (n_crystals + 1,) index of each crystal's first site


def _no_faces(n_sites: int) -> tuple:
    """(site, neighbour, vector, solid angle, area, exact) of sites without faces, all to be deferred."""
    none = np.zeros(0, dtype=np.int64)
    return none, none, np.zeros((0, 3)), np.zeros(0), np.zeros(0), np.zeros(n_sites, dtype=bool)


def batch_shells(crystals: Sequence[CompactCrystal]) -> BatchShells:
    """Voronoi faces crystal by crystal (voronoi.py), then the CrystalNN shells of all sites at once (weights.py)."""
    parts = [_no_faces(0)]  # concatenable when there are no crystals
    first_site = np.zeros(len(crystals) + 1, dtype=np.int64)
    for c, (lattice, numbers, frac) in enumerate(crystals):
        first_site[c + 1] = first_site[c] + len(numbers)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                faces = crystal_faces(lattice, frac)
        except (ValueError, np.linalg.LinAlgError):
            faces = None  # every site of this crystal goes to the fallback
        offset = first_site[c]
        parts.append(_no_faces(len(numbers)) if faces is None else (
            faces.site + offset, faces.neighbour + offset, faces.vector, faces.solid_angle, faces.area, faces.exact))
    site, neighbour, vector, solid_angle, area, exact = (np.concatenate(x) for x in zip(*parts, strict=True))
    numbers = np.concatenate([np.zeros(0, dtype=np.int64), *(np.asarray(n, dtype=np.int64) for _, n, _ in crystals)])
    distance = np.linalg.norm(vector, axis=1)
    shells = coordination_shells(site, solid_angle, area, distance, numbers[site], numbers[neighbour],
                                 int(first_site[-1]))
    return BatchShells(shells, vector / distance[:, None], distance, ~(exact & shells.exact), first_site)


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
    found = batch_shells(crystals)
    shells = found.shells
    deferred: dict[int, list[int]] = defaultdict(list)  # crystal -> its sites for the fallback
    uncertain: dict[int, list[ShellRequest]] = defaultdict(list)  # crystal -> motifs for the shell fallback
    crystal_of_site = np.repeat(np.arange(len(crystals)), np.diff(found.first_site))
    for row in np.flatnonzero(found.deferred):
        deferred[int(crystal_of_site[row])].append(int(row - found.first_site[crystal_of_site[row]]))
    table = np.zeros((int(found.first_site[-1]), layout.width))
    for cn, motifs in layout.motifs.items():
        this_cn = shells.cn == cn
        table[shells.site[this_cn], layout.offset[cn]] = shells.probability[this_cn]  # the "wt" feature, P(cn)
        chosen = np.flatnonzero(this_cn & (shells.probability != 0) & bool(motifs))
        columns = layout.offset[cn] + 1 + np.arange(len(motifs))
        for start in range(0, len(chosen), _SHELLS_PER_CALL):
            part = chosen[start:start + _SHELLS_PER_CALL]
            slots = shells.first[part][:, None] + np.arange(cn)  # the cn nearest-by-weight neighbours
            faces = shells.order[slots]
            values, unsure = order_parameters(found.unit[faces], found.distance[faces], motifs,
                                              shells.tie_group[slots])
            rows, probability = shells.site[part], shells.probability[part]
            table[rows[:, None], columns[None, :]] = values * probability[:, None]
            for k in np.flatnonzero(unsure.any(axis=1)):
                c = int(crystal_of_site[rows[k]])
                site = int(rows[k] - found.first_site[c])
                if shell_fallback is None:
                    deferred[c].append(site)
                else:
                    uncertain[c].append(ShellRequest(site, cn, np.flatnonzero(unsure[k]).tolist(),
                                                     float(probability[k])))
    results: list[np.ndarray | None] = []
    for c, crystal in enumerate(crystals):
        rows = table[found.first_site[c]:found.first_site[c + 1]]
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
