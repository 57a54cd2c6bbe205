"""Optimise crystals of a dataset split towards a lower or higher property value (e.g. CDVAE's latent search).

Starts from each input crystal and runs the model's property optimisation; the output is a sample directory
whose rows also carry input_index and input_id. Models without the task refuse before any data is read.

Examples:
  crystalgen optimize cdvae --ckpt best.ckpt --input mp_20:test -n 100 --out opt/ --direction min --opt-steps 5000
"""

from __future__ import annotations

import argparse

from crystalgen.cli.common import add_sampler_arguments, run_dataset_task


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model name (must match the checkpoint)")
    p.add_argument("--input", metavar="NAME:SPLIT", required=True, help="starting crystals, e.g. mp_20:test")
    p.add_argument("-n", "--num-crystals", type=int, help="use the first N crystals of the split (default: all)")
    p.add_argument("--direction", choices=("min", "max"), default="min", help="minimise (default) or maximise")
    p.add_argument("--opt-steps", type=int, help="optimisation steps (default: the model's)")
    add_sampler_arguments(p, default_batch=64)


def run(args: argparse.Namespace) -> int:
    counts = run_dataset_task(args, "optimize", {"direction": args.direction, "steps": args.opt_steps})
    print(f"{counts['ok']} of {counts['requested']} optimised crystals written to {args.out}")
    return 0
