"""Structure -> representation -> structure, through exactly the code paths of training and sampling.

The forward half is the preprocessing transform (what the model trains on); the backward half is the
sampler's decoder (lattice from k, Wyckoff projection of S and X', replication). A crystal passes when
pymatgen's StructureMatcher (default tolerances) matches the rebuilt conventional cell with the original.
For a few cells pymatgen's primitive reduction fails to pair a conventional cell with the original primitive
one (e.g. mp-561367); we then retry with ``attempt_supercell=True`` and report those matches separately.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from crystalgen import SkipCrystal
from crystalgen_symmcd.decoding import decode_crystal
from crystalgen_symmcd.transform import AsymmetricUnitTransform


@dataclass(frozen=True)
class RoundTrip:
    """Outcome for one crystal: ``status`` is "match", "match_supercell", "no_match", "skipped" or "decode_failed"."""

    status: str
    reason: str = ""
    spacegroup: int | None = None
    num_representatives: int | None = None
    num_atoms: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("match", "match_supercell")


def round_trip(structure: Structure, transform: AsymmetricUnitTransform | None = None) -> RoundTrip:
    transform = transform or AsymmetricUnitTransform()
    try:
        data = transform(structure)
    except SkipCrystal as exc:
        return RoundTrip("skipped", str(exc))
    g, m = int(data.spacegroup), int(data.atom_types.shape[0])
    decoded = decode_crystal(g, data.lattice_k[0], data.frac_coords, data.atom_types, data.site_symmetry)
    rebuilt = decoded.structure
    if rebuilt is None:
        return RoundTrip("decode_failed", decoded.reason or "", g, m)
    if StructureMatcher().fit(structure, rebuilt):
        return RoundTrip("match", "", g, m, len(rebuilt))
    if StructureMatcher(attempt_supercell=True).fit(structure, rebuilt):
        return RoundTrip("match_supercell", "matched only with attempt_supercell=True", g, m, len(rebuilt))
    reason = (f"rebuilt {rebuilt.composition.reduced_formula} with {len(rebuilt)} atoms in G={g} does not match the "
              f"original {structure.composition.reduced_formula} with {len(structure)} atoms")
    return RoundTrip("no_match", reason, g, m, len(rebuilt))
