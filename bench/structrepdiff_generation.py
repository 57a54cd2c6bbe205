"""StructRepDiff generation from a checkpoint with chosen reconstruction settings (docs/structrepdiff.md).

`crystalgen sample --model-option` chooses the decoding budget of a current checkpoint; this script also samples
checkpoints from before the x0 clamp (``--fit-range`` recomputes the training range they lack) and records the
thread count, the allocator tuning and the load average beside the timings, then writes an ordinary sample
directory for `crystalgen evaluate`.

    OMP_NUM_THREADS=1 python bench/structrepdiff_generation.py --ckpt RUN/checkpoints/best.ckpt -n 200 --out samples/ \\
        --model-option reconstruction.trials=2 --model-option reconstruction.loss_threshold=0.02
    crystalgen evaluate samples/ --reference perov_5:test --out metrics/
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import torch

from crystalgen.runner.allocator import keep_freed_memory
from crystalgen.runner.models import checkpoint_sampler, load_trained
from crystalgen.runner.sample_dir import write_sample_dir
from crystalgen.runner.sampling import generate


def fit_range(model, cfg) -> None:
    """Set the scaler's per-feature range from the training split the run used (mean and std stay the checkpoint's)."""
    from crystalgen.runner.datasets import prepared_split

    items = prepared_split(cfg.data, "train", type(model).transform(model.cfg), max_rows=cfg.data.get("max_train_rows"),
                           show_progress=False)
    model.scaler.fit_range(torch.cat([item.representation for item in items]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("-n", "--num-samples", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sampler", default=None, help="ancestral (default) or ddim")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the checkpoint's)")
    parser.add_argument("--fit-range", action="store_true",
                        help="a checkpoint from before the clamp has no training range: recompute it from its training split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-option", metavar="KEY=VALUE", action="append", default=[],
                        help="model configuration override, e.g. reconstruction.trials=6 or clip_x0=false (repeatable)")
    args = parser.parse_args()

    malloc_tuned = keep_freed_memory()
    torch.set_num_threads(args.threads)
    trained = load_trained(args.ckpt, model_overrides=args.model_option)
    model = trained.model.eval()
    if args.fit_range:
        fit_range(model, trained.config)
    sampler = checkpoint_sampler(trained, args.sampler, args.steps, None)
    started = time.perf_counter()
    generated = generate(model, sampler, args.num_samples, 100, seed=args.seed, show_progress=False)
    meta = {"model": trained.name, "checkpoint": str(Path(args.ckpt).resolve()), "sampler": sampler.config(),
            "clip_x0": model.clip_x0, "range_refitted": args.fit_range, "model_overrides": args.model_option,
            "reconstruction": dataclasses.asdict(model.decoder.settings), "seed": args.seed,
            "timings": {"total_seconds": time.perf_counter() - started, **generated.timings},
            "host": platform.node(), "cpus": os.cpu_count(), "threads": args.threads, "malloc_tuned": malloc_tuned,
            "load_average_at_end": os.getloadavg(), "command": " ".join(sys.argv)}
    counts = write_sample_dir(args.out, generated.decoded, meta)
    print(f"{counts['ok']} of {counts['requested']} decoded ({counts['failed_by_reason'] or 'no failures'}) "
          f"in {meta['timings']['total_seconds']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
