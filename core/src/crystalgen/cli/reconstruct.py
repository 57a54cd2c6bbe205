"""Reconstruct crystals of a dataset split with a model that can encode them (e.g. CDVAE, StructRepDiff).

Each input crystal is encoded and decoded back; the output is a sample directory whose samples.jsonl rows also
carry input_index and input_id, ready for the reconstruction metrics (`crystalgen evaluate --task reconstruction`).
The same as `crystalgen task reconstruct ... --no-evaluate`. Models without the task refuse before any data is read.

Examples:
  crystalgen reconstruct cdvae --ckpt runs/cdvae-mp_20-20250101-120000/checkpoints/best.ckpt --input mp_20:test -n 100 --out recon/
"""

from __future__ import annotations

import argparse

from crystalgen.cli.common import add_task_arguments, run_dataset_task


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_task_arguments(p)


def run(args: argparse.Namespace) -> int:
    counts = run_dataset_task(args, "reconstruct")
    print(f"{counts['ok']} of {counts['requested']} reconstructions written to {args.out}")
    return 0
