"""Generate crystals from a trained checkpoint into a sample directory.

Writes one CIF per crystal (cif/<index>.cif), samples.extxyz with all of them, samples.jsonl with one line per
requested crystal (failures included, with their reason) and sampling.json (sampler, seed, timings, counts).
Conditions (--composition, --spacegroup, --num-atoms, --condition-from) are accepted only by models that declare
them (`crystalgen list`); a model refuses any other before sampling, naming the kinds it accepts. Counting: the
values form a list of conditions (one value is one condition; --condition-from gives one per crystal of the split);
with --per-condition N each gets N crystals, without it one condition (or none) gets -n crystals and a list gets one
crystal each. Each row of samples.jsonl names its crystal's conditions (and input_index/input_id with
--condition-from).

Examples:
  crystalgen sample symmcd --ckpt runs/symmcd-embedded-20250101-120000/checkpoints/best.ckpt -n 1000 --out samples/
  crystalgen sample symmcd --ckpt best.ckpt -n 100 --out sg225/ --spacegroup 225
  crystalgen sample toy --ckpt best.ckpt --out csp/ --composition SrTiO3 Sr2Ti2O6 --per-condition 20
  crystalgen sample toy --ckpt best.ckpt --out csp/ --condition-from mp_20:test --condition-take composition --per-condition 20
  crystalgen sample cdvae --ckpt best.ckpt -n 100 --out pc/ --sampler pc --steps 500 --option snr=0.2
  crystalgen sample symmcd --ckpt best.ckpt -n 100 --out top10/ --option spacegroup_prior=top10
  crystalgen sample structrepdiff --ckpt best.ckpt -n 100 --out paper_search/ --model-option reconstruction.trials=6
"""

from __future__ import annotations

import argparse

from crystalgen.cli.common import (
    add_condition_arguments,
    add_sampler_arguments,
    apply_resources,
    condition_spec,
    parse_options,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model name (must match the checkpoint)")
    p.add_argument("-n", "--num-samples", type=int,
                   help="crystals to generate (needed unless a list of conditions or --per-condition decides it)")
    add_sampler_arguments(p)
    add_condition_arguments(p)


def run(args: argparse.Namespace) -> int:
    from crystalgen.cli.preflight import check_sampler_arguments
    from crystalgen.cli.stopping import partial_outputs
    from crystalgen.runner.console import setup_console
    from crystalgen.runner.pipeline import sample

    setup_console(args.verbose)
    check_sampler_arguments(args)
    conditions = condition_spec(args)
    resources = apply_resources(args)
    with partial_outputs(args.out, "sample"):
        counts = sample(args.ckpt, args.out, num_samples=args.num_samples, sampler=args.sampler, steps=args.steps,
                        batch_size=args.batch_size, seed=args.seed, options=parse_options(args.option),
                        conditions=conditions, device=args.device,
                        precision=args.precision, expected_model=args.model, averaged=not args.no_ema,
                        model_overrides=args.model_option, show_progress=not args.no_progress,
                        resources=resources)
    print(f"{counts['ok']} of {counts['requested']} crystals written to {args.out}")
    return 0
