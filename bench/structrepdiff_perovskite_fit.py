"""Is a generated Perov-5 representation failed by its decoding or by itself? (docs/benchmarks.md)

Draws the first batch of representations exactly as `crystalgen sample` does (same seed, the checkpoint's sampler,
up to 100 crystals), reads atoms and cell from each, and compares two relative L1 losses against its R_str: that of
the ideal cubic perovskite arrangement of the decoded atoms in the decoded cell (A at the origin, B at the body
centre, X at the face centres; every assignment of the atoms to the sites is tried and the best kept), and that of
the crystal the decoder wrote to the sample directory. If the search beats the ideal arrangement, a longer search
cannot bring the crystal closer to a perovskite: the representation itself is far from one.

    python bench/structrepdiff_perovskite_fit.py --ckpt RUN/checkpoints/best.ckpt --samples samples/ -n 30
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import torch
from pymatgen.core import Structure

from crystalgen.runner.models import checkpoint_sampler, load_trained
from crystalgen.state import SampleRequest
from crystalgen_structrepdiff.decoding import CellRequest, read_cell
from crystalgen_structrepdiff.descriptor import StructureDescriptor

#: fractional sites of the cubic perovskite ABX3: A, B, then the three X
PEROVSKITE_SITES = torch.tensor([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], dtype=torch.float64)


def relative_l1(descriptor: StructureDescriptor, positions: torch.Tensor, numbers: torch.Tensor, lattice: torch.Tensor,
                target: torch.Tensor) -> float:
    """The reconstruction's loss (plain L1 divided by the target's mean |R_str|) of one fixed structure."""
    r = descriptor.of_cells(positions, numbers, lattice.unsqueeze(0), torch.tensor([numbers.numel()]))[0].double()
    return float((r - target).abs().mean() / target.abs().mean())


def best_perovskite(descriptor: StructureDescriptor, cell: CellRequest) -> float:
    lattice, target = cell.lattice.double(), cell.target.double()
    positions = PEROVSKITE_SITES @ lattice
    return min(relative_l1(descriptor, positions, torch.tensor(order), lattice, target)
               for order in set(itertools.permutations(cell.atomic_numbers.tolist())))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--samples", type=Path, required=True, help="sample directory of `crystalgen sample` (seed 0)")
    p.add_argument("-n", type=int, default=30, help="crystals to compare (at most 100, the first batch)")
    p.add_argument("--seed", type=int, default=0, help="the seed the samples were drawn with")
    args = p.parse_args()
    torch.set_num_threads(1)
    trained = load_trained(args.ckpt)
    model = trained.model.eval()
    sampler = checkpoint_sampler(trained, None, None, None)
    torch.manual_seed(args.seed)  # as crystalgen.runner.sampling.generate
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        state = sampler.run(model, model.prepare_sampling(SampleRequest(100)), generator=generator)
    raw = model.scaler.denormalise(state["representation"])[: args.n]
    descriptor = model.decoder.reconstructor(model.scaler.std).descriptor
    rows = [json.loads(line) for line in (args.samples / "samples.jsonl").read_text().splitlines()]
    pairs = []
    for i, representation in enumerate(raw):
        cell = read_cell(representation, model.layout, int(model.max_atoms_seen))
        if isinstance(cell, str) or cell.atomic_numbers.numel() != len(PEROVSKITE_SITES) or not rows[i].get("cif"):
            continue
        decoded = Structure.from_file(args.samples / rows[i]["cif"])
        found = relative_l1(descriptor, torch.tensor(decoded.cart_coords), torch.tensor(decoded.atomic_numbers),
                            torch.tensor(decoded.lattice.matrix), cell.target.double())
        ideal = best_perovskite(descriptor, cell)
        pairs.append((ideal, found))
        print(f"{i:3d} {decoded.composition.reduced_formula:12s} ideal perovskite {ideal:.3f}   search {found:.3f}")
    print(f"the search beats the ideal perovskite in {sum(f < b for b, f in pairs)} of {len(pairs)}; median relative L1: "
          f"ideal perovskite {statistics.median(b for b, _ in pairs):.3f}, search {statistics.median(f for _, f in pairs):.3f}")


if __name__ == "__main__":
    main()
