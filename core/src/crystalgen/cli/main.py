"""``crystalgen`` command line: one module per verb under crystalgen.cli, loaded only when used.

Each verb module has a docstring (its help text), ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

#: verb -> module implementing it
VERBS: dict[str, str] = {
    "list": "crystalgen.cli.list_plugins",
    "data": "crystalgen.cli.data",
    "train": "crystalgen.cli.train",
    "sample": "crystalgen.cli.sample",
    "evaluate": "crystalgen.cli.evaluate",
    "run": "crystalgen.cli.run",
    "report": "crystalgen.cli.report",
    "reconstruct": "crystalgen.cli.reconstruct",
    "optimize": "crystalgen.cli.optimize",
    "task": "crystalgen.cli.task",
}


def _summary(module) -> str:
    doc = (module.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, dict]:
    from crystalgen import __version__

    parser = argparse.ArgumentParser(prog="crystalgen", description="Train, sample and evaluate generative models of crystals.")
    parser.add_argument("--version", action="version", version=f"crystalgen {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    # Import only the verb that is used (plus all of them for top-level --help) to keep start-up fast.
    wanted = [a for a in argv if a in VERBS][:1] or list(VERBS)
    modules = {}
    for verb in VERBS:
        if verb not in wanted:
            sub.add_parser(verb, help="")
            continue
        module = importlib.import_module(VERBS[verb])
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(verb, help=_summary(module), description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        modules[verb] = module
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, modules = build_parser(argv)
    # Dotlist overrides (key=value) may follow options; argparse stops collecting positionals at the first option.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.verb is None:
        parser.print_help()
        return 2
    from crystalgen.cli.errors import run_reporting_errors
    from crystalgen.cli.stopping import exit_after_signal, stop_cleanly
    from crystalgen.runner.allocator import keep_freed_memory

    keep_freed_memory()
    with stop_cleanly() as stopped:
        code = run_reporting_errors(_with_file_limit(modules[args.verb].run), args)
    exit_after_signal(stopped, code)
    return code


def _with_file_limit(verb: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``verb`` after ``--max-file-mb`` (where the verb has it) is set for this process and its workers."""
    def run(args: argparse.Namespace) -> int:
        from crystalgen.data.user_files import set_max_file_mb

        set_max_file_mb(getattr(args, "max_file_mb", None))
        return verb(args)
    return run


if __name__ == "__main__":
    raise SystemExit(main())
