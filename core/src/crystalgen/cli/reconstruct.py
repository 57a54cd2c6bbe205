"""Reconstruct crystals of a dataset split with a model that can encode them (e.g. CDVAE, StructRepDiff).

Each input crystal is encoded and decoded back; the output is a sample directory whose samples.jsonl rows also
carry input_index and input_id, ready for the reconstruction metrics (`crystalgen evaluate`). Models without
the task refuse before any data is read.

Examples:
  crystalgen reconstruct cdvae --ckpt runs/cdvae-mp_20-20250101-120000/checkpoints/best.ckpt --input mp_20:test -n 100 --out recon/
"""

from __future__ import annotations

import argparse

from crystalgen.cli.common import add_sampler_arguments, apply_resources, parse_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model name (must match the checkpoint)")
    p.add_argument("--input", metavar="NAME:SPLIT", required=True, help="crystals to reconstruct, e.g. mp_20:test")
    p.add_argument("-n", "--num-crystals", type=int, help="use the first N crystals of the split (default: all)")
    add_sampler_arguments(p, default_batch=64)


def run(args: argparse.Namespace) -> int:
    from crystalgen.cli.preflight import check_sampler_arguments
    from crystalgen.cli.stopping import partial_outputs
    from crystalgen.runner.console import setup_console
    from crystalgen.runner.tasks import run_task

    setup_console(args.verbose)
    resources = apply_resources(args)
    check_sampler_arguments(args)
    with partial_outputs(args.out, "reconstruct"):
        counts = run_task("reconstruct", args.ckpt, args.input, args.out, num_crystals=args.num_crystals,
                          batch_size=args.batch_size, sampler=args.sampler, steps=args.steps,
                          options=parse_options(args.option), seed=args.seed, device=args.device,
                          precision=args.precision, expected_model=args.model, averaged=not args.no_ema,
                          model_overrides=args.model_option, show_progress=not args.no_progress,
                          resources=resources)
    print(f"{counts['ok']} of {counts['requested']} reconstructions written to {args.out}")
    return 0
