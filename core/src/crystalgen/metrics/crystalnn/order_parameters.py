"""pymatgen's ``LocalStructOrderParams`` for the motifs of matminer's "ops" preset, for many neighbour sets at once.

Every neighbour set of a batch has the same size n; an input is ``unit`` (B, n, 3), the unit vectors from the
central site to its neighbours. pymatgen loops over neighbour j (north pole), k (prime meridian) and m in Python;
here the same terms are arrays over (B, j, k) and (B, j, k, m), with pymatgen's expressions, masks and
normalisations (Zimmermann et al., Front. Mater. 4, 34 (2017)):

- thetak = angle(j, k); xaxis = the part of k orthogonal to j, normalised (none when shorter than 1e-12);
- thetam = angle(j, m), phi = angle between xaxis and the part of m orthogonal to j, for m not j, k;
- each motif adds Gaussian terms in thetak, thetam (and cos(fac * phi)^exp) to a numerator and a count per (j, k);
- "max" motifs keep the largest numerator / count over (j, k); "bent" the ratio of sums; "bcc" the sum over j < k
  divided by n (6 + (n - 2)(n - 3)) / 2.

Steinhardt's q_l uses the addition theorem: q_l^2 = sum_jk P_l(cos angle(j, k)) / n^2, equal to pymatgen's sum of
|sum_j Y_lm|^2 (to rounding) without its polar-angle bookkeeping. A value pymatgen leaves as None is 0 here (matminer
maps None to 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_VERY_SMALL = 1e-12  # pymatgen: below this, a Gram-Schmidt remainder has no direction
_FAC_BCC = 1 / math.exp(-0.5)
_IPI = 1 / math.pi
AMBIGUOUS_ANGLE = 1e-9  # rad; computed angles differ from pymatgen's by ~1e-15 away from 0 and pi
AGREEMENT = 1e-9  # largest change of an order parameter that still counts as the same value

TRIANGULAR = frozenset({"tri_plan_max", "tet_max"})
EQUATORIAL = frozenset({"T", "tri_pyr", "sq_pyr", "pent_pyr", "hex_pyr"})
BIPYRAMIDAL = frozenset({"tri_bipyr", "sq_bipyr", "pent_bipyr", "hex_bipyr", "oct_max", "sq_plan_max", "hex_plan_max"})
ORDER_DEPENDENT = frozenset({"bcc"})  # sums over j < k only: the neighbour order matters
THRESHOLDED = BIPYRAMIDAL | {"see_saw_rect", "pent_plan_max", "cuboct_max", "bcc"}  # terms that jump at an angle
SUPPORTED = TRIANGULAR | EQUATORIAL | BIPYRAMIDAL | {"see_saw_rect", "pent_plan_max", "cuboct_max", "bent", "bcc",
                                                     "sgl_bd", "q2", "q4", "q6"}


def _gauss(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x)


def _gram_schmidt(v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """pymatgen's ``gramschmidt``: v minus its projection on u (u not necessarily of unit length)."""
    return v - (np.sum(v * u, axis=-1) / np.sum(u * u, axis=-1))[..., None] * u


class Geometry:
    """The angles every motif needs, for a batch of neighbour sets of one size n."""

    def __init__(self, unit: np.ndarray) -> None:
        b, n, _ = unit.shape
        self.n = n
        self.unit = unit
        z = unit[:, :, None, :]  # j
        cos_jk = np.clip(np.sum(z * unit[:, None, :, :], axis=-1), -1.0, 1.0)  # (B, j, k)
        self.cos_jk = cos_jk
        self.thetak = np.arccos(cos_jk)
        xaxis = _gram_schmidt(np.broadcast_to(unit[:, None, :, :], (b, n, n, 3)), z)
        xnorm = np.linalg.norm(xaxis, axis=-1)
        self.flag_x = xnorm < _VERY_SMALL
        xaxis = xaxis / np.where(self.flag_x, 1.0, xnorm)[..., None]
        eye = np.eye(n, dtype=bool)
        self.pair = ~eye[None]  # (1, j, k): k != j
        # (B, j, k, m): thetam depends on (j, m); phi on (j, k, m).
        self.thetam = self.thetak[:, :, None, :]
        x_two = xaxis  # Gram-Schmidt remainder of m with respect to j, normalised: the same array indexed (j, m)
        self.flag_x2 = self.flag_x[:, :, None, :]
        cos_phi = np.clip(np.sum(xaxis[:, :, :, None, :] * x_two[:, :, None, :, :], axis=-1), -1.0, 1.0)
        self.phi = np.where(self.flag_x2, 0.0, np.arccos(cos_phi))
        distinct = ~(eye[:, :, None] | eye[:, None, :] | eye[None, :, :])  # m not in {j, k}, k != j
        self.south_mask = distinct[None] & ~self.flag_x[:, :, :, None]  # pymatgen's m-loop runs
        self.angle_mask = self.south_mask & ~self.flag_x2  # ... and the j-i-m / azimuth terms apply


