"""GemsDiff's MP-20 fidelity run within the issue's CPU budget (docs/gemsdiff.md, "Not done"): train with torchrun on
2 processes for 120 minutes, sample one crystal for each of the first ``--compositions`` MP-20 test compositions,
score them as crystal structure prediction (match rate and RMSE at k = 1 against the true structures of those test
crystals), measure the sampling cost of the trained model (ancestral T = 100, the official code's update, DDIM 20
and 10), score the crystals as generation (validity, density EMD, CHGNet-energy EMD, Frechet distance of CHGNet
embeddings, against the whole test split), and write the results JSONs.

Steps (each one a command, printed and recorded with its wall and CPU time; a step whose output exists is skipped,
so the same command continues an interrupted run):

    train       torchrun --standalone --nproc_per_node 2 -m crystalgen train gemsdiff --data mp_20 --run-dir WORK/run
                  --no-progress threads=1 data.batch_size=16 data.workers=0 data.max_val_rows=1024
                  trainer.max_minutes=120 trainer.max_epochs=1000 trainer.val_every=1 trainer.checkpoint_every=1
                (the small preset; 2 x 16 = its batch of 32; the time budget ends training; validation on 1,024
                crystals each epoch picks best.ckpt, the EMA weights)
    csp         crystalgen task csp gemsdiff --ckpt WORK/run/checkpoints/best.ckpt --input mp_20:test -n 1000 -k 1
                  --out WORK/csp   (ancestral, T = 100; candidates in WORK/csp, match rate in WORK/csp/metrics)
    sampling    python bench/gemsdiff_sampling.py --ckpt WORK/run/checkpoints/best.ckpt --reference mp_20:test
                  --num 200 --threads 1 --out WORK/sampling/partial.json
                (one process, one thread: crystals per CPU-second and metrics of each sampler on the same 200
                compositions; WORK/sampling/sampling.json when all samplers are done)
    generation  crystalgen evaluate WORK/csp --reference mp_20:test --out WORK/generation
                  --metrics validity,wdist_density,wdist_num_elems,wdist_prop,fcd --property-predictor chgnet_energy
                (CHGNet energies and embeddings of the 9,046 reference crystals are computed once, then cached)

Results: OUT_PREFIX_run.json (commands, commit, load, wall and CPU time per step, training steps and epochs, the last
logged losses), OUT_PREFIX_csp_metrics.json and OUT_PREFIX_generation_metrics.json (the metrics.json of each
evaluation) and OUT_PREFIX_sampling.json (gemsdiff_sampling.py's results). ``--tiny`` checks the whole chain in
minutes (4 training steps on 64 crystals, 4 compositions, DDIM with 5 steps, the sampling cost on 4 compositions,
the generation metrics against the first 16 test crystals) and writes nothing under bench/results unless
--out-prefix says so. ``--reference-rows N`` scores generation against the first N test crystals instead of all.

Usage, from the repository root, with nothing else heavy running (2-core CPU; CRYSTALGEN_DATA set):
    OMP_NUM_THREADS=1 python bench/gemsdiff_fidelity.py --work runs/gemsdiff-fidelity-mp20 \
        --out-prefix bench/results/gemsdiff_fidelity_mp20
    OMP_NUM_THREADS=1 nice -n 10 python bench/gemsdiff_fidelity.py --tiny --work /tmp/gemsdiff-fidelity-tiny
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import load_average, provenance  # noqa: E402
from timed_steps import run_step, training_summary  # noqa: E402

GENERATION_METRICS = "validity,wdist_density,wdist_num_elems,wdist_prop,fcd"
SAMPLING_BENCH = Path(__file__).resolve().parent / "gemsdiff_sampling.py"
STEPS = ("train", "csp", "sampling", "generation")


def reference_head(rows: int, out: Path) -> Path:
    """The first ``rows`` crystals of MP-20's test split as a CSV with the split's own columns: a reference small
    enough that a check computes its CHGNet energies and embeddings in seconds."""
    from crystalgen.data.registry import BenchmarkDataset, get_dataset

    spec = get_dataset("mp_20")
    assert isinstance(spec, BenchmarkDataset)
    with spec.require("test").open(newline="") as f:
        kept = list(itertools.islice(csv.reader(f), rows + 1))  # the header and the first rows
    with out.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    return out


def commands(args: argparse.Namespace, work: Path) -> dict[str, tuple[list[str], Path]]:
    """step -> (command, the file whose presence marks the step done)."""
    run, csp, generation, sampling = work / "run", work / "csp", work / "generation", work / "sampling"
    train = ["torchrun", "--standalone", "--nproc_per_node", str(args.nproc), "-m", "crystalgen", "train", "gemsdiff",
             "--data", "mp_20", "--run-dir", str(run), "--no-progress", "threads=1", "data.workers=0",
             f"data.batch_size={32 // args.nproc}", "trainer.val_every=1", "trainer.checkpoint_every=1"]
    sample_options = ["--threads", str(args.nproc), "--no-progress", "--seed", "0"]
    if args.tiny:
        train += ["trainer.max_minutes=null", "trainer.max_epochs=2", "data.max_train_rows=64", "data.max_val_rows=32"]
        sample_options += ["--sampler", "ddim", "--steps", "5"]
    else:
        train += [f"trainer.max_minutes={args.minutes}", "trainer.max_epochs=1000", "data.max_val_rows=1024"]
    if args.reference_rows:
        reference = ["--reference", str(work / f"reference_first_{args.reference_rows}.csv"), "--reference-name", "mp_20"]
    else:
        reference = ["--reference", "mp_20:test"]
    best = str(run / "checkpoints" / "best.ckpt")
    return {
        "train": (train, run / "checkpoints" / "best.ckpt"),
        "csp": (["crystalgen", "task", "csp", "gemsdiff", "--ckpt", best, "--input", "mp_20:test", "-n",
                 str(args.compositions), "-k", "1", "--out", str(csp), "--batch-size", "128", "--workers",
                 str(args.nproc), *sample_options], csp / "metrics" / "metrics.json"),
        "sampling": ([sys.executable, str(SAMPLING_BENCH), "--ckpt", best, "--reference", "mp_20:test", "--num",
                      str(args.sampling_compositions), "--threads", "1", "--workers", str(args.nproc), "--out",
                      str(sampling / "partial.json")], sampling / "sampling.json"),
        "generation": (["crystalgen", "evaluate", str(csp), *reference, "--out", str(generation),
                        "--metrics", GENERATION_METRICS, "--property-predictor", "chgnet_energy", "--workers",
                        str(args.nproc), "--no-progress"], generation / "metrics.json"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="directory of the run, the samples and the evaluations")
    parser.add_argument("--out-prefix", help="results files OUT_PREFIX_{run,csp_metrics,sampling,generation_metrics}"
                                             ".json")
    parser.add_argument("--minutes", type=float, default=120.0, help="training budget (the issue's: 120)")
    parser.add_argument("--nproc", type=int, default=2, help="torchrun processes (and evaluation workers)")
    parser.add_argument("--compositions", type=int, default=1000, help="first N MP-20 test compositions")
    parser.add_argument("--sampling-compositions", type=int, default=200,
                        help="MP-20 test compositions (drawn with seed 0) of the sampling-cost step")
    parser.add_argument("--reference-rows", type=int, default=0,
                        help="generation metrics against the first N test crystals (0: the whole split)")
    parser.add_argument("--tiny", action="store_true",
                        help="check the chain: 4 steps, 4 compositions, DDIM 5, a reference of 16 crystals")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of the steps")
    args = parser.parse_args()
    if args.tiny:
        args.compositions = min(args.compositions, 4)
        args.sampling_compositions = min(args.sampling_compositions, 4)
        args.reference_rows = args.reference_rows or 16
    if shutil.which("torchrun") is None:
        raise SystemExit("torchrun is not on PATH: activate the environment crystalgen is installed in")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "sampling").mkdir(exist_ok=True)
    if args.reference_rows:
        reference_head(args.reference_rows, work / f"reference_first_{args.reference_rows}.csv")
    report: dict[str, object] = {**provenance(), "tiny": args.tiny, "compositions": args.compositions,
                                 "sampling_compositions": args.sampling_compositions,
                                 "reference": f"first {args.reference_rows} of mp_20:test" if args.reference_rows
                                 else "mp_20:test", "minutes": args.minutes, "nproc": args.nproc, "steps": {}}
    steps = report["steps"]
    assert isinstance(steps, dict)
    chosen = args.steps.split(",")
    unknown = set(chosen) - set(STEPS)
    if unknown:
        raise SystemExit(f"--steps: unknown {', '.join(sorted(unknown))}; the steps are {', '.join(STEPS)}")

    def write() -> None:
        report["load_average_at_end"] = load_average()
        text = json.dumps(report, indent=2) + "\n"
        (work / "fidelity_run.json").write_text(text)
        if args.out_prefix:
            Path(f"{args.out_prefix}_run.json").write_text(text)

    for name, (cmd, done) in commands(args, work).items():
        if name in chosen:
            steps[name] = run_step(name, cmd, done)
            if name == "train":
                report["training"] = training_summary(work / "run")
            if name == "sampling" and not done.exists():
                (work / "sampling" / "partial.json").replace(done)  # every sampler measured
            write()
    for name, source in (("csp_metrics", work / "csp" / "metrics" / "metrics.json"),
                         ("sampling", work / "sampling" / "sampling.json"),
                         ("generation_metrics", work / "generation" / "metrics.json")):
        if source.exists() and args.out_prefix:
            shutil.copyfile(source, f"{args.out_prefix}_{name}.json")
    write()


if __name__ == "__main__":
    main()
