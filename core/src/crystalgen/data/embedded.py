"""The embedded default dataset: known structure prototypes with element substitutions, built here in seconds.

No network and no data files: every crystal comes from a prototype of :mod:`crystalgen.data.prototypes` and a
family of elements, by these rules:

1. Expand the Wyckoff sites with the space group's operations (spglib's tables, in the prototype's setting) in a
   conventional cell with a = 1 and the axial ratios drawn from their ranges; check each site's multiplicity.
2. Go to the primitive cell (the centring's standard transformation; F, I, and R in hexagonal axes).
3. Scale the cell isotropically so that the shortest distance between the prototype's two bond roles equals the
   sum of their radii (ionic: Shannon crystal radius for the oxidation state and coordination number; covalent:
   Slater's atomic radius; metallic: the metallic radius), times a factor in [0.98, 1.02].
4. Check that no interatomic distance is below 0.85 times that bond length, nor below 1 Angstrom, and that the
   oxidation states (where the family gives them) sum to zero.

Free axial ratios, free Wyckoff coordinates and the bond factor are drawn from a generator seeded by the crystal's
id, so the build is deterministic and adding a family does not change the others. No random rattle is applied:
the variation lies in symmetry-preserving freedoms, so each crystal has its prototype's space group exactly.
Splits are fixed by the id's SHA-256 (10% test, 10% val, 80% train). The one property, ``volume_per_atom``
(Angstrom^3), is a structural quantity for exercising property-conditioned code, not a physical target.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as metadata
import itertools
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import spglib
from pymatgen.core import Element, Lattice, Structure

from crystalgen.data import cache
from crystalgen.data.prototypes import FAMILIES, PROTOTYPES, Family, Prototype
from crystalgen.data.record_store import from_item, to_item
from crystalgen.data.records import CrystalRecord

#: Bump whenever the prototypes, families or rules change (it keys the on-disk cache).
EMBEDDED_VERSION = "2"
SEED = 20240601
SPLITS = ("train", "val", "test")
PROPERTY = "volume_per_atom"
BOND_JITTER = 0.02
MIN_CONTACT_RATIO = 0.85
MIN_DISTANCE = 1.0  # Angstrom

_CENTRING_TO_PRIMITIVE = {  # rows: primitive vectors in conventional fractional coordinates
    "P": np.eye(3),
    "F": np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]),
    "I": np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]]),
    "R": np.array([[2 / 3, 1 / 3, 1 / 3], [-1 / 3, 1 / 3, 1 / 3], [-1 / 3, -2 / 3, 1 / 3]]),
}
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "X": 10, "XI": 11, "XII": 12, "XIV": 14}


@dataclass(frozen=True)
class EmbeddedCrystal:
    """One crystal of the embedded set, with what it was built to be."""

    id: str
    prototype: str
    spacegroup: int
    structure: Structure
    oxidation_states: dict[str, int]  # empty when the family is not meant to be charge balanced
    split: str


# ------------------------------------------------------------------------------------------------------ radii


def shannon_crystal_radius(element: str, oxidation: int, coordination: int) -> float:
    """Shannon crystal radius (Angstrom) at the tabulated coordination closest to ``coordination`` (ties: lower);
    the high-spin value where spin matters."""
    table = Element(element).data["Shannon radii"].get(str(oxidation))
    if not table:
        raise ValueError(f"no Shannon radius for {element}{oxidation:+d}")
    plain = {cn: spins for cn, spins in table.items() if cn in _ROMAN}
    cn = min(plain, key=lambda key: (abs(_ROMAN[key] - coordination), _ROMAN[key]))
    spins = plain[cn]
    spin = "" if "" in spins else "High Spin" if "High Spin" in spins else sorted(spins)[0]
    return float(spins[spin]["crystal_radius"])


def radius(element: str, bonding: str, oxidation: int | None, coordination: int) -> float:
    """The radius (Angstrom) an element contributes to a bond length under the family's bonding rule."""
    el = Element(element)
    if bonding == "ionic":
        if oxidation is None:
            raise ValueError(f"ionic radius of {element} needs an oxidation state")
        return shannon_crystal_radius(element, oxidation, coordination)
    metallic = el.data.get("Metallic radius")  # (the property warns when the table has no value)
    if bonding == "metallic" and metallic:
        return float(metallic)
    radius = el.atomic_radius
    if radius is None:
        raise ValueError(f"pymatgen has no atomic radius for {element}")
    return float(radius)


# --------------------------------------------------------------------------------------------------- geometry


@functools.cache
def _hall_number(spacegroup: int, setting: str) -> int:
    for hall in range(1, 531):
        sg = spglib.get_spacegroup_type(hall)
        if sg is not None and sg.number == spacegroup and sg.choice == setting:
            return hall
    raise ValueError(f"space group {spacegroup} has no setting {setting!r} in spglib")