@dataclass
class Terms:
    """A motif's contributions before reduction: per (j, k) pair and per (j, k, m) triple, numerator and count."""

    pair_num: np.ndarray  # (B, j, k)
    pair_count: np.ndarray
    triple_num: np.ndarray  # (B, j, k, m)
    triple_count: np.ndarray

    def numerator(self) -> np.ndarray:
        return self.pair_num + self.triple_num.sum(-1)

    def count(self) -> np.ndarray:
        return self.pair_count + self.triple_count.sum(-1)


def _terms(g: Geometry, kind: str, p: Mapping, shift: float = 0.0, both_orders: bool = False) -> Terms:
    """pymatgen's contributions of one motif; ``shift`` (rad) moves every threshold an angle is compared with.

    ``both_orders``: for "bcc", the terms of every ordered pair (j, k), not only those of j before k.
    """
    tk, tm, phi = g.thetak, g.thetam, g.phi
    tk4 = tk[..., None]
    am = g.angle_mask
    ones = np.ones_like(tk)
    if kind == "bent":
        return Terms(_gauss(p["IGW_TA"] * (tk * _IPI - p["TA"])), ones, np.zeros_like(tm), np.zeros_like(tm))
    if kind in TRIANGULAR:
        m_terms = _gauss(p["IGW_TA"] * (tm * _IPI - p["TA"])) * np.cos(p["fac_AA"] * phi) ** p["exp_cos_AA"]
        return Terms(_gauss(p["IGW_TA"] * (tk * _IPI - p["TA"])), ones, np.where(am, m_terms, 0.0), am * 1.0)
    if kind in EQUATORIAL:
        m_terms = np.cos(p["fac_AA"] * phi) ** p["exp_cos_AA"] * _gauss(p["IGW_EP"] * (tm * _IPI - 0.5))
        return Terms(_gauss(p["IGW_EP"] * (tk * _IPI - 0.5)), ones, np.where(am, m_terms, 0.0), am * 1.0)
    if kind == "pent_plan_max":
        target = p["TA"] * math.pi + shift
        num = _gauss(p["IGW_TA"] * (tk * _IPI - np.where(tk <= target, 0.4, 0.8)))
        m_terms = _gauss(p["IGW_TA"] * (tm * _IPI - np.where(tm <= target, 0.4, 0.8))) * np.cos(phi) ** 2
        return Terms(num, ones, np.where(am, m_terms, 0.0), am * 1.0)
    if kind in BIPYRAMIDAL or kind == "see_saw_rect":
        hexagonal = kind == "hex_plan_max"

        def equatorial(theta: np.ndarray) -> np.ndarray:
            if hexagonal:
                return _gauss(p["IGW_TA"] * (np.abs(theta * _IPI - 0.5) - p["TA"]))
            return _gauss(p["IGW_EP"] * (theta * _IPI - 0.5))

        spp = p["min_SPP"] + shift
        k_in = tk < spp
        south = g.south_mask & (tm >= spp)  # pymatgen adds these whatever thetak
        ring = am & (tm < spp) & k_in[..., None]
        if kind == "see_saw_rect":
            ring = ring & (phi < 0.75 * math.pi + shift)
        m_terms = np.cos(p["fac_AA"] * phi) ** p["exp_cos_AA"] * equatorial(tm)
        triple = np.where(south, _gauss(p["IGW_SPP"] * (tm * _IPI - 1.0)), 0.0) + np.where(ring, m_terms, 0.0)
        return Terms(np.where(k_in, equatorial(tk), 0.0), k_in * 1.0, triple, south * 1.0 + ring * 1.0)
    if kind == "cuboct_max":
        spp, lo, hi = p["min_SPP"] + shift, p[4] + shift, p[2] + shift
        k_south = tk >= spp
        base = am & (tm < spp) & ((lo < tk4) & (tk4 < hi))
        middle = base & (lo < tm) & (tm < hi)
        low = base & (tm < lo)
        high = base & (tm > hi)
        cap = _gauss(0.0556 * (np.cos(phi - 0.5 * math.pi) - 0.81649658))
        triple = (np.where(middle, np.cos(phi) ** 2 * _gauss(p[5] * (tm * _IPI - 0.5)), 0.0)
                  + np.where(low, cap * _gauss(p[6] * (tm * _IPI - 1 / 3)), 0.0)
                  + np.where(high, cap * _gauss(p[6] * (tm * _IPI - 2 / 3.0)), 0.0))
        return Terms(np.where(k_south, p["w_SPP"] * _gauss(p["IGW_SPP"] * (tk * _IPI - 1.0)), 0.0),
                     np.where(k_south, p["w_SPP"], 0.0), triple, (middle | low | high) * 1.0)
    if kind == "bcc":
        upper = (~np.eye(g.n, dtype=bool) if both_orders else np.triu(np.ones((g.n, g.n), dtype=bool), 1))[None]
        spp = p["min_SPP"] + shift
        k_south = upper & (tk >= spp)
        ring = am & (upper & (tk < spp))[..., None]
        fac = np.where(tk4 > math.pi / 2 + shift, 1.0, -1.0)
        t = (tm - math.pi / 2) / math.asin(1 / 3)
        return Terms(np.where(k_south, p["w_SPP"] * _gauss(p["IGW_SPP"] * (tk * _IPI - 1.0)), 0.0), 0 * ones,
                     np.where(ring, fac * np.cos(3 * phi) * _FAC_BCC * t * np.exp(-0.5 * t * t), 0.0), 0 * tm)
    raise ValueError(f"order parameter {kind!r} is not in matminer's 'ops' preset; supported: {sorted(SUPPORTED)}")


