"""Options shared by several verbs, and their translation into configuration layers."""

from __future__ import annotations

import argparse
from typing import Any

from omegaconf import DictConfig


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """Options that build a run configuration: preset, YAML files, shortcuts and dotlist overrides."""
    p.add_argument("model", metavar="MODEL", help="installed model name (see `crystalgen list`)")
    p.add_argument("overrides", metavar="KEY=VALUE", nargs="*",
                   help="configuration overrides in dot notation, applied last (e.g. trainer.max_epochs=5)")
    p.add_argument("--preset", default="small", help="the model's preset: small (CPU-sized, default) or paper")
    p.add_argument("--config", metavar="FILE", action="append", default=[],
                   help="YAML file over the preset (repeatable; later files win)")
    p.add_argument("--data", metavar="NAME|PATH", help="dataset (shortcut for data.dataset=...)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (shortcut for trainer.device=...)")
    p.add_argument("--seed", type=int, help="seed of every generator (shortcut for trainer.seed=...)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first crystal that cannot be read or prepared (shortcut for data.strict=true)")
    p.add_argument("--runs-root", metavar="DIR", default="runs", help="where new run directories go (default: runs)")
    p.add_argument("--run-dir", metavar="DIR", help="use this run directory instead of runs/<model>-<dataset>-<time>")
    p.add_argument("--memory-gb", metavar="GB", help="working memory of one batch of any stage (shortcut for memory_gb=...)")
    add_file_limit_argument(p)
    add_resource_arguments(p, config_key="threads")
    add_output_arguments(p)


def add_file_limit_argument(p: argparse.ArgumentParser) -> None:
    """``--max-file-mb``: the size limit of every user file the verb reads (crystalgen.data.user_files), applied by
    cli.main before the verb runs."""
    p.add_argument("--max-file-mb", type=float, metavar="MB",
                   help="size limit of each file read, in megabytes, replacing the defaults (crystal data 512, "
                        "--config 10, checkpoints 4000; or $CRYSTALGEN_MAX_FILE_MB)")


def threads_argument(text: str) -> int | str:
    """``--threads`` value: a whole number of at least 1, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads (at least 1) or auto, got {text!r}")
    return int(text)


def add_resource_arguments(p: argparse.ArgumentParser, config_key: str | None = None) -> None:
    """Options sizing this process on a shared machine, applied at the start of the verb by apply_resources."""
    shortcut = f" (shortcut for {config_key}=...)" if config_key else ""
    p.add_argument("--threads", metavar="N|auto", type=threads_argument,
                   help="torch threads of this process (default auto: $CRYSTALGEN_THREADS, else the cores it may use "
                        f"minus those the load average shows busy){shortcut}")


def apply_resources(args: argparse.Namespace, cfg: DictConfig | None = None) -> dict[str, dict[str, Any]]:
    """Apply this process's share of the machine at the start of a verb, before any torch work or worker pool:
    the run configuration's ``threads`` for train/run (--threads is already in it), else --threads. Returns the
    record that the verb's results files carry."""
    from crystalgen.resources import apply_process_resources

    threads = cfg.get("threads") if cfg is not None else getattr(args, "threads", None)
    return apply_process_resources(threads)


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug messages")


def shortcut_overrides(args: argparse.Namespace) -> list[str]:
    """``--data/--device/--seed/--strict/--threads/--memory-gb`` as dotlist overrides, placed before the explicit ones (which win)."""
    out = []
    if getattr(args, "data", None):
        out.append(f"data.dataset={args.data}")
    if getattr(args, "device", None):
        out.append(f"trainer.device={args.device}")
    if getattr(args, "seed", None) is not None:
        out.append(f"trainer.seed={args.seed}")
    if getattr(args, "strict", False):
        out.append("data.strict=true")
    if getattr(args, "threads", None) is not None:
        out.append(f"threads={'null' if args.threads == 'auto' else args.threads}")
    if getattr(args, "memory_gb", None) is not None:
        out.append(f"memory_gb={args.memory_gb}")
    return out + list(args.overrides)


