"""Reconstruct crystals of a dataset split with a model that can encode them (e.g. CDVAE, StructRepDiff).

Each input crystal is encoded and decoded back; the output is a sample directory whose samples.jsonl rows also
carry input_index and input_id, ready for the reconstruction metrics (`crystalgen evaluate`). Models without
the task refuse before any data is read.

Examples:
  crystalgen reconstruct cdvae --ckpt runs/cdvae-mp_20-20250101-120000/checkpoints/best.ckpt --input mp_20:test -n 100 --out recon/
"""

from __future__ import annotations

import argparse

from crystalgen.cli.common import add_sampler_arguments, run_dataset_task


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model name (must match the checkpoint)")
    p.add_argument("--input", metavar="NAME:SPLIT", required=True, help="crystals to reconstruct, e.g. mp_20:test")
    p.add_argument("-n", "--num-crystals", type=int, help="use the first N crystals of the split (default: all)")
    add_sampler_arguments(p, default_batch=64)


def run(args: argparse.Namespace) -> int:
    counts = run_dataset_task(args, "reconstruct")
    print(f"{counts['ok']} of {counts['requested']} reconstructions written to {args.out}")
    return 0
