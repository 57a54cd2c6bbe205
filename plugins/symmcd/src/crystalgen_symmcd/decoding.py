"""Final state -> crystals: lattice from k, Wyckoff projection and replication, pymatgen Structure.

Never raises for a bad sample: non-finite values, a degenerate cell or a projection that fails become a
:class:`~crystalgen.models.Decoded` with the reason, and the per-crystal ``info`` says what the projection did
(how many site symmetries were invalid in G and moved, how far representatives moved, merged orbits).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from pymatgen.core import Element, Lattice, Structure
from torch import Tensor

from crystalgen import Condition, Decoded, Decoder, DecoderSpec, k_to_lattice
from crystalgen_symmcd.wyckoff_projection import replicate

MIN_VOLUME = 1e-3  # Angstrom^3
MAX_LENGTH = 1000.0  # Angstrom; longer cell vectors are reported (the official evaluation refuses > 1000 A too)


def decode_crystal(spacegroup: int, k: Tensor, frac_coords: Tensor, atom_types: Tensor, site_symmetry: Tensor) -> Decoded:
    """One crystal from its representation.

    Args:
        spacegroup: G, 1..230.
        k: (6,) lattice parameters (already masked for G).
        frac_coords: (M, 3) representatives, fractional.
        atom_types: (M,) atomic numbers.
        site_symmetry: (M, 15) site-symmetry class indices.

    Every failure's ``info`` holds the sampled ``spacegroup``, like a success's.
    """
    def failed(reason: str) -> Decoded:  # the sampled G stays visible in samples.jsonl for failures too
        return Decoded(None, reason, {"spacegroup": int(spacegroup)})

    if atom_types.numel() == 0:
        return failed("no representatives")
    if not torch.isfinite(k).all():
        return failed("non-finite lattice k")
    if not torch.isfinite(frac_coords).all():
        return failed("non-finite coordinates")
    lattice, valid = k_to_lattice(k.double().reshape(1, 6), strict=False)
    if not bool(valid.all()):
        return failed("lattice k overflows")
    L = lattice[0].cpu().numpy()
    longest = float(np.linalg.norm(L, axis=1).max())
    if longest > MAX_LENGTH:
        return failed(f"cell too large (a lattice vector of {longest:.3g} A)")
    volume = abs(float(np.linalg.det(L)))
    if volume < MIN_VOLUME:
        return failed(f"degenerate cell (volume {volume:.2e} A^3)")
    if int(atom_types.min()) < 1 or int(atom_types.max()) > 118:
        return failed(f"atomic number outside 1..118 ({int(atom_types.min())}..{int(atom_types.max())})")
    try:
        crystal = replicate(int(spacegroup), L, frac_coords.double().cpu().numpy(), atom_types.cpu().numpy(),
                            site_symmetry.cpu().numpy())
        species = [Element.from_Z(int(z)) for z in crystal.atom_types]
        structure = Structure(Lattice(L), species, crystal.frac_coords, coords_are_cartesian=False)
    except Exception as exc:  # a projection or pymatgen failure is a reported sample failure, not a crash
        return failed(f"projection failed: {type(exc).__name__}: {exc}")
    return Decoded(structure, None, crystal.info)


class WyckoffDecoder(Decoder):
    """Registered as decoder ``symmcd_wyckoff``: each crystal's lattice from k, its representatives projected onto
    the Wyckoff positions of G and replicated (App. A), one :func:`decode_crystal` per crystal.

    Reads ``lattice_k`` (B, 6), ``frac_coords`` (M, 3) fractional representatives, ``atom_types`` (M,) atomic
    numbers and ``site_symmetry`` (M, 15) class indices, and the conditions ``spacegroup`` (B,) and ``crystal`` (M,)
    (representative -> crystal).
    """

    spec = DecoderSpec(reads=frozenset({"lattice_k", "frac_coords", "atom_types", "site_symmetry"}),
                       conditions=frozenset({"spacegroup", "crystal"}))

    def __call__(self, state: Mapping[str, Tensor], condition: Condition) -> list[Decoded]:
        crystal = condition.data["crystal"].cpu()
        lattice_k, frac, types, sites = (state[k].cpu() for k in ("lattice_k", "frac_coords", "atom_types", "site_symmetry"))
        out = []
        for b, g in enumerate(condition.data["spacegroup"].tolist()):
            rows = crystal == b
            out.append(decode_crystal(g, lattice_k[b], frac[rows], types[rows], sites[rows]))
        return out