def _reduce(g: Geometry, kind: str, terms: Terms) -> np.ndarray:
    """pymatgen's normalisation of the summed contributions into one value per neighbour set (B,)."""
    num = np.where(g.pair, terms.numerator(), 0.0)
    if kind == "bent":
        return num.sum(axis=(1, 2)) / (g.n * (g.n - 1))
    if kind == "bcc":
        if g.n <= 3:
            return np.zeros(len(num))
        return num.sum(axis=(1, 2)) / float(0.5 * float(g.n * (6 + (g.n - 2) * (g.n - 3))))
    count = terms.count()
    ratio = np.where(count > _VERY_SMALL, num / np.where(count > _VERY_SMALL, count, 1.0), 0.0)
    return np.where(g.pair, ratio, -np.inf).reshape(len(ratio), -1).max(axis=1)


def _motif(g: Geometry, kind: str, p: Mapping) -> np.ndarray:
    return _reduce(g, kind, _terms(g, kind, p))


def _thresholds(kind: str, p: Mapping) -> tuple[list[float], list[float]]:
    """The angles (rad) that ``_terms`` compares thetak / thetam with, and those it compares phi with."""
    if kind == "pent_plan_max":
        return [p["TA"] * math.pi], []
    if kind in BIPYRAMIDAL or kind == "see_saw_rect":
        return [p["min_SPP"]], [0.75 * math.pi] if kind == "see_saw_rect" else []
    if kind == "cuboct_max":
        return [p["min_SPP"], p[4], p[2]], []
    if kind == "bcc":
        return [p["min_SPP"], math.pi / 2], []
    return [], []


def near_threshold(g: Geometry, kind: str, p: Mapping) -> np.ndarray:
    """(B,) True where an angle lies within twice AMBIGUOUS_ANGLE of one of the motif's thresholds.

    The shifts of ``ambiguous`` only move comparisons, so elsewhere both shifted sets of terms are the same: only
    these neighbour sets need the (three times dearer) comparison.
    """
    on_theta, on_phi = _thresholds(kind, p)
    out = np.zeros(len(g.thetak), dtype=bool)
    for angles, thresholds in ((g.thetak, on_theta), (g.phi, on_phi)):
        for threshold in thresholds:
            out |= (np.abs(angles - threshold) <= 2 * AMBIGUOUS_ANGLE).reshape(len(out), -1).any(axis=1)
    return out


