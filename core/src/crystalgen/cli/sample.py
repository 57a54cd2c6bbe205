"""Generate crystals from a trained checkpoint into a sample directory.

Writes one CIF per crystal (cif/<index>.cif), samples.extxyz with all of them, samples.jsonl with one line per
requested crystal (failures included, with their reason) and sampling.json (sampler, seed, timings, counts).
Conditions (--composition, --spacegroup) are accepted only by models that support them.

Examples:
  crystalgen sample symmcd --ckpt runs/symmcd-embedded-20250101-120000/checkpoints/best.ckpt -n 1000 --out samples/
  crystalgen sample symmcd --ckpt best.ckpt -n 100 --out sg225/ --spacegroup 225
  crystalgen sample cdvae --ckpt best.ckpt -n 100 --out pc/ --sampler pc --steps 500 --option snr=0.2
  crystalgen sample symmcd --ckpt best.ckpt -n 100 --out top10/ --option spacegroup_prior=top10
  crystalgen sample structrepdiff --ckpt best.ckpt -n 100 --out paper_search/ --model-option reconstruction.trials=6
"""

from __future__ import annotations

import argparse

from crystalgen.cli.common import add_sampler_arguments, apply_resources, parse_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model name (must match the checkpoint)")
    p.add_argument("-n", "--num-samples", type=int, required=True, help="crystals to generate")
    add_sampler_arguments(p)
    p.add_argument("--composition", nargs="+", metavar="FORMULA",
                   help="condition on a composition: one for all crystals, or one per crystal (models that support it)")
    p.add_argument("--spacegroup", nargs="+", type=int, metavar="NUMBER",
                   help="condition on a space group 1..230: one for all, or one per crystal (models that support it)")


def run(args: argparse.Namespace) -> int:
    from crystalgen.cli.preflight import check_sampler_arguments
    from crystalgen.cli.stopping import partial_outputs
    from crystalgen.runner.console import setup_console
    from crystalgen.runner.pipeline import sample

    setup_console(args.verbose)
    check_sampler_arguments(args)
    for number in args.spacegroup or []:
        if not 1 <= number <= 230:
            raise ValueError(f"--spacegroup {number}: space-group numbers run from 1 to 230")
    resources = apply_resources(args)
    with partial_outputs(args.out, "sample"):
        counts = sample(args.ckpt, args.out, num_samples=args.num_samples, sampler=args.sampler, steps=args.steps,
                        batch_size=args.batch_size, seed=args.seed, options=parse_options(args.option),
                        spacegroup=args.spacegroup, composition=args.composition, device=args.device,
                        precision=args.precision, expected_model=args.model, averaged=not args.no_ema,
                        model_overrides=args.model_option, show_progress=not args.no_progress,
                        resources=resources)
    print(f"{counts['ok']} of {counts['requested']} crystals written to {args.out}")
    return 0
