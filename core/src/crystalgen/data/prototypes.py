"""Structure prototypes and element families of the embedded dataset (:mod:`crystalgen.data.embedded`).

A prototype is a space group (International Tables number and spglib setting), a lattice system with ranges for
its free axial ratios, Wyckoff sites holding *roles* (A, B, C, X) with ranges for their free coordinates, and the
*bond*: the pair of roles whose shortest distance is set to the sum of the two radii. A family fills the roles
with elements (every combination of the listed candidates, each element used once per crystal), says which
radii apply (``ionic``: Shannon crystal radius for the oxidation state and the role's coordination number;
``covalent``: Slater's atomic radius; ``metallic``: the metallic radius, else Slater's) and, where the compound
is meant to be charge balanced, the oxidation state of each role. ``accept`` filters combinations by a size rule
(Goldschmidt's tolerance factor for perovskites, the radius ratio for Laves phases).

Free parameters stay away from values that raise the symmetry (e.g. chalcopyrite with x = 1/4 and c = 2a is
zincblende), so every crystal keeps the intended space group exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Range = tuple[float, float]


@dataclass(frozen=True)
class Site:
    """A Wyckoff position (label such as ``"4f"``; its multiplicity is checked) holding a role; coordinates are
    numbers or expressions such as ``"x"``, ``"-x"``, ``"1/2+d"`` in the free parameters."""

    role: str
    wyckoff: str
    coords: tuple[str, str, str]


@dataclass(frozen=True)
class Prototype:
    name: str
    spacegroup: int
    setting: str  # spglib's "choice": "" (unique), "1"/"2" (origin), "H" (hexagonal axes)
    system: str  # cubic | tetragonal | hexagonal | orthorhombic
    sites: tuple[Site, ...]
    bond: tuple[str, str]
    coordination: Mapping[str, int]
    ratios: Mapping[str, Range] = field(default_factory=dict)  # "c/a", "b/a"
    params: Mapping[str, Range] = field(default_factory=dict)


Radii = Mapping[str, float]


@dataclass(frozen=True)
class Family:
    prototype: str
    bonding: str  # ionic | covalent | metallic
    candidates: Mapping[str, tuple[str, ...]]
    oxidation: Mapping[str, int] | None = None
    accept: Callable[[Radii], bool] | None = None


def _sites(*entries: tuple[str, str, str]) -> tuple[Site, ...]:
    """``("X", "4f", "x x 0")`` -> Site."""
    return tuple(Site(role, wyckoff, _xyz(coords)) for role, wyckoff, coords in entries)


def _xyz(coords: str) -> tuple[str, str, str]:
    x, y, z = coords.split()
    return x, y, z


PROTOTYPES: dict[str, Prototype] = {
    p.name: p
    for p in [
        Prototype("fcc", 225, "", "cubic", _sites(("A", "4a", "0 0 0")), ("A", "A"), {"A": 12}),
        Prototype("bcc", 229, "", "cubic", _sites(("A", "2a", "0 0 0")), ("A", "A"), {"A": 8}),
        Prototype("hcp", 194, "", "hexagonal", _sites(("A", "2c", "1/3 2/3 1/4")), ("A", "A"), {"A": 12}, {"c/a": (1.57, 1.65)}),
        Prototype("diamond", 227, "1", "cubic", _sites(("A", "8a", "0 0 0")), ("A", "A"), {"A": 4}),
        Prototype("rocksalt", 225, "", "cubic", _sites(("A", "4a", "0 0 0"), ("X", "4b", "1/2 1/2 1/2")), ("A", "X"), {"A": 6, "X": 6}),
        Prototype("cesium_chloride", 221, "", "cubic", _sites(("A", "1a", "0 0 0"), ("X", "1b", "1/2 1/2 1/2")), ("A", "X"), {"A": 8, "X": 8}),
        Prototype("zincblende", 216, "", "cubic", _sites(("A", "4a", "0 0 0"), ("X", "4c", "1/4 1/4 1/4")), ("A", "X"), {"A": 4, "X": 4}),
        Prototype(
            "wurtzite", 186, "", "hexagonal", _sites(("A", "2b", "1/3 2/3 0"), ("X", "2b", "1/3 2/3 u")), ("A", "X"), {"A": 4, "X": 4},
            {"c/a": (1.60, 1.64)}, {"u": (0.374, 0.386)},
        ),
        Prototype("fluorite", 225, "", "cubic", _sites(("A", "4a", "0 0 0"), ("X", "8c", "1/4 1/4 1/4")), ("A", "X"), {"A": 8, "X": 4}),
        Prototype("antifluorite", 225, "", "cubic", _sites(("A", "8c", "1/4 1/4 1/4"), ("X", "4a", "0 0 0")), ("A", "X"), {"A": 4, "X": 8}),
        Prototype(
            "rutile", 136, "", "tetragonal", _sites(("A", "2a", "0 0 0"), ("X", "4f", "x x 0")), ("A", "X"), {"A": 6, "X": 3},
            {"c/a": (0.62, 0.67)}, {"x": (0.300, 0.308)},
        ),
        Prototype(
            "perovskite_cubic", 221, "", "cubic", _sites(("B", "1a", "0 0 0"), ("A", "1b", "1/2 1/2 1/2"), ("X", "3d", "1/2 0 0")),
            ("B", "X"), {"A": 12, "B": 6, "X": 6},
        ),
        Prototype(
            "perovskite_tetragonal", 99, "", "tetragonal",
            _sites(("A", "1a", "0 0 0"), ("B", "1b", "1/2 1/2 1/2+d"), ("X", "1b", "1/2 1/2 -e"), ("X", "2c", "1/2 0 1/2-e")),
            ("B", "X"), {"A": 12, "B": 6, "X": 6}, {"c/a": (1.01, 1.06)}, {"d": (0.015, 0.030), "e": (0.010, 0.030)},
        ),
        Prototype(
            "nickel_arsenide", 194, "", "hexagonal", _sites(("A", "2a", "0 0 0"), ("X", "2c", "1/3 2/3 1/4")), ("A", "X"), {"A": 6, "X": 6},
            {"c/a": (1.30, 1.55)},
        ),
        Prototype(
            "cadmium_iodide", 164, "", "hexagonal", _sites(("A", "1a", "0 0 0"), ("X", "2d", "1/3 2/3 z")), ("A", "X"), {"A": 6, "X": 3},
            {"c/a": (1.50, 1.70)}, {"z": (0.23, 0.27)},
        ),
        Prototype(
            "anatase", 141, "2", "tetragonal", _sites(("A", "4a", "0 3/4 1/8"), ("X", "8e", "0 1/4 z")), ("A", "X"), {"A": 6, "X": 3},
            {"c/a": (2.45, 2.55)}, {"z": (0.079, 0.084)},
        ),
        Prototype(
            "chalcopyrite", 122, "", "tetragonal", _sites(("A", "4a", "0 0 0"), ("B", "4b", "0 0 1/2"), ("X", "8d", "x 1/4 1/8")),
            ("A", "X"), {"A": 4, "B": 4, "X": 4}, {"c/a": (1.95, 1.99)}, {"x": (0.215, 0.245)},
        ),
        Prototype("L1_2", 221, "", "cubic", _sites(("B", "1a", "0 0 0"), ("A", "3c", "0 1/2 1/2")), ("A", "B"), {"A": 12, "B": 12}),
        Prototype(
            "aluminium_diboride", 191, "", "hexagonal", _sites(("A", "1a", "0 0 0"), ("B", "2d", "1/3 2/3 1/2")), ("B", "B"), {"A": 12, "B": 3},
            {"c/a": (1.05, 1.15)},
        ),
        Prototype(
            "corundum", 167, "H", "hexagonal", _sites(("A", "12c", "0 0 z"), ("X", "18e", "x 0 1/4")), ("A", "X"), {"A": 6, "X": 4},
            {"c/a": (2.68, 2.75)}, {"z": (0.348, 0.356), "x": (0.300, 0.312)},
        ),
        Prototype(
            "spinel", 227, "2", "cubic", _sites(("A", "8a", "1/8 1/8 1/8"), ("B", "16d", "1/2 1/2 1/2"), ("X", "32e", "x x x")),
            ("B", "X"), {"A": 4, "B": 6, "X": 4}, {}, {"x": (0.255, 0.265)},
        ),
        Prototype(
            "K2NiF4", 139, "", "tetragonal",
            _sites(("A", "4e", "0 0 z"), ("B", "2a", "0 0 0"), ("X", "4c", "0 1/2 0"), ("X", "4e", "0 0 w")),
            ("B", "X"), {"A": 9, "B": 6, "X": 6}, {"c/a": (3.20, 3.40)}, {"z": (0.352, 0.360), "w": (0.150, 0.165)},
        ),
        Prototype(
            "ThCr2Si2", 139, "", "tetragonal", _sites(("A", "2a", "0 0 0"), ("B", "4d", "0 1/2 1/4"), ("X", "4e", "0 0 z")),
            ("B", "X"), {"A": 8, "B": 4, "X": 4}, {"c/a": (2.40, 3.00)}, {"z": (0.350, 0.380)},
        ),
        Prototype("pyrite", 205, "", "cubic", _sites(("A", "4a", "0 0 0"), ("X", "8c", "x x x")), ("A", "X"), {"A": 6, "X": 4}, {}, {"x": (0.380, 0.392)}),
        Prototype(
            "layered_rocksalt", 166, "H", "hexagonal", _sites(("B", "3a", "0 0 0"), ("A", "3b", "0 0 1/2"), ("X", "6c", "0 0 z")),
            ("B", "X"), {"A": 6, "B": 6, "X": 6}, {"c/a": (4.80, 5.20)}, {"z": (0.235, 0.260)},
        ),
        Prototype("A15", 223, "", "cubic", _sites(("A", "6c", "1/4 0 1/2"), ("B", "2a", "0 0 0")), ("A", "B"), {"A": 14, "B": 12}),
        Prototype("laves_C15", 227, "2", "cubic", _sites(("A", "8a", "1/8 1/8 1/8"), ("B", "16d", "1/2 1/2 1/2")), ("B", "B"), {"A": 16, "B": 12}),
        Prototype(
            "marcasite", 58, "", "orthorhombic", _sites(("A", "2a", "0 0 0"), ("X", "4g", "x y 0")), ("A", "X"), {"A": 6, "X": 4},
            {"b/a": (1.21, 1.23), "c/a": (0.75, 0.77)}, {"x": (0.195, 0.210), "y": (0.370, 0.380)},
        ),
        Prototype(
            "molybdenite_2H", 194, "", "hexagonal", _sites(("A", "2c", "1/3 2/3 1/4"), ("X", "4f", "1/3 2/3 z")), ("A", "X"), {"A": 6, "X": 3},
            {"c/a": (3.80, 4.00)}, {"z": (0.615, 0.630)},
        ),
        Prototype("hexaboride", 221, "", "cubic", _sites(("A", "1a", "0 0 0"), ("B", "6f", "x 1/2 1/2")), ("B", "B"), {"A": 24, "B": 5}, {}, {"x": (0.195, 0.210)}),
        Prototype(
            "heusler", 225, "", "cubic", _sites(("A", "8c", "1/4 1/4 1/4"), ("B", "4a", "0 0 0"), ("C", "4b", "1/2 1/2 1/2")),
            ("A", "B"), {"A": 8, "B": 8, "C": 8},
        ),
        Prototype(
            "half_heusler", 216, "", "cubic", _sites(("A", "4c", "1/4 1/4 1/4"), ("B", "4a", "0 0 0"), ("C", "4b", "1/2 1/2 1/2")),
            ("A", "B"), {"A": 8, "B": 4, "C": 4},
        ),
        Prototype("cuprite", 224, "2", "cubic", _sites(("X", "2a", "1/4 1/4 1/4"), ("A", "4b", "0 0 0")), ("A", "X"), {"A": 2, "X": 4}),
    ]
}


def tolerance_factor(r: Radii) -> float:
    """Goldschmidt's t = (r_A + r_X) / (sqrt 2 (r_B + r_X)); about 1 for an ideal cubic perovskite."""
    return (r["A"] + r["X"]) / (math.sqrt(2) * (r["B"] + r["X"]))