def _coordinate(expr: str, params: dict[str, float]) -> float:
    """``"1/2-e"`` -> 0.5 - params["e"]: a sum of fractions and (signed) parameter names."""
    total = 0.0
    for sign, term in _terms(expr):
        total += sign * (params[term] if term in params else float(Fraction(term)))
    return total


def _terms(expr: str) -> list[tuple[int, str]]:
    out, sign, current = [], 1, ""
    for ch in expr.replace(" ", ""):
        if ch in "+-":
            if current:
                out.append((sign, current))
            sign, current = (1 if ch == "+" else -1), ""
        else:
            current += ch
    out.append((sign, current))
    return out


def _conventional_lattice(system: str, ratios: dict[str, float]) -> np.ndarray:
    c = ratios.get("c/a", 1.0)
    if system == "hexagonal":
        return np.array([[1.0, 0, 0], [-0.5, math.sqrt(3) / 2, 0], [0, 0, c]])
    return np.diag([1.0, ratios.get("b/a", 1.0), c])


def _expand_sites(proto: Prototype, params: dict[str, float]) -> tuple[list[str], np.ndarray]:
    """Roles and conventional fractional coordinates of every atom (orbit of each Wyckoff site, duplicates merged)."""
    ops = spglib.get_symmetry_from_database(_hall_number(proto.spacegroup, proto.setting))
    assert ops is not None  # the Hall number comes from spglib's own table
    roles, coords = [], []
    for site in proto.sites:
        x = np.array([_coordinate(c, params) for c in site.coords])
        images = ops["rotations"] @ x + ops["translations"]
        orbit = np.mod(images[_first_unique(images)], 1.0)
        expected = _multiplicity(site.wyckoff)
        if len(orbit) != expected:
            raise ValueError(f"{proto.name}: Wyckoff {site.wyckoff} at {site.coords} gives {len(orbit)} atoms, expected {expected}")
        roles += [site.role] * len(orbit)
        coords.append(orbit)
    return roles, np.concatenate(coords)


def _multiplicity(wyckoff: str) -> int:
    """``"12c"`` -> 12."""
    return int(wyckoff.rstrip("abcdefghijklmnopqrstuvwxyzA"))


def _first_unique(frac: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each position modulo lattice translations (to 1e-6), in order."""
    keys = np.round(np.mod(frac, 1.0) * 1e6).astype(np.int64) % 1_000_000
    first: dict[tuple[int, ...], int] = {}
    for i, key in enumerate(map(tuple, keys.tolist())):
        first.setdefault(key, i)
    return np.fromiter(first.values(), dtype=np.int64, count=len(first))


def _to_primitive(lattice: np.ndarray, frac: np.ndarray, roles: list[str], centring: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    p = _CENTRING_TO_PRIMITIVE[centring]
    prim_frac = frac @ np.linalg.inv(p)
    kept = _first_unique(prim_frac)
    return p @ lattice, np.mod(prim_frac[kept], 1.0), [roles[i] for i in kept]


def _distances(lattice: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Shortest periodic distance between every pair of atoms; the diagonal holds the shortest lattice vector."""
    lat = Lattice(lattice)
    d = np.array(lat.get_all_distances(frac, frac))
    reduced = lat.lll_matrix
    shortest = min(np.linalg.norm(np.array(n) @ reduced) for n in itertools.product((-1, 0, 1), repeat=3) if any(n))
    np.fill_diagonal(d, shortest)
    return d


def _niggli(lattice: np.ndarray, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reduced = np.array(spglib.niggli_reduce(lattice, eps=1e-5))
    return reduced, np.mod(frac @ lattice @ np.linalg.inv(reduced), 1.0)


# ------------------------------------------------------------------------------------------------------ build


def _rng(ident: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(f"{SEED}:{ident}".encode()).digest()[:8], "little"))


def split_of(ident: str) -> str:
    bucket = hashlib.sha256(ident.encode()).digest()[0] % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def _combinations(family: Family):
    roles = list(family.candidates)
    for elements in itertools.product(*(family.candidates[r] for r in roles)):
        if len(set(elements)) == len(elements):
            yield dict(zip(roles, elements, strict=True))


@functools.cache
def _centring(spacegroup: int, setting: str) -> str:
    sg = spglib.get_spacegroup_type(_hall_number(spacegroup, setting))
    assert sg is not None  # the Hall number comes from spglib's own table
    return sg.international_short[0]


def _role_counts(proto: Prototype) -> dict[str, int]:
    """Atoms per role in the conventional cell (the Wyckoff multiplicities)."""
    counts: dict[str, int] = {}
    for site in proto.sites:
        counts[site.role] = counts.get(site.role, 0) + _multiplicity(site.wyckoff)
    return counts


def _formula(elements: dict[str, str], counts: dict[str, int]) -> str:
    """Reduced formula with the elements in role order (A, B, C, X): SrTiO3, Co2MnSi, CaFe2As2."""
    g = math.gcd(*counts.values())
    return "".join(f"{elements[r]}{counts[r] // g if counts[r] // g > 1 else ''}" for r in elements)


def _build_one(proto: Prototype, family: Family, elements: dict[str, str], radii: dict[str, float]) -> EmbeddedCrystal:
    # Name first (the composition does not depend on the draws), then seed the draws with it.
    centring = _centring(proto.spacegroup, proto.setting)
    ident = f"{proto.name}-{_formula(elements, _role_counts(proto))}"

    rng = _rng(ident)
    ratios = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in sorted(proto.ratios.items())}
    params = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in sorted(proto.params.items())}
    bond = (radii[proto.bond[0]] + radii[proto.bond[1]]) * float(rng.uniform(1 - BOND_JITTER, 1 + BOND_JITTER))

    roles, conv = _expand_sites(proto, params)
    lattice, frac, roles = _to_primitive(_conventional_lattice(proto.system, ratios), conv, roles, centring)
    d = _distances(lattice, frac)
    r1, r2 = proto.bond
    pair = np.array([[(a, b) in ((r1, r2), (r2, r1)) for b in roles] for a in roles])
    lattice = lattice * (bond / d[pair].min())
    d = d * (bond / d[pair].min())
    if d.min() < max(MIN_DISTANCE, MIN_CONTACT_RATIO * bond - 1e-9):
        raise ValueError(f"{ident}: a contact of {d.min():.3f} A is shorter than the bond {bond:.3f} A allows; fix the prototype or family")
    lattice, frac = _niggli(lattice, frac)
    structure = Structure(Lattice(lattice), [elements[r] for r in roles], frac)
    oxidation = {elements[r]: family.oxidation[r] for r in elements} if family.oxidation else {}
    if oxidation and sum(oxidation[site.specie.symbol] for site in structure) != 0:
        raise ValueError(f"{ident}: oxidation states {oxidation} are not charge balanced")
    return EmbeddedCrystal(ident, proto.name, proto.spacegroup, structure, oxidation, split_of(ident))


