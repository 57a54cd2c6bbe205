"""Crystallographic analysis of one symmetry operation (W, w) given in the conventional lattice basis.

An operation maps fractional coordinates x -> W x + w (W integer 3x3, w fractional translation). Its *type*
follows from det W and tr W (International Tables A, Table 1.2.2.1), its *axis* from the fixed directions of
+-W, and its screw or glide part from the intrinsic translation (ITA A, section 1.2.2.4). Everything here is
exact integer/rational arithmetic in the lattice basis, so no Cartesian frame (and no rotation-vector sign
ambiguity, see docs/symmcd.md) is involved.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from math import gcd

import numpy as np

#: (det W, tr W) -> Hermann-Mauguin symbol of the point operation.
_POINT_SYMBOL: dict[tuple[int, int], str] = {
    (1, 3): "1", (1, -1): "2", (1, 0): "3", (1, 1): "4", (1, 2): "6",
    (-1, -3): "-1", (-1, 1): "m", (-1, 0): "-3", (-1, -1): "-4", (-1, -2): "-6",
}
_ORDER = {"1": 1, "2": 2, "3": 3, "4": 4, "6": 6, "-1": 2, "m": 2, "-3": 6, "-4": 4, "-6": 6}

#: Lattice centring translations (conventional cell; R in the obverse hexagonal setting).
CENTRING: dict[str, tuple[tuple[float, float, float], ...]] = {
    "P": ((0, 0, 0),),
    "A": ((0, 0, 0), (0, 0.5, 0.5)),
    "B": ((0, 0, 0), (0.5, 0, 0.5)),
    "C": ((0, 0, 0), (0.5, 0.5, 0)),
    "I": ((0, 0, 0), (0.5, 0.5, 0.5)),
    "F": ((0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)),
    "R": ((0, 0, 0), (2 / 3, 1 / 3, 1 / 3), (1 / 3, 2 / 3, 2 / 3)),
}

_TOL = 1e-6


@dataclass(frozen=True)
class PointOperation:
    """The point part of an operation: its HM symbol ('2', 'm', '-4', ...) and axis.

    ``axis`` is the primitive integer direction [uvw] of the rotation axis (for rotoinversions the axis of
    -W, which for a mirror is the plane normal); None for the identity and the inversion.
    """

    symbol: str
    axis: tuple[int, int, int] | None

    @property
    def order(self) -> int:
        return _ORDER[self.symbol]


def point_operation(rotation: np.ndarray) -> PointOperation:
    """Classify the integer matrix W (lattice basis) of a crystallographic point operation."""
    return _point_operation(tuple(int(x) for x in np.rint(rotation).reshape(-1)))


@functools.cache
def _point_operation(entries: tuple[int, ...]) -> PointOperation:
    W = np.array(entries, dtype=int).reshape(3, 3)
    key = (round(np.linalg.det(W)), int(np.trace(W)))
    if key not in _POINT_SYMBOL:
        raise ValueError(f"not a crystallographic point operation: det {key[0]}, trace {key[1]}\n{W}")
    symbol = _POINT_SYMBOL[key]
    if symbol in ("1", "-1"):
        return PointOperation(symbol, None)
    proper = W if key[0] == 1 else -W
    return PointOperation(symbol, primitive_direction(_null_vector(proper - np.eye(3, dtype=int))))


def _null_vector(M: np.ndarray) -> np.ndarray:
    """A vector spanning the (one-dimensional) null space of an integer matrix."""
    _, s, vt = np.linalg.svd(M.astype(float))
    if s[-1] > 1e-8 or s[-2] < 1e-8:
        raise ValueError(f"expected a one-dimensional null space, singular values {s}")
    return vt[-1]


def primitive_direction(v: np.ndarray) -> tuple[int, int, int]:
    """Smallest integer vector parallel to ``v`` (rational directions only), first non-zero entry positive."""
    v = np.asarray(v, dtype=float)
    v = v / np.abs(v).max()
    for scale in range(1, 13):
        w = v * scale
        if np.allclose(w, np.rint(w), atol=1e-6):
            ints = [int(x) for x in np.rint(w)]
            break
    else:
        raise ValueError(f"direction {v} is not rational with a small denominator")
    g = gcd(*(abs(i) for i in ints))
    ints = [i // g for i in ints]
    first = next(i for i in ints if i != 0)
    return tuple(-i if first < 0 else i for i in ints)  # type: ignore[return-value]


def _orbit_sum(W: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """(1/n) sum_{k<n} W^k w: the intrinsic (screw or glide) translation of (W, w) of order n."""
    total, power = np.zeros(3), np.eye(3)
    for _ in range(n):
        total += power @ w
        power = W @ power
    return total / n


def _shortest_translation_factor(axis: tuple[int, int, int], bravais: str) -> int:
    """q such that axis/q is the shortest lattice vector along the axis (centring vectors included)."""
    u = np.array(axis, dtype=float)
    for q in (6, 4, 3, 2):
        t = u / q
        for c in CENTRING[bravais]:
            d = t - np.asarray(c)
            if np.allclose(d, np.rint(d), atol=_TOL):
                return q
    return 1


def element_symbol(rotation: np.ndarray, translation: np.ndarray, bravais: str) -> PointOperation:
    """Hermann-Mauguin symmetry-element symbol of the operation (W, w): '2_1', '4_3', 'c', 'n', 'm', '-4', ...

    Adding a lattice translation t to (W, w) gives an operation of the same group along a parallel axis or
    plane whose screw or glide part may differ (e.g. every 2-fold axis along [110] of a primitive tetragonal
    group has parallel 2_1 axes). So that the answer does not depend on which w a table lists, we take all
    elements of the family {(W, w + t)} and name it the way Hermann-Mauguin symbols do (ITA A, 4.1.2.3):
    rotations before screws, and m before a, b, c, before n, before d.

    Screws n_p: p from the intrinsic translation (1/n) sum_k W^k w, measured against the shortest lattice
    vector along the axis and the right-handed sense of the rotation (sign of det[u, v, Wv]).
    Glides: the glide vector (w + W w)/2 reduced mod 1; zero -> m, one component 1/2 -> a/b/c, a component
    1/4 -> d, several halves -> n. Rotoinversions other than m keep their point symbol.
    """
    axis, symbols = _element_family(rotation, translation, bravais)
    return PointOperation(min(symbols, key=_PRIORITY.index), axis)


#: Hermann-Mauguin priority when a family of parallel elements holds several kinds.
_PRIORITY = (
    "1", "-1", "2", "2_1", "3", "3_1", "3_2", "4", "4_1", "4_2", "4_3", "6", "6_1", "6_2", "6_3", "6_4", "6_5",
    "-3", "-4", "-6", "m", "a", "b", "c", "n", "d",
)


def _element_family(rotation: np.ndarray, translation: np.ndarray, bravais: str) -> tuple[tuple[int, int, int] | None, set[str]]:
    """Axis and the symbols of all elements (W, w + t), t in Z^3 (centring excluded, see space_group.py)."""
    W = np.rint(rotation).astype(int)
    w = np.asarray(translation, dtype=float)
    point = point_operation(W)
    if point.axis is None or point.symbol in ("-3", "-4", "-6"):
        return point.axis, {point.symbol}
    n = point.order
    shifts = list(np.eye(3))
    intrinsic = {_key(_orbit_sum(W, w, n))}
    frontier = list(intrinsic)
    while frontier:  # closure of the intrinsic parts under the lattice (a finite set mod 1)
        base = np.array(frontier.pop()) / _GRID
        for t in shifts:
            k = _key(base + _orbit_sum(W, t, n))
            if k not in intrinsic:
                intrinsic.add(k)
                frontier.append(k)
    if point.symbol == "m":
        return point.axis, {_glide_letter(np.array(g) / _GRID) for g in intrinsic}
    u = np.array(point.axis, dtype=float)
    i = int(np.argmax(np.abs(u)))
    q = _shortest_translation_factor(point.axis, bravais)
    sense = _rotation_sense(W, u)
    symbols = set()
    for key in intrinsic:
        tau = np.array(key) / _GRID
        p = int(round(n * ((tau[i] / u[i]) * q % 1.0))) % n
        if p and sense < 0:
            p = n - p
        symbols.add(point.symbol if p == 0 else f"{n}_{p}")
    return point.axis, symbols


_GRID = 48  # every crystallographic translation is a multiple of 1/48 (in fact of 1/24)


def _key(v: np.ndarray) -> tuple[int, int, int]:
    """v mod 1 as integer multiples of 1/48 (exact, hashable)."""
    k = np.rint(np.asarray(v) * _GRID)
    if not np.allclose(k, np.asarray(v) * _GRID, atol=1e-4):
        raise ValueError(f"translation {v} is not a multiple of 1/{_GRID}")
    return tuple(int(x) % _GRID for x in k)  # type: ignore[return-value]


def _glide_letter(g: np.ndarray) -> str:
    g = g - np.rint(g)
    nonzero = np.abs(g) > _TOL
    if not nonzero.any():
        return "m"
    if np.any(np.isclose(np.abs(g[nonzero]), 0.25, atol=_TOL)):
        return "d"
    if nonzero.sum() == 1:
        return "abc"[int(np.argmax(nonzero))]
    return "n"


def _rotation_sense(W: np.ndarray, u: np.ndarray) -> int:
    """+1 if W turns counter-clockwise looking down u (right-handed about u), else -1.

    det[u, v, Wv] has the sign of (v x Wv) . u in any right-handed basis, so the lattice basis will do.
    """
    v = np.eye(3)[int(np.argmin(np.abs(u)))]  # a basis vector not parallel to u
    return 1 if np.linalg.det(np.stack([u, v, W @ v], axis=1)) > 0 else -1
