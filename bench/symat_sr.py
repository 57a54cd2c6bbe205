"""SyMat property optimisation (paper section 4.3, Table 2): SR5 / SR10 / SR15 with a property head fitted on the
frozen VAE's latents.

Each protocol runs the core's ``optimize`` task as ``crystalgen optimize symat --ckpt CKPT --input INPUT -n N
--opt-steps STEPS --fit-head-on FIT --property PROPERTY`` does: a new head is fitted on the frozen encoder's latents
of FIT's crystals, then Adam moves each start crystal's latent for STEPS steps and the result is decoded (composition
and lattice from z, coordinates by annealed Langevin). Every decoded crystal is scored by the evaluation suite's
independent property model (``cdvae_perov_5``: CDVAE's DimeNet++ regressor of ``heat_ref``), and a start succeeds at
level k when its best valid decode is at or below CDVAE's published k-th percentile (crystalgen.metrics.optimization).
Also recorded: the mean of the independent prediction over the valid decodes and of each start's best, the start
crystals' own ``heat_ref``, and the 5th/10th/15th percentiles of the property in the val and test splits.

Protocols (``--protocols``, comma-separated; each runs in its own process, ``--jobs`` at a time, one thread each):
  paper              the final z of each start decoded (100 starts -> 100 crystals), Langevin 50 x 100
  trajectory250      CDVAE's protocol: decodes after steps 1, 556, ..., and the last (11 per start), Langevin 50 x 5
  final250           as paper with Langevin 50 x 5 (the sampler's share of the result)
  max250             as final250, maximising (the control: the property must move the other way)

    CRYSTALGEN_DATA=DATA CRYSTALGEN_CDVAE_PROP_MODELS=PROP_MODELS OMP_NUM_THREADS=1 nice -n 10 \\
        python bench/symat_sr.py --ckpt RUN/checkpoints/best.ckpt --work /tmp/symat_sr \\
        --out bench/results/symat_sr_perov_5.json
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from provenance import load_average, provenance  # noqa: E402

#: name -> (direction, Langevin steps per level, decode_every)
PROTOCOLS = {
    "paper": ("min", 100, None),
    "trajectory250": ("min", 5, 555),
    "final250": ("min", 5, None),
    "max250": ("max", 5, None),
}


def run_protocol(args: argparse.Namespace, name: str) -> dict:
    """One protocol in this process: optimise, then score every decode with the independent model."""
    import numpy as np

    from crystalgen.data.registry import get_dataset
    from crystalgen.metrics import optimization_success
    from crystalgen.metrics.cdvae_constants import SR_PERCENTILES
    from crystalgen.metrics.properties import default_predictor_for, get_predictor
    from crystalgen.metrics.samples import read_samples
    from crystalgen.metrics.validity import sample_validity
    from crystalgen.resources import apply_process_resources
    from crystalgen.runner.tasks import TaskRequest, run_task

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # progress in WORK/NAME.log
    direction, per_level, every = PROTOCOLS[name]
    out = Path(args.work) / name
    options = {"direction": direction, "steps": args.opt_steps, "fit_head_on": args.fit_head_on, "property": args.property}
    request = TaskRequest(args.ckpt, args.input, out, num_crystals=args.n, batch_size=args.n, sampler="langevin",
                          sampler_options={"n_steps_each": per_level, "step_lr": 1e-4}, options=options, seed=args.seed,
                          device="cpu", expected_model="symat", show_progress=False, evaluate=False,
                          model_overrides=[f"optimization.decode_every={'null' if every is None else every}"],
                          resources=apply_process_resources(1))  # one thread: two spin on a busy machine
    cpu, wall = time.process_time(), time.perf_counter()
    run_task("optimize", request)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    logging.getLogger("symat_sr").info("%s: optimised in %.0f CPU s; scoring with the independent model", name, cpu)
    summary = json.loads((out / "sampling.json").read_text())
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    structures, failures, _ = read_samples(out, workers=1, progress=False)

    scoring_cpu = time.process_time()
    dataset = args.input.split(":")[0]
    predictor = get_predictor(default_predictor_for(dataset), workers=1, progress=False)
    valid = [s is not None and sample_validity(s, f).reason is None for s, f in zip(structures, failures, strict=True)]
    scored = [s for s, ok in zip(structures, valid, strict=True) if ok]
    predicted = iter(np.asarray(predictor.predict(scored), dtype=np.float64)) if scored else iter(())
    values = [float(next(predicted)) if ok else float("nan") for ok in valid]
    starts = sorted({r["input_index"] for r in rows})
    by_start = {i: [k for k, r in enumerate(rows) if r["input_index"] == i] for i in starts}
    decoded = [[structures[k] for k in by_start[i]] for i in starts]
    properties = [[values[k] for k in by_start[i]] for i in starts]
    result = optimization_success(decoded, dataset=dataset, properties=properties)
    best = [min((p for p in row if np.isfinite(p)), default=np.nan) for row in properties]
    # the same thresholds applied to the start crystals' own values: what the starts already achieve
    records = get_dataset(dataset).load(args.input.split(":")[1], max_rows=args.n, progress=False).records
    truth = [r.properties[args.property] for r in records[:len(starts)]]
    finals = [rows[by_start[i][-1]]["predicted_property"] for i in starts if "predicted_property" in rows[by_start[i][-1]]]
    return {
        "protocol": name, "direction": direction, "langevin_steps_per_level": per_level,
        "langevin_steps": 50 * per_level, "decode_every": every, "opt_steps": args.opt_steps, "starts": len(starts),
        "decodes": len(rows), "valid_decodes": int(sum(valid)),
        "property_head": summary.get("task_record", {}).get("property_head"),
        "predictor": predictor.name, **result,
        "independent_property_mean_valid_decodes": float(np.nanmean(values)) if any(valid) else None,
        "independent_property_mean_best_per_start": float(np.nanmean(best)) if np.isfinite(best).any() else None,
        "head_prediction_mean_final": float(np.mean(finals)) if finals else None,
        "starts_true_property_mean": float(np.mean(truth)),
        "starts_success_rates": {f"SR{k}": float(np.mean(np.asarray(truth) <= p))
                                 for k, p in zip((5, 10, 15), SR_PERCENTILES[dataset], strict=True)},
        "cpu_s": cpu, "wall_s": wall, "scoring_cpu_s": time.process_time() - scoring_cpu,
        "load_average_at_end": load_average(),
    }


def split_percentiles(dataset: str, prop: str) -> dict[str, list[float]]:
    """5th/10th/15th percentiles of ``prop`` in the val and test splits (the local Perov-5 train split has no
    property column)."""
    import numpy as np

    from crystalgen.data.registry import get_dataset

    found = {}
    for split in ("val", "test"):
        values = [r.properties[prop] for r in get_dataset(dataset).load(split, progress=False).records if prop in r.properties]
        if values:
            found[split] = [float(v) for v in np.percentile(values, [5, 10, 15])]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a SyMat checkpoint (a copy: the task reads it only)")
    parser.add_argument("--input", default="perov_5:test", help="start crystals (the first -n of the split)")
    parser.add_argument("--fit-head-on", default="perov_5:val", help="split whose property the head is fitted on")
    parser.add_argument("--property", default="heat_ref", help="the property (CDVAE's Perov-5 target)")
    parser.add_argument("-n", type=int, default=100, help="start crystals (paper: 100)")
    parser.add_argument("--opt-steps", type=int, default=5000, help="Adam steps on z (paper: 5,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocols", default="paper,trajectory250,max250")
    parser.add_argument("--jobs", type=int, default=2, help="protocols run side by side, one thread each")
    parser.add_argument("--work", required=True, help="folder for the sample directories")
    parser.add_argument("--out", help="results JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one protocol, print its JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_protocol(args, args.one)))
        return
    names = args.protocols.split(",")
    unknown = set(names) - set(PROTOCOLS)
    if unknown:
        parser.error(f"unknown protocols {sorted(unknown)}; known: {', '.join(PROTOCOLS)}")
    from crystalgen.metrics.cdvae_constants import SR_PERCENTILES

    dataset = args.input.split(":")[0]
    record = {**provenance(), "settings": {k: getattr(args, k) for k in ("ckpt", "input", "fit_head_on", "property", "n",
                                                                         "opt_steps", "seed")},
              "thresholds": {"values": list(SR_PERCENTILES[dataset]),
                             "source": "CDVAE's published percentiles (crystalgen.metrics.cdvae_constants.SR_PERCENTILES)"},
              "protocols": {}, "unfinished": names}
    Path(args.work).mkdir(parents=True, exist_ok=True)
    results, pending, running = {}, list(names), {}
    base = [sys.executable, __file__, *sys.argv[1:]]
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            log = open(Path(args.work) / f"{name}.log", "w")  # noqa: SIM115 (closed when the process ends)
            running[name] = (subprocess.Popen([*base, "--one", name], stdout=subprocess.PIPE, stderr=log, text=True), log)
        if "split_percentiles" not in record:  # while the first protocols run
            record["split_percentiles"] = split_percentiles(dataset, args.property)
        time.sleep(5)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            stdout = proc.stdout.read() if proc.stdout else ""
            log.close()
            del running[name]
            if proc.returncode != 0:
                raise SystemExit(f"protocol {name} failed (exit {proc.returncode}); see {Path(args.work) / name}.log")
            results[name] = json.loads(stdout.strip().splitlines()[-1])
            print(name, {k: results[name][k] for k in ("SR5", "SR10", "SR15", "valid_decodes", "cpu_s")}, flush=True)
            # written after every protocol, so that a run stopped early keeps what finished (``unfinished`` says what not)
            record.update(protocols={n: results[n] for n in names if n in results},
                          unfinished=[n for n in names if n not in results], load_average_at_end=load_average())
            if args.out:
                Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
