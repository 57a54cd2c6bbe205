"""Optimise crystals of a dataset split towards a lower or higher property value (e.g. CDVAE's latent search).

Starts from each input crystal and runs the model's property optimisation; the output is a sample directory
whose rows also carry input_index and input_id (`crystalgen evaluate --task optimization` scores it). The same as
`crystalgen task optimize ... --no-evaluate`. Models without the task refuse before any data is read.

Examples:
  crystalgen optimize cdvae --ckpt best.ckpt --input mp_20:test -n 100 --out opt/ --direction min --opt-steps 5000
"""

from __future__ import annotations

import argparse

from crystalgen.cli.common import add_task_arguments, run_dataset_task


def add_arguments(p: argparse.ArgumentParser) -> None:
    from crystalgen.runner.tasks import get_task

    add_task_arguments(p)
    get_task("optimize").add_arguments(p)


def run(args: argparse.Namespace) -> int:
    from crystalgen.runner.tasks import get_task

    counts = run_dataset_task(args, "optimize", get_task("optimize").options(args))
    print(f"{counts['ok']} of {counts['requested']} optimised crystals written to {args.out}")
    return 0