def _between(lo: float, hi: float, measure: Callable[[Radii], float]) -> Callable[[Radii], bool]:
    return lambda r: lo <= measure(r) <= hi


_cubic_perovskite = _between(0.88, 1.05, tolerance_factor)
_tetragonal_perovskite = _between(1.00, 1.10, tolerance_factor)


def _els(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FAMILIES: tuple[Family, ...] = (
    Family("fcc", "metallic", {"A": _els("Cu Ag Au Ni Pd Pt Al Pb Rh Ir Ca Sr")}),
    Family("bcc", "metallic", {"A": _els("Li Na K Rb Cs V Nb Ta Cr Mo W Fe Ba Eu")}),
    Family("hcp", "metallic", {"A": _els("Be Mg Sc Ti Co Zn Y Zr Ru Cd Hf Re Os Gd")}),
    Family("diamond", "covalent", {"A": _els("C Si Ge Sn")}),
    Family("rocksalt", "ionic", {"A": _els("Mg Ca Sr Ba Mn Fe Co Ni Cd Eu Pb"), "X": _els("O S Se Te")}, {"A": 2, "X": -2}),
    Family("rocksalt", "ionic", {"A": _els("Li Na K Rb Ag"), "X": _els("F Cl Br I")}, {"A": 1, "X": -1}),
    Family("rocksalt", "ionic", {"A": _els("Sc Y La Ce Gd"), "X": ("N",)}, {"A": 3, "X": -3}),
    Family("cesium_chloride", "ionic", {"A": _els("Cs Tl"), "X": _els("Cl Br I")}, {"A": 1, "X": -1}),
    Family("cesium_chloride", "metallic", {"A": _els("Fe Co Ni Cu Pd"), "X": _els("Al Ga Zn")}),
    Family("zincblende", "covalent", {"A": _els("B Al Ga In"), "X": _els("N P As Sb")}, {"A": 3, "X": -3}),
    Family("zincblende", "covalent", {"A": _els("Be Zn Cd Hg"), "X": _els("S Se Te")}, {"A": 2, "X": -2}),
    Family("zincblende", "covalent", {"A": _els("Cu Ag"), "X": _els("Cl Br I")}, {"A": 1, "X": -1}),
    Family("zincblende", "covalent", {"A": ("Si",), "X": ("C",)}, {"A": 4, "X": -4}),
    Family("wurtzite", "covalent", {"A": _els("Al Ga In"), "X": ("N",)}, {"A": 3, "X": -3}),
    Family("wurtzite", "covalent", {"A": _els("Be Mg Zn Cd"), "X": _els("O S Se")}, {"A": 2, "X": -2}),
    Family("fluorite", "ionic", {"A": _els("Ca Sr Ba Cd Pb Eu"), "X": ("F",)}, {"A": 2, "X": -1}),
    Family("fluorite", "ionic", {"A": _els("Sr Ba"), "X": ("Cl",)}, {"A": 2, "X": -1}),
    Family("fluorite", "ionic", {"A": _els("Zr Hf Ce Th U"), "X": ("O",)}, {"A": 4, "X": -2}),
    Family("antifluorite", "ionic", {"A": _els("Li Na K Rb"), "X": _els("O S Se Te")}, {"A": 1, "X": -2}),
    Family("rutile", "ionic", {"A": _els("Ti V Cr Mn Ge Sn Ru Ir Os Pb"), "X": ("O",)}, {"A": 4, "X": -2}),
    Family("rutile", "ionic", {"A": _els("Mg Mn Fe Co Ni Zn"), "X": ("F",)}, {"A": 2, "X": -1}),
    Family("perovskite_cubic", "ionic", {"A": _els("Ca Sr Ba Pb Eu"), "B": _els("Ti Zr Hf Sn Mn V Ru Ir Ce Ge"), "X": ("O",)},
           {"A": 2, "B": 4, "X": -2}, _cubic_perovskite),
    Family("perovskite_cubic", "ionic", {"A": _els("Na K Rb Cs Tl"), "B": _els("Mg Ca Mn Fe Co Ni Cu Zn Cd"), "X": ("F",)},
           {"A": 1, "B": 2, "X": -1}, _cubic_perovskite),
    Family("perovskite_cubic", "ionic", {"A": _els("La Pr Nd"), "B": _els("Al Ga Cr Mn Fe Co V In"), "X": ("O",)},
           {"A": 3, "B": 3, "X": -2}, _cubic_perovskite),
    Family("perovskite_cubic", "ionic", {"A": _els("Na K Ag"), "B": _els("Nb Ta"), "X": ("O",)}, {"A": 1, "B": 5, "X": -2}, _cubic_perovskite),
    Family("perovskite_cubic", "ionic", {"A": _els("K Rb Cs"), "B": _els("Pb Ge"), "X": _els("Cl Br I")},
           {"A": 1, "B": 2, "X": -1}, _cubic_perovskite),
    Family("perovskite_tetragonal", "ionic", {"A": _els("Ba Pb Sr"), "B": _els("Ti Zr Hf Sn V Ge"), "X": ("O",)},
           {"A": 2, "B": 4, "X": -2}, _tetragonal_perovskite),
    Family("perovskite_tetragonal", "ionic", {"A": _els("K Rb"), "B": _els("Nb Ta"), "X": ("O",)}, {"A": 1, "B": 5, "X": -2}, _tetragonal_perovskite),
    Family("nickel_arsenide", "covalent", {"A": _els("Ti V Cr Mn Fe Co Ni"), "X": _els("S Se Te Sb")}),
    Family("cadmium_iodide", "ionic", {"A": _els("Mg Ca Mn Fe Co Ni Zn Cd Pb"), "X": _els("Cl Br I")}, {"A": 2, "X": -1}),
    Family("cadmium_iodide", "ionic", {"A": _els("Ti Zr Hf Sn Pt"), "X": _els("S Se Te")}, {"A": 4, "X": -2}),
    Family("anatase", "ionic", {"A": _els("Ti Ge Sn Pb"), "X": ("O",)}, {"A": 4, "X": -2}),
    Family("chalcopyrite", "covalent", {"A": _els("Cu Ag"), "B": _els("Al Ga In Fe"), "X": _els("S Se Te")}, {"A": 1, "B": 3, "X": -2}),
    Family("L1_2", "metallic", {"A": _els("Ni Cu Pd Pt"), "B": _els("Al Ga Au Sn Mn Ti")}),
    Family("aluminium_diboride", "covalent", {"A": _els("Mg Al Sc Ti V Cr Zr Nb Hf Ta"), "B": ("B",)}),
    Family("corundum", "ionic", {"A": _els("Al Ga Cr Fe V Ti Rh In"), "X": ("O",)}, {"A": 3, "X": -2}),
    Family("spinel", "ionic", {"A": _els("Mg Zn Fe Co Ni Mn"), "B": _els("Al Ga Cr Fe V"), "X": ("O",)}, {"A": 2, "B": 3, "X": -2}),
    Family("K2NiF4", "ionic", {"A": _els("K Rb"), "B": _els("Mg Mn Co Ni Zn Cu"), "X": ("F",)}, {"A": 1, "B": 2, "X": -1}),
    Family("K2NiF4", "ionic", {"A": _els("Ca Sr Ba"), "B": _els("Ti Zr Hf Sn Ru Mn"), "X": ("O",)}, {"A": 2, "B": 4, "X": -2}),
    Family("K2NiF4", "ionic", {"A": _els("La Pr Nd"), "B": _els("Ni Cu Co"), "X": ("O",)}, {"A": 3, "B": 2, "X": -2}),
    Family("ThCr2Si2", "covalent", {"A": _els("Ca Sr Ba Eu"), "B": _els("Mn Fe Co Ni"), "X": _els("P As")}),
    Family("pyrite", "covalent", {"A": _els("Mn Fe Co Ni Cu Zn Ru Os"), "X": _els("S Se")}),
    Family("layered_rocksalt", "ionic", {"A": _els("Li Na"), "B": _els("Co Ni Cr V Fe Ti Mn"), "X": ("O",)}, {"A": 1, "B": 3, "X": -2}),
    Family("A15", "metallic", {"A": _els("V Nb Ta Cr Mo"), "B": _els("Si Ge Sn Al Ga Ir")}),
    Family("laves_C15", "metallic", {"A": _els("Mg Ca Zr Hf Y Gd"), "B": _els("Al Fe Co Ni Cu")}, None,
           _between(1.05, 1.45, lambda r: r["A"] / r["B"])),
    Family("marcasite", "covalent", {"A": _els("Fe Co Ni Ru Os Cr"), "X": _els("S Se Te")}),
    Family("molybdenite_2H", "covalent", {"A": _els("Mo W Nb Ta"), "X": _els("S Se Te")}),
    Family("hexaboride", "covalent", {"A": _els("Ca Sr Ba La Ce Pr Nd Sm Eu Gd Y Yb"), "B": ("B",)}),
    Family("heusler", "metallic", {"A": _els("Co Ni Fe"), "B": _els("Ti Mn V Zr"), "C": _els("Al Ga Sn Si")}),
    Family("half_heusler", "metallic", {"A": _els("Ni Co Pd Pt"), "B": _els("Ti Zr Hf Sc"), "C": _els("Sn Sb")}),
    Family("cuprite", "ionic", {"A": _els("Cu Ag"), "X": ("O",)}, {"A": 1, "X": -2}),
)
