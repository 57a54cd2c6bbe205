"""SyMat's VAE on held-out crystals: does z = mu(M) decode back to the composition and lattice of M?

Each crystal of the split goes through the checkpoint's transform and encoder; the posterior mean is decoded by
the VAE heads (section 3.3: k, top-k elements, counts; six lattice values). Reported: accuracy of k, of the element
set, of the whole atom-type multiset (every count right), of the per-element counts given the true elements, and
the lattice errors (mean absolute relative error of the lengths, mean absolute error of the angles in degrees),
both with the decoded N (the lengths are scaled by it) and over the crystals whose N is right. The coordinates are
not sampled (that is ``crystalgen reconstruct``). Writes JSON with the command, commit, versions and load average.

    CRYSTALGEN_DATA=DATA OMP_NUM_THREADS=1 nice -n 10 python bench/symat_vae_reconstruction.py \
        --ckpt RUN/checkpoints/best.ckpt --data perov_5 --split test --out bench/results/symat_vae_reconstruction_perov_5.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data", default="perov_5")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-rows", type=int, default=None, help="first rows of the split only")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from crystalgen import collate, lattice_matrix_to_params
    from crystalgen.runner.datasets import prepared_split
    from crystalgen.runner.models import load_trained
    from crystalgen_symat.heads import Composition

    torch.set_num_threads(1)
    started = time.time()
    trained = load_trained(args.ckpt, "cpu")
    model = trained.model
    data_cfg = trained.config.data.copy()
    data_cfg.dataset = args.data
    items = prepared_split(data_cfg, args.split, type(model).transform(trained.config.model), max_rows=args.max_rows,
                           show_progress=False)
    sums = {key: 0.0 for key in ("k", "elements", "multiset", "counts_given_elements", "lengths_mare", "angles_mae",
                                 "lengths_mare_right_n", "angles_mae_right_n", "right_n", "valid_lattice")}
    pairs = 0
    for start in range(0, len(items), args.batch_size):
        batch = collate(items[start:start + args.batch_size])
        with torch.no_grad():
            mu, _ = model.encoder(batch)
            z_a, z_l = model.split(mu)
            decoded = model.heads.decode(z_a, z_l)
            truth = Composition.of(batch.atom_types, batch.batch, batch.num_graphs, model.num_elements)
            crystal, element = truth.present.nonzero(as_tuple=True)
            counts = model.heads.count_logits(z_a, crystal, element).argmax(-1) + 1
        sums["k"] += float((decoded.composition.k == truth.k).sum())
        sums["elements"] += float((decoded.composition.present == truth.present).all(1).sum())
        sums["multiset"] += float((decoded.composition.counts == truth.counts).all(1).sum())
        sums["counts_given_elements"] += float((counts == truth.counts[crystal, element]).sum())
        pairs += crystal.numel()
        lengths, angles = lattice_matrix_to_params(batch.lattice.double())
        length_error = ((decoded.lengths - lengths).abs() / lengths).mean(1)
        angle_error = (decoded.angles - angles).abs().mean(1)
        right_n = decoded.composition.num_atoms == truth.num_atoms
        sums["lengths_mare"] += float(length_error.sum())
        sums["angles_mae"] += float(angle_error.sum())
        sums["lengths_mare_right_n"] += float(length_error[right_n].sum())
        sums["angles_mae_right_n"] += float(angle_error[right_n].sum())
        sums["right_n"] += float(right_n.sum())
        sums["valid_lattice"] += float(decoded.valid.sum())
    n = len(items)
    right = max(sums["right_n"], 1.0)
    metrics = {
        "crystals": n,
        "k_accuracy": sums["k"] / n,
        "element_set_accuracy": sums["elements"] / n,
        "multiset_accuracy": sums["multiset"] / n,
        "count_accuracy_given_elements": sums["counts_given_elements"] / max(pairs, 1),
        "num_atoms_accuracy": sums["right_n"] / n,
        "valid_lattice_rate": sums["valid_lattice"] / n,
        "lengths_mean_abs_relative_error": sums["lengths_mare"] / n,
        "angles_mean_abs_error_deg": sums["angles_mae"] / n,
        "lengths_mean_abs_relative_error_right_n": sums["lengths_mare_right_n"] / right,
        "angles_mean_abs_error_deg_right_n": sums["angles_mae_right_n"] / right,
    }
    report = {
        "command": " ".join([sys.executable, *sys.argv]),
        "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "checkpoint": args.ckpt, "data": f"{args.data}:{args.split}", "preset": trained.config.get("preset"),
        "versions": {name: version(name) for name in ("crystalgen-core", "crystalgen-symat", "torch")},
        "host": platform.node(), "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(),
        "seconds": round(time.time() - started, 1), "metrics": metrics,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