def add_sampler_arguments(p: argparse.ArgumentParser, *, default_batch: int = 100) -> None:
    """Options choosing and tuning the sampler (sample, reconstruct, optimize)."""
    p.add_argument("--ckpt", metavar="PATH", required=True, help="checkpoint (e.g. runs/<run>/checkpoints/best.ckpt)")
    p.add_argument("--out", metavar="DIR", required=True, help="output sample directory")
    p.add_argument("--sampler", help="sampler name (default: the checkpoint's sample.sampler, else the model's); `crystalgen list` shows them")
    p.add_argument("--steps", type=int, help="sampling steps (default: the checkpoint's sample.steps, else the sampler's)")
    p.add_argument("--batch-size", type=int, default=default_batch, help=f"crystals per batch (default {default_batch})")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--option", metavar="KEY=VALUE", action="append", default=[],
                   help="sampler option, e.g. --option eta=0.5, or a model option the sampler does not take, e.g. "
                        "--option spacegroup_prior=top10 for symmcd (repeatable)")
    p.add_argument("--model-option", metavar="KEY=VALUE", action="append", default=[],
                   help="override a key of the checkpoint's model configuration that leaves the weights as they are, "
                        "e.g. --model-option reconstruction.trials=6 for structrepdiff (repeatable)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="bf16 autocast (default fp32)")
    p.add_argument("--no-ema", action="store_true", help="use the trained weights, not their moving average")
    add_file_limit_argument(p)
    add_resource_arguments(p)
    add_output_arguments(p)


def add_condition_arguments(p: argparse.ArgumentParser) -> None:
    """Options fixing what each generated crystal is conditioned on (the run config's ``sample.condition``)."""
    p.add_argument("--composition", nargs="+", metavar="FORMULA",
                   help="composition of the whole cell (SrTiO3: 5 atoms): one for all crystals, or a list")
    p.add_argument("--spacegroup", nargs="+", metavar="NUMBER", help="space group 1..230: one for all, or a list")
    p.add_argument("--num-atoms", nargs="+", metavar="N", help="atoms per cell: one for all, or a list")
    p.add_argument("--condition-from", metavar="DATASET:SPLIT",
                   help="each crystal of the split gives its own conditions (composition, space group, atom count)")
    p.add_argument("--condition-take", metavar="KIND[,KIND]",
                   help="the kinds taken from --condition-from, e.g. composition (default: every kind the model accepts)")
    p.add_argument("--condition-max-crystals", type=int, metavar="N", help="use the first N crystals of --condition-from")
    p.add_argument("--per-condition", type=int, metavar="N", help="crystals generated per condition")


def condition_spec(args: argparse.Namespace):
    """The conditions the flags of :func:`add_condition_arguments` ask for (crystalgen.runner.conditions), with
    their values parsed (ConditionError names the flag); checked against the model once it is loaded."""
    from crystalgen.conditions import PARSERS
    from crystalgen.runner.conditions import ConditionSpec

    values = {}
    for kind in ("composition", "spacegroup", "num_atoms"):
        given = getattr(args, kind, None)
        if given:
            flag = f"--{kind.replace('_', '-')}"
            parsed = [PARSERS[kind](v, flag) for v in given]
            values[kind] = parsed[0] if len(parsed) == 1 else parsed
    take = tuple(k.strip() for k in args.condition_take.split(",")) if args.condition_take else None
    return ConditionSpec(**values, source=args.condition_from, take=take, max_crystals=args.condition_max_crystals,
                         per_condition=args.per_condition)


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["eta=0.5", "snr=0.1"]`` -> ``{"eta": 0.5, "snr": 0.1}`` (values parsed as YAML scalars)."""
    from crystalgen.runner.config import as_dict, parse_overrides

    return as_dict(parse_overrides(items)) if items else {}


def add_task_arguments(p: argparse.ArgumentParser) -> None:
    """The options every task takes (``crystalgen task NAME``, ``reconstruct``, ``optimize``): its input crystals and
    the sampler."""
    p.add_argument("model", metavar="MODEL", help="model name (must match the checkpoint)")
    p.add_argument("--input", metavar="NAME:SPLIT", required=True, help="input crystals, e.g. mp_20:test")
    p.add_argument("-n", "--num-crystals", type=int, help="use the first N crystals of the split (default: all)")
    add_sampler_arguments(p, default_batch=64)


def run_dataset_task(args: argparse.Namespace, task: str, task_options: dict[str, Any] | None = None, *,
                     evaluate: bool = False, scoring: Any = None) -> dict[str, Any]:
    """The body of every task verb: check the arguments, take this process's threads, and apply ``task`` to the
    crystals of ``--input`` (scored when ``evaluate``), marking the output folder partial until it is complete."""
    from crystalgen.cli.preflight import check_sampler_arguments
    from crystalgen.cli.stopping import partial_outputs
    from crystalgen.runner.console import setup_console
    from crystalgen.runner.tasks import TaskRequest, run_task
    from crystalgen.tasks.base import Scoring

    setup_console(args.verbose)
    resources = apply_resources(args)
    check_sampler_arguments(args)
    request = TaskRequest(args.ckpt, args.input, args.out, num_crystals=args.num_crystals, batch_size=args.batch_size,
                          sampler=args.sampler, steps=args.steps, sampler_options=parse_options(args.option),
                          options=task_options or {}, seed=args.seed, device=args.device, precision=args.precision,
                          expected_model=args.model, averaged=not args.no_ema, model_overrides=args.model_option,
                          show_progress=not args.no_progress, resources=resources, evaluate=evaluate,
                          scoring=scoring or Scoring(progress=not args.no_progress))
    with partial_outputs(args.out, task):
        return run_task(task, request)
