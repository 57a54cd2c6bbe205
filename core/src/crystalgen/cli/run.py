"""Train, sample, evaluate and report in one run directory (the main job).

With only a model name it trains on the embedded default dataset with the CPU-sized `small` preset, samples
with the model's default sampler, evaluates against the dataset's test split, writes report.md with plots,
and prints where the report is. When sampling or evaluation fails (an error, or the evaluation's process killed,
e.g. out of memory), the report is still written, says so at the top with the reason and the command that
completes the run, and the command exits with code 1 after one line saying the same.

Examples:
  crystalgen run symmcd
  crystalgen run symmcd --data mp_20 --preset paper --device cuda
  crystalgen run toy trainer.max_epochs=2 sample.num_samples=10
"""

from __future__ import annotations

import argparse

from crystalgen.cli.common import add_config_arguments, apply_resources, shortcut_overrides


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crystalgen.cli.preflight import writable_folder
    from crystalgen.cli.stopping import partial_outputs
    from crystalgen.extras import require_metrics
    from crystalgen.runner.conditions import ConditionSpec
    from crystalgen.runner.config import compose
    from crystalgen.runner.console import attach_run_log, detach, setup_console
    from crystalgen.runner.distributed import select_device
    from crystalgen.runner.models import model_class
    from crystalgen.runner.pipeline import run_pipeline
    from crystalgen.runner.run_dir import RunDir

    setup_console(args.verbose)
    writable_folder(args.run_dir or args.runs_root, "--run-dir" if args.run_dir else "--runs-root")
    require_metrics("crystalgen run (its evaluation and report)")
    cls = model_class(args.model)
    cfg = compose(cls.presets(), args.preset, model_name=args.model, user_files=args.config,
                  overrides=shortcut_overrides(args))
    cls.assemble(cfg.model)  # refuse parts that cannot work together before a run folder is made
    ConditionSpec.from_config(cfg.sample.condition).check(args.model, cls.conditions)  # and conditions it cannot take
    select_device(cfg.trainer.device)  # refuse an unavailable device before a run folder is made for nothing
    run_dir = RunDir(Path(args.run_dir)) if args.run_dir else RunDir.create(args.runs_root, args.model, cfg.data.dataset)
    handler = attach_run_log(run_dir.log)
    try:
        resources = apply_resources(args, cfg)  # after the run log is attached, so that its warning is in run.log
        with partial_outputs(run_dir.path, "run", f"continue training with: crystalgen train {args.model} --resume "
                                                  f"{run_dir.path}"):
            report = run_pipeline(args.model, cfg, run_dir, show_progress=not args.no_progress,
                                  resources=resources)
    finally:
        detach(handler)
    print(f"report: {report}")
    return report_state(args.verb, run_dir.path)


def report_state(verb: str, run_path) -> int:
    """0 for a complete run; else one line on stderr (which stage, why, the command that completes it) and 1."""
    import sys

    from crystalgen.runner.run_state import incomplete, one_line, run_states

    state = incomplete(run_states(run_path))
    if state is None:
        return 0
    print(f"crystalgen {verb}: incomplete run: {one_line(state)}", file=sys.stderr)
    return 1
