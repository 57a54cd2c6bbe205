"""Benchmark of the learned/physics metrics (docs/benchmarks.md, "Property models"; docs/property_models.md).

Parts:

* ``mae``: CDVAE's property model of a dataset on its test split (or a seeded subset): MAE, RMSE and median
  absolute error against the split's property column, NaN count, and the time per crystal of the two stages
  (CrystalNN graphs over ``--workers`` processes; DimeNet++ in batches). An ``--ablation`` flag re-runs the model
  on the same graphs with each faithful detail undone (unmasked envelope, CDVAE's triplet rule, lin_up bias) to
  show which of them matter.
* ``chgnet``: CHGNet energies + crystal features per crystal, and bounded relaxations, on test crystals.
* ``sun``: S.U.N. of ``--n`` validation crystals (known, DFT-relaxed, not in train: a sanity check that they come
  out mostly stable and novel) against the test split + the train split, timing the hull (CHGNet on every
  reference and train crystal, then cached) and the rest; then ``fcd`` of the same crystals against the test split.

Usage (2-core CPU, no GPU):
    CRYSTALGEN_DATA=DATA CRYSTALGEN_CDVAE_PROP_MODELS=PROP_MODELS \\
        python bench/property_models.py mae --dataset perov_5 [--n 200] [--ablation]
    CRYSTALGEN_DATA=DATA python bench/property_models.py chgnet --dataset mp_20 --n 500 --relax 20
    CRYSTALGEN_DATA=DATA python bench/property_models.py sun --dataset mp_20 --n 100

``--out FILE`` also writes the results, with the command, commit, machine, versions and load (bench/provenance.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

COLUMNS = {"perov_5": "heat_ref", "carbon_24": "energy_per_atom", "mp_20": "formation_energy_per_atom"}


def _test_split(dataset: str, n: int | None) -> pd.DataFrame:
    frame = pd.read_csv(os.path.join(os.environ["CRYSTALGEN_DATA"], dataset, "test.csv"))
    return frame.sample(n=n, random_state=0) if n and n < len(frame) else frame


def _errors(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(predicted)
    err = predicted[ok] - truth[ok]
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean())), "median_ae": float(np.median(np.abs(err))), "n_nan": int((~ok).sum())}


def run_mae(args: argparse.Namespace) -> dict:
    from crystalgen.metrics.cdvae_property import predictor as cdvae
    from crystalgen.metrics.cdvae_property.crystalnn_graph import crystalnn_graphs
    from crystalgen.metrics.properties import get_predictor

    frame = _test_split(args.dataset, args.n)
    structures = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    truth = frame[COLUMNS[args.dataset]].to_numpy(dtype=float)
    predictor = get_predictor(f"cdvae_{args.dataset}", workers=args.workers, progress=True)
    start = time.perf_counter()
    graphs = list(crystalnn_graphs(structures, workers=args.workers, progress=True))
    seconds_graphs = time.perf_counter() - start
    cdvae.crystalnn_graphs = lambda *_, **__: iter(graphs)  # time the network alone on the same graphs
    start = time.perf_counter()
    predicted = predictor.predict(structures)
    seconds_model = time.perf_counter() - start
    out = {"dataset": args.dataset, "column": COLUMNS[args.dataset], "n": len(structures), **_errors(predicted, truth),
           "column_std": float(truth.std()), "mae_of_predicting_the_mean": float(np.abs(truth - truth.mean()).mean()),
           "seconds_per_crystal_crystalnn": seconds_graphs / len(structures), "seconds_per_crystal_dimenet": seconds_model / len(structures),
           "workers": args.workers}  # fmt: skip
    if args.ablation:
        out["ablation_mae"] = _ablation(predictor, structures, truth, cdvae)
    return out


def _ablation(predictor, structures, truth, cdvae) -> dict[str, float]:
    from torch_geometric.nn.models.dimenet import Envelope

    from crystalgen.encoders.dimenet_pp.network import PolynomialEnvelope
    from crystalgen.geometry.triplets import triplets

    model, maes = predictor.model, {}
    model.rbf.envelope = model.sbf.envelope = Envelope(5)
    maes["envelope_cut_at_cutoff (PyG >= 2.0.5)"] = _errors(predictor.predict(structures), truth)["mae"]
    model.rbf.envelope = model.sbf.envelope = PolynomialEnvelope(5)
    cdvae.triplets = lambda edge_index, offsets, n, exclude_same_atom: triplets(edge_index, offsets, n, exclude_same_atom=False)
    maes["triplets_only_backtracking_excluded"] = _errors(predictor.predict(structures), truth)["mae"]
    cdvae.triplets = triplets
    for block in model.output_blocks:
        block.lin_up.bias.data.zero_()
    maes["lin_up_bias_dropped (current PyG layer)"] = _errors(predictor.predict(structures), truth)["mae"]
    return maes


def run_chgnet(args: argparse.Namespace) -> dict:
    from crystalgen.metrics.chgnet_backend import CHGNET_MODEL, chgnet_predict, relax_structures

    frame = _test_split(args.dataset, args.n)
    structures = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    chgnet_predict(structures[:2])  # load the model outside the timing
    start, cpu = time.perf_counter(), time.process_time()
    out = chgnet_predict(structures, progress=True)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    result = {"dataset": args.dataset, "n": len(structures), "model": CHGNET_MODEL, "seconds_per_crystal_energy_and_fea": seconds / len(structures),
              "cpu_seconds_per_crystal_energy_and_fea": cpu / len(structures), "n_nan": int(np.isnan(out["energy"]).sum())}  # fmt: skip
    if args.relax:
        start = time.perf_counter()
        relaxed = relax_structures(structures[: args.relax], fmax=0.1, max_steps=args.max_steps, workers=args.workers, progress=True)
        result.update(relax_n=args.relax, relax_max_steps=args.max_steps, seconds_per_relaxation=(time.perf_counter() - start) / args.relax,
                      relax_mean_steps=float(np.mean([r.steps for r in relaxed if r.steps >= 0])),
                      relax_converged=int(sum(r.converged for r in relaxed)))  # fmt: skip
    return result


def run_sun(args: argparse.Namespace) -> dict:
    from crystalgen.metrics.frechet import frechet_distance
    from crystalgen.metrics.sun import sun_metrics

    def split(name: str) -> list[Structure]:
        frame = pd.read_csv(os.path.join(os.environ["CRYSTALGEN_DATA"], args.dataset, f"{name}.csv"), usecols=["cif"])
        return [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]

    test, train = split("test"), split("train")
    val = split("val")
    generated = [val[i] for i in np.random.default_rng(0).choice(len(val), size=args.n, replace=False)]
    start = time.perf_counter()
    summary = sun_metrics(generated[:2], test, train, relax=False, workers=args.workers)  # fills the hull cache
    seconds_hull = time.perf_counter() - start
    start = time.perf_counter()
    summary = sun_metrics(generated, test, train, relax=True, max_steps=args.max_steps, workers=args.workers)
    seconds_sun = time.perf_counter() - start
    start = time.perf_counter()
    fcd = frechet_distance(generated, test)
    seconds_fcd = time.perf_counter() - start
    return {"seconds_hull_first_run": seconds_hull, "seconds_sun_cached_hull": seconds_sun, "seconds_fcd_cached_reference": seconds_fcd,
            "n_test": len(test), "n_train": len(train), **summary, **fcd}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["mae", "chgnet", "sun"])
    parser.add_argument("--dataset", choices=list(COLUMNS), required=True)
    parser.add_argument("--n", type=int, default=None, help="seeded subset of the test split (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--relax", type=int, default=0, help="number of crystals to relax (chgnet part)")
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads in the main process")
    parser.add_argument("--out", type=Path, help="also write the results (with command, commit, versions, load) here")
    args = parser.parse_args()
    start = provenance()
    warnings.simplefilter("ignore")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = {"mae": run_mae, "chgnet": run_chgnet, "sun": run_sun}[args.part](args)
    result["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU"
    result["torch_threads"] = args.threads or "default"
    result["load_average_at_end"] = os.getloadavg()[0]
    result["provenance"] = start
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
