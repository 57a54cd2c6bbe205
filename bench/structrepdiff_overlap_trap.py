"""Is a pair of atoms on one point a trap of StructRepDiff's reconstruction loss? (docs/structrepdiff.md)

Takes a test crystal at its true positions, moves one atom to distance r from another along a fixed direction, and
prints the relative L1 loss against the crystal's true R_str (the reconstruction's loss, paper-preset descriptor)
with the gradient on the moved atom along that direction. A positive slope for small r means gradient descent pulls
the two atoms together.

    CRYSTALGEN_DATA=DATA python bench/structrepdiff_overlap_trap.py --dataset mp_20 --id mp-1226030 \
        --out bench/results/structrepdiff_overlap_trap_mp-1226030.json

``--out`` writes the table with the command, commit, versions and load (bench/provenance.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from crystalgen.testing import benchmark_structures
from crystalgen_structrepdiff.descriptor import StructureDescriptor
from crystalgen_structrepdiff.model import StructRepDiff
from crystalgen_structrepdiff.transform import ead_parameters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

SEPARATIONS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mp_20")
    p.add_argument("--id", required=True, help="material_id of a test crystal")
    p.add_argument("--atoms", default="0,1", help="I,J: atom J is moved next to atom I")
    p.add_argument("--preset", default="paper", help="whose EAD parameters")
    p.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = p.parse_args()
    start = provenance()
    torch.set_num_threads(1)
    structure = dict(benchmark_structures(args.dataset, "test"))[args.id]
    i, j = (int(k) for k in args.atoms.split(","))
    ead = OmegaConf.load(StructRepDiff.presets()[args.preset]).model.transform.ead
    descriptor = StructureDescriptor(ead_parameters(ead), "table", dtype=torch.float64)
    positions = torch.tensor(structure.cart_coords)
    numbers = torch.tensor(structure.atomic_numbers)
    lattice = torch.tensor(structure.lattice.matrix).unsqueeze(0)
    count = torch.tensor([len(structure)])
    target = descriptor.of_cells(positions, numbers, lattice, count)[0]
    scale = target.abs().mean()
    direction = torch.tensor([1.0, 0.3, 0.2], dtype=torch.float64)
    direction = direction / direction.norm()
    print(f"{args.id} {structure.composition.reduced_formula}: atom {j} ({structure[j].specie}) moved to r from atom "
          f"{i} ({structure[i].specie}); true d_min {float(target[-1]):.2f} A")
    print("   r (A)   loss     d loss / d r")
    rows = []
    for r in SEPARATIONS:
        moved = positions.clone()
        moved[j] = positions[i] + r * direction
        moved.requires_grad_(True)
        R = descriptor(moved, numbers, count, descriptor.pairs(moved, lattice, count))[0]
        loss = (R - target).abs().mean() / scale
        (grad,) = torch.autograd.grad(loss, moved)
        print(f"  {r:5.2f}   {loss.item():.4f}   {(grad[j] @ direction).item():+.4f}")
        rows.append({"r": r, "loss": loss.item(), "slope": (grad[j] @ direction).item()})
    if args.out:
        args.out.write_text(json.dumps({
            "id": args.id, "dataset": args.dataset, "formula": structure.composition.reduced_formula, "preset": args.preset,
            "moved_atom": {"index": j, "element": str(structure[j].specie)},
            "fixed_atom": {"index": i, "element": str(structure[i].specie)},
            "true_d_min": float(target[-1]), "rows": rows, "provenance": start}, indent=1) + "\n")


if __name__ == "__main__":
    main()