def build_embedded() -> list[EmbeddedCrystal]:
    """Every crystal of the embedded set (see the module docstring for the rules), in a fixed pseudo-random order
    (a hash of each id), so that the first N rows of a split sample every prototype, as in the benchmark CSVs
    (``data.max_train_rows`` takes the first rows)."""
    crystals: list[EmbeddedCrystal] = []
    for family in FAMILIES:
        proto = PROTOTYPES[family.prototype]
        for elements in _combinations(family):
            radii = {
                role: radius(el, family.bonding, family.oxidation[role] if family.oxidation else None, proto.coordination[role])
                for role, el in elements.items()
            }
            if family.accept is None or family.accept(radii):
                crystals.append(_build_one(proto, family, elements, radii))
    ids = [c.id for c in crystals]
    if len(set(ids)) != len(ids):
        raise ValueError(f"embedded dataset: duplicate ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return sorted(crystals, key=lambda c: hashlib.sha256(f"{SEED}:order:{c.id}".encode()).digest())


# ------------------------------------------------------------------------------------------------------ cache


def _cache_key() -> str:
    versions = {pkg: metadata.version(pkg) for pkg in ("pymatgen", "spglib")}  # radii tables and symmetry ops
    return cache.digest("embedded", EMBEDDED_VERSION, SEED, versions)


def _to_item(c: EmbeddedCrystal, row: int) -> dict:
    record = CrystalRecord(c.id, c.structure, {PROPERTY: c.structure.volume / len(c.structure)}, "embedded", row)
    return {**to_item(record), "prototype": c.prototype, "spacegroup": c.spacegroup, "oxidation": c.oxidation_states, "split": c.split}


def load_or_build(cache_dir: Path) -> tuple[list[dict], bool]:
    """The embedded set as cache items from ``cache_dir``, built and written there when absent: (items, built)."""
    key = _cache_key()
    path = cache_dir / "embedded" / f"embedded-{key[:16]}.pt"
    hit = cache.read_items(path, key)
    if hit is not None:
        return hit[0], False
    start = time.perf_counter()
    items = [_to_item(c, i) for i, c in enumerate(build_embedded())]
    cache.write_items(path, key, items, {"build_seconds": time.perf_counter() - start})
    return items, True


_in_memory: list[dict] | None = None


def embedded_items(cache_dir: Path | None = None) -> list[dict]:
    """The embedded set as cache items: from this process's memory, else the disk cache, else built."""
    global _in_memory
    if _in_memory is None:
        _in_memory = load_or_build(Path(cache_dir or cache.cache_root()))[0]
    return list(_in_memory)


def embedded_records(split: str, cache_dir: Path | None = None) -> list[CrystalRecord]:
    return [from_item(it) for it in embedded_items(cache_dir) if it["split"] == split]