def ambiguous(g: Geometry, kind: str, p: Mapping, both_orders: bool = False) -> np.ndarray:
    """(B,) True where an angle sits on one of the motif's thresholds and the side it takes changes a term.

    There the last bits of the coordinates decide which side pymatgen takes (90-degree angles of a cubic crystal
    against the bcc motif's sign, for instance), so equality cannot be promised: the caller defers to pymatgen.
    Terms are compared one by one: two flips that cancel in one sum need not cancel in pymatgen's.
    """
    out = np.zeros(len(g.thetak), dtype=bool)
    near = np.flatnonzero(near_threshold(g, kind, p))
    if len(near) == 0:
        return out
    sub = Geometry(g.unit[near])
    below = _terms(sub, kind, p, AMBIGUOUS_ANGLE, both_orders)  # an angle within the margin counts as below
    above = _terms(sub, kind, p, -AMBIGUOUS_ANGLE, both_orders)
    flipped = np.zeros(len(near), dtype=bool)
    for a, b in ((below.pair_num, above.pair_num), (below.pair_count, above.pair_count),
                 (below.triple_num, above.triple_num), (below.triple_count, above.triple_count)):
        flipped |= (np.abs(a - b) > AGREEMENT).reshape(len(near), -1).any(axis=1)
    out[near] = flipped
    return out


def order_sensitive(g: Geometry, kind: str, p: Mapping, ties: np.ndarray) -> np.ndarray:
    """(B,) True where the value of an order-dependent motif ("bcc") depends on the order of equal-weight neighbours.

    ``ties`` (B, n): equal labels for neighbours whose order pymatgen decides by its last bits. Between groups the
    order is the weight order; within a group pymatgen's pair (j, k) may be either way round. The sum over pairs
    then takes the same value for every order exactly when each pair within a group contributes the same both ways
    round (its terms with j as the pole equal those with k as the pole), and only then is it computed here. An
    angle on a threshold in either orientation is left to pymatgen as well.
    """
    same_group = (ties[:, :, None] == ties[:, None, :]) & g.pair
    out = np.zeros(len(ties), dtype=bool)
    tied = np.flatnonzero(same_group.reshape(len(ties), -1).any(axis=1))
    if len(tied) == 0:
        return out
    sub, same_group = Geometry(g.unit[tied]), same_group[tied]
    full = _terms(sub, kind, p, both_orders=True)
    contribution = np.where(sub.pair, full.numerator(), 0.0)  # (B, j, k): ordered pair j, k with j first
    asymmetric = same_group & (np.abs(contribution - contribution.transpose(0, 2, 1)) > AGREEMENT)
    out[tied] = asymmetric.reshape(len(tied), -1).any(axis=1) | ambiguous(sub, kind, p, both_orders=True)
    return out


def _legendre(l_degree: int, x: np.ndarray) -> np.ndarray:
    x2 = x * x
    if l_degree == 2:
        return 0.5 * (3 * x2 - 1)
    if l_degree == 4:
        return (35 * x2 * x2 - 30 * x2 + 3) / 8
    return (231 * x2**3 - 315 * x2 * x2 + 105 * x2 - 5) / 16


def order_parameters(
    unit: np.ndarray, distance: np.ndarray, motifs: Sequence[tuple[str, Mapping | None]],
    ties: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Order parameters (B, len(motifs)) of B sets of n neighbours (unit vectors (B, n, 3), distances (B, n) A),
    and (B, len(motifs)) True where one may differ from pymatgen's.

    Unsure: an angle on a threshold (``ambiguous``), or an order-dependent motif whose value depends on the order of
    neighbours of equal weight (``ties``, (B, n) group labels, see ``order_sensitive``): pymatgen orders those by
    qhull's ridge order and its own last bits. (Shuffling them and comparing is not enough: four shuffles missed
    the order pymatgen took on mp-976969; the pairwise test of ``order_sensitive`` covers every order.)
    """
    b, n, _ = unit.shape
    out = np.zeros((b, len(motifs)))
    unsure = np.zeros((b, len(motifs)), dtype=bool)
    geometry: Geometry | None = None
    for i, (kind, params) in enumerate(motifs):
        if kind == "sgl_bd":
            d = np.sort(distance, axis=1)
            out[:, i] = 1.0 if n == 1 else 1 - d[:, 0] / d[:, 1]
        elif kind in {"q2", "q4", "q6"}:
            cos = np.clip(np.einsum("bjx,bkx->bjk", unit, unit), -1.0, 1.0)
            out[:, i] = np.sqrt(np.maximum(_legendre(int(kind[1]), cos).sum(axis=(1, 2)), 0.0)) / n
        elif n > 1:  # the angular motifs need two neighbours (pymatgen: None)
            geometry = geometry or Geometry(unit)
            out[:, i] = _motif(geometry, kind, params or {})
            if kind in THRESHOLDED:
                unsure[:, i] |= ambiguous(geometry, kind, params or {})
            if kind in ORDER_DEPENDENT and ties is not None:
                unsure[:, i] |= order_sensitive(geometry, kind, params or {}, ties)
    return out, unsure
