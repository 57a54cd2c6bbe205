"""Train a model into a run directory (the same loop for every model; DDP under torchrun).

Examples:
  crystalgen train symmcd                                   # embedded data, small preset
  crystalgen train symmcd --data mp_20 --preset paper trainer.max_epochs=500
  crystalgen train toy --config my.yaml trainer.lr=3e-4 data.batch_size=32
  crystalgen train symmcd --resume runs/symmcd-mp_20-20250101-120000 trainer.max_epochs=1000
  crystalgen train symmcd --data mp_20 --init-from runs/symmcd-embedded-20250101-120000/checkpoints/best.ckpt
  crystalgen train symmcd --resume runs/symmcd-mp_20-20250101-120000 --more-minutes 30   # after a time-budget stop
  torchrun --nproc_per_node 4 -m crystalgen train symmcd --data mp_20 --run-dir runs/ddp
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from crystalgen.cli.common import add_config_arguments, apply_resources, shortcut_overrides

log = logging.getLogger("crystalgen.cli")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--resume", metavar="RUN_DIR|CKPT",
                   help="continue a run from its checkpoints/last.ckpt (or the given checkpoint), with its saved "
                        "configuration amended by the overrides")
    p.add_argument("--init-from", metavar="CKPT",
                   help="fine-tune: start a new run from the weights of checkpoint CKPT (shortcut for "
                        "trainer.init_from=CKPT; see trainer.init_from_keys / init_from_strict), with a fresh optimiser, "
                        "schedule, counters and data statistics")
    p.add_argument("--more-minutes", metavar="M", type=float,
                   help="with --resume: train for another M minutes (the time budget trainer.max_minutes counts all "
                        "training of the run, so it becomes the minutes spent so far + M)")


def run(args: argparse.Namespace) -> int:
    from crystalgen.cli.preflight import writable_folder
    from crystalgen.cli.stopping import partial_outputs
    from crystalgen.runner.checkpoint import load_checkpoint
    from crystalgen.runner.conditions import ConditionSpec
    from crystalgen.runner.config import compose
    from crystalgen.runner.console import attach_run_log, detach, setup_console
    from crystalgen.runner.models import model_class
    from crystalgen.runner.pipeline import resume_config, train

    setup_console(args.verbose)
    overrides = shortcut_overrides(args)
    if args.more_minutes is not None and not args.resume:
        raise ValueError("--more-minutes continues a run: use it with --resume RUN (for a new run set "
                         "trainer.max_minutes=M)")
    if args.init_from and args.resume:
        raise ValueError("--init-from starts a new run from a checkpoint's weights, --resume continues a run: give one")
    if args.init_from:
        overrides = [f"trainer.init_from={Path(args.init_from).resolve()}", *overrides]
    if args.resume:
        name, cfg, run_dir, ckpt = resume_config(args.resume, overrides, more_minutes=args.more_minutes)
        if name != args.model:
            raise ValueError(f"{args.resume} is a run of model {name!r}, not {args.model!r}")
        writable_folder(run_dir.path, "--resume")
    else:
        writable_folder(args.run_dir or args.runs_root, "--run-dir" if args.run_dir else "--runs-root")
        cls = model_class(args.model)
        cfg = compose(cls.presets(), args.preset, model_name=args.model, user_files=args.config, overrides=overrides)
        cls.assemble(cfg.model)  # refuse parts that cannot work together before a run folder is made
        # and sampling conditions the trained model could never take (the checkpoint carries sample.condition)
        ConditionSpec.from_config(cfg.sample.get("condition")).check(args.model, cls.conditions)
        if cfg.trainer.init_from:
            load_checkpoint(cfg.trainer.init_from)  # a missing or damaged checkpoint too
        run_dir, ckpt = shared_run_dir(args, cfg), None
    rank = int(os.environ.get("RANK", "0"))
    handler = attach_run_log(run_dir.log) if rank == 0 else None
    try:
        resources = apply_resources(args, cfg)  # after the run log is attached, so that its warning is in run.log
        with partial_outputs(run_dir.path, "train", f"continue with: crystalgen train {args.model} --resume {run_dir.path}",
                             on_earlier="continues it" if args.resume else "starts again from the beginning and replaces it"):
            progress = train(args.model, cfg, run_dir, resume=ckpt, show_progress=not args.no_progress,
                             resources=resources)
    finally:
        if handler is not None:
            detach(handler)
    if rank == 0:
        print(f"run directory: {run_dir.path}")
        print(f"checkpoints: {run_dir.checkpoints / 'last.ckpt'} (best: {run_dir.checkpoints / 'best.ckpt'})")
        if not progress.finished:
            print(f"not finished ({progress.stop_reason}); continue with: "
                  f"{continue_command(args.model, run_dir, cfg, args.more_minutes)}")
    return 0


def continue_command(model: str, run_dir, cfg, granted: float | None) -> str:
    """The command that trains on from where this run stopped: after a time-budget stop, for another budget of the
    same size as this invocation's (--more-minutes, else trainer.max_minutes)."""
    import shlex

    command = f"crystalgen train {shlex.quote(model)} --resume {shlex.quote(str(run_dir.path))}"
    if cfg.trainer.max_minutes is not None:
        command += f" --more-minutes {granted if granted is not None else cfg.trainer.max_minutes:g}"
    return command


def shared_run_dir(args: argparse.Namespace, cfg):
    """The run directory: --run-dir, or a new one under --runs-root. Under torchrun rank 0 creates it and the
    other ranks receive its path, so that all write into one folder."""
    from crystalgen.runner.distributed import select_device
    from crystalgen.runner.run_dir import RunDir

    select_device(cfg.trainer.device)  # refuse an unavailable device before a run folder is made for nothing
    if args.run_dir:
        return RunDir(Path(args.run_dir))
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return RunDir.create(args.runs_root, args.model, cfg.data.dataset)
    import torch.distributed as dist

    from crystalgen.runner.distributed import setup

    env = setup(cfg.trainer.device)
    holder = [str(RunDir.create(args.runs_root, args.model, cfg.data.dataset).path) if env.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    assert holder[0] is not None  # filled by rank 0's broadcast
    return RunDir(Path(holder[0]))
