"""Train, sample, evaluate and report in one run directory (the main job).

With only a model name it trains on the embedded default dataset with the CPU-sized `small` preset, samples
with the model's default sampler, evaluates against the dataset's test split, writes report.md with plots,
and prints where the report is. Run again with the same --run-dir and settings after a stop (Ctrl-C, SIGTERM, a
kill), it picks up where the run stopped: training resumes from the last checkpoint, and the stages that had
completed are not repeated. When sampling or evaluation fails (an error, or the evaluation's process killed,
e.g. out of memory), the report is still written, says so at the top with the reason and the command that
completes the run, and the command exits with code 1 after one line saying the same.

Examples:
  crystalgen run symmcd
  crystalgen run symmcd --data mp_20 --preset paper --device cuda
  crystalgen run toy trainer.max_epochs=2 sample.num_samples=10
  crystalgen run symmcd --run-dir runs/main      # after a stop: the same command continues the run
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
    rerun = earlier_run(run_dir, args.model, cfg)
    handler = attach_run_log(run_dir.log)
    try:
        resources = apply_resources(args, cfg)  # after the run log is attached, so that its warning is in run.log
        again = "the same command continues it" if args.run_dir else f"the same command with --run-dir {run_dir.path} continues it"
        with partial_outputs(run_dir.path, "run", f"{again} (training resumes from checkpoints/last.ckpt; complete "
                                                  f"stages are not repeated)", on_earlier="continues it"):
            report = run_pipeline(args.model, cfg, run_dir, show_progress=not args.no_progress,
                                  resources=resources, rerun=rerun)
    finally:
        detach(handler)
    print(f"report: {report}")
    return report_state(args.verb, run_dir.path)


#: Settings that may differ between a run and its continuation (how it runs, not what it computes).
FREE_ON_RERUN = ("threads", "memory_gb", "data.workers", "data.loader_workers", "data.cache_dir", "data.size_limit",
                 "evaluate.workers", "trainer.device")


def earlier_run(run_dir, model: str, cfg) -> bool:
    """True when ``run_dir`` holds an earlier run to continue (its config.yaml); refuses one of another model or
    another configuration, naming the settings that differ, before anything is written."""
    from omegaconf import OmegaConf

    from crystalgen.cli.errors import UserError
    from crystalgen.runner.config import from_yaml
    from crystalgen.runner.run_state import read_stages

    if not run_dir.config.is_file():
        return False
    saved = from_yaml(run_dir.config.read_text(), str(run_dir.config))
    noted = read_stages(run_dir).get("model")
    if noted not in (None, model):
        raise UserError(f"--run-dir {run_dir.path} holds a run of model {noted!r}, not {model!r}; give another --run-dir")
    flat = [_flat(OmegaConf.to_container(c, resolve=True)) for c in (saved, cfg)]
    differ = sorted(k for k in set(flat[0]) | set(flat[1])
                    if flat[0].get(k) != flat[1].get(k) and not k.startswith(FREE_ON_RERUN))
    if differ:
        shown = "; ".join(f"{k}: {flat[0].get(k)!r} there, {flat[1].get(k)!r} now" for k in differ[:5])
        raise UserError(f"--run-dir {run_dir.path} holds a run with other settings ({shown}"
                        f"{'; ...' if len(differ) > 5 else ''}); a rerun continues a run only with the same settings, "
                        f"so give the same ones or another --run-dir")
    return True


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()} or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def report_state(verb: str, run_path) -> int:
    """0 for a complete run; else one line on stderr (which stage, why, the command that completes it) and 1."""
    import sys

    from crystalgen.runner.run_state import incomplete, one_line, run_states

    state = incomplete(run_states(run_path))
    if state is None:
        return 0
    print(f"crystalgen {verb}: incomplete run: {one_line(state)}", file=sys.stderr)
    return 1
