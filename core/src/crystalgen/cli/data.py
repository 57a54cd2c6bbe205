"""Datasets: list them, describe a split, download a benchmark, preprocess a split for a model.

Examples:
  crystalgen data list                               registered datasets, where they are, rows per split
  crystalgen data info mp_20:test                    rows, elements, atoms per cell, space groups, properties, provenance
  crystalgen data info my_cifs/                      the same for a user's folder / CSV / CIF / extxyz file
  crystalgen data fetch mp_20 [--dest DIR]           official CDVAE CSVs, verified by git blob id
  crystalgen data prepare mp_20 --model symmcd       run a model's preprocessing through the cache (time, skips)
  crystalgen data prepare mp_20 --transform full_cell --workers 2

Benchmarks are read from $CRYSTALGEN_DATA/<name>/<split>.csv (default folder: ~/.local/share/crystalgen, which is
where `data fetch` writes). Caches live in $CRYSTALGEN_CACHE (default ~/.cache/crystalgen).
"""

from __future__ import annotations

import argparse
import time

SPLIT_NAMES = ("train", "val", "test")
MAX_FILE_HELP = "size limit per input file in megabytes (default 512, or $CRYSTALGEN_MAX_FILE_MB)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from crystalgen.cli.common import add_resource_arguments

    sub = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    sub.add_parser("list", help="registered datasets, where they are found, rows per split")

    info = sub.add_parser("info", help="describe a dataset split (or every split)")
    info.add_argument("dataset", metavar="NAME[:SPLIT]", help="registered name or path, optionally with :split")
    info.add_argument("--max-rows", type=int, default=None, help="read only the first N rows of each split")
    info.add_argument("--no-symmetry", action="store_true", help="skip the space-group count (spglib, ~1 ms per crystal)")
    info.add_argument("--symprec", type=float, default=0.1, help="spglib tolerance in Angstrom (default 0.1)")
    info.add_argument("--workers", type=int, default=None, help="processes parsing CIFs (default min(usable cores, 8))")
    info.add_argument("--max-file-mb", type=float, metavar="MB", help=MAX_FILE_HELP)
    add_resource_arguments(info)

    fetch = sub.add_parser("fetch", help="download a benchmark's official CSVs (verified)")
    fetch.add_argument("dataset", metavar="NAME", help="perov_5, carbon_24 or mp_20")
    fetch.add_argument("--dest", default=None, help="data root to write NAME/<split>.csv under (default: $CRYSTALGEN_DATA or ~/.local/share/crystalgen)")
    fetch.add_argument("--split", action="append", choices=SPLIT_NAMES, help="only this split (repeatable)")
    fetch.add_argument("--force", action="store_true", help="replace a local file that is not the official one")
    fetch.add_argument("--base-url", default=None, help="serve <name>/<split>.csv from here (a mirror)")

    prepare = sub.add_parser("prepare", help="preprocess splits with a model's transform, through the cache")
    prepare.add_argument("dataset", metavar="NAME", help="registered name or path")
    how = prepare.add_mutually_exclusive_group(required=True)
    how.add_argument("--model", help="model whose transform to run (its preset's settings)")
    how.add_argument("--transform", help="a registered StructureTransform with default options (e.g. full_cell)")
    prepare.add_argument("--preset", default="small", help="model preset (default small)")
    prepare.add_argument("--config", action="append", default=[], help="YAML config file over the preset (repeatable)")
    prepare.add_argument("--split", action="append", help="split to prepare (repeatable; default all)")
    prepare.add_argument("--workers", type=int, default=None, help="processes (default min(usable cores, 8); 1: this process)")
    prepare.add_argument("--max-rows", type=int, default=None, help="only the first N rows of each split")
    prepare.add_argument("--max-atoms", type=int, default=None, metavar="N",
                         help="leave out crystals with more than N atoms per cell, as training does with data.max_atoms "
                              "(default: none)")
    prepare.add_argument("--cache-dir", default=None, help="cache folder (default $CRYSTALGEN_CACHE or ~/.cache/crystalgen)")
    prepare.add_argument("--strict", action="store_true", help="stop at the first crystal that cannot be used")
    prepare.add_argument("--max-file-mb", type=float, metavar="MB", help=MAX_FILE_HELP)
    add_resource_arguments(prepare)


def run(args: argparse.Namespace) -> int:
    from crystalgen.data.user_files import set_max_file_mb

    set_max_file_mb(getattr(args, "max_file_mb", None))
    return {"list": _list, "info": _info, "fetch": _fetch, "prepare": _prepare}[args.data_command](args)


def _list(args: argparse.Namespace) -> int:
    from crystalgen import plugins

    registry = plugins.default_host().registry("dataset")
    for name in registry:
        entry = registry.entry(name)
        spec = entry.obj
        rows = ", ".join(f"{s} {n:,}" if (n := spec.row_count(s)) is not None else f"{s} -" for s in spec.splits)
        print(f"{name}  [{entry.plugin}]  {spec.description}")
        print(f"    location: {spec.location()}")
        print(f"    rows: {rows}")
        if spec.property_names:
            print(f"    properties: {', '.join(spec.property_names)} (default {spec.default_property})")
    return 0


def split_argument(text: str, splits: tuple[str, ...] | None = None) -> tuple[str, str | None]:
    """``"mp_20:test"`` -> ("mp_20", "test"); a tail that is not a split name (e.g. a Windows drive) stays in the name."""
    head, sep, tail = text.rpartition(":")
    if sep and head and tail in (splits or SPLIT_NAMES):
        return head, tail
    return text, None


def _info(args: argparse.Namespace) -> int:
    from crystalgen.cli.common import apply_resources
    from crystalgen.data.registry import get_dataset
    from crystalgen.data.statistics import describe

    apply_resources(args)
    name, split = split_argument(args.dataset)
    spec = get_dataset(name)
    print(f"{spec.name}: {spec.description}")
    for s in [split] if split else list(spec.splits):
        loaded = spec.load(s, max_rows=args.max_rows, workers=args.workers)
        print()
        print(loaded.summary())
        for line in describe(loaded, symmetry=not args.no_symmetry, symprec=args.symprec).lines():
            print(f"  {line}")
        for line in spec.provenance(s):
            if line not in loaded.notes:
                print(f"  provenance: {line}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from crystalgen.cli.errors import UserError
    from crystalgen.cli.preflight import writable_folder
    from crystalgen.data.fetch import FetchError, fetch_dataset

    if args.dest is not None:
        writable_folder(args.dest, "--dest")
    try:
        fetched = fetch_dataset(args.dataset, args.dest, base_url=args.base_url, splits=args.split, force=args.force)
    except FetchError as exc:
        raise UserError(str(exc)) from exc
    for item in fetched:
        status = "downloaded and verified" if item.downloaded else "already present and verified"
        print(f"{item.path}: {status} (git blob {item.blob_id})")
    return 0


def _transform(args: argparse.Namespace):
    from crystalgen import plugins
    from crystalgen.encoders.base import StructureTransform

    if args.transform:
        cls = plugins.get("encoder", args.transform)
        if not (isinstance(cls, type) and issubclass(cls, StructureTransform)):
            raise ValueError(f"encoder {args.transform!r} is not a StructureTransform (a preprocessing step); use --model")
        return cls()
    from crystalgen.runner.config import compose

    model = plugins.get("model", args.model)
    cfg = compose(model.presets(), args.preset, model_name=args.model, user_files=args.config)
    return model.transform(cfg.model)


def _prepare(args: argparse.Namespace) -> int:
    from crystalgen.cli.common import apply_resources
    from crystalgen.data.preprocess import prepare_split
    from crystalgen.data.registry import get_dataset
    from crystalgen.runner.size_limit import cap_atoms

    apply_resources(args)
    if args.max_atoms is not None and args.max_atoms < 1:
        raise ValueError(f"--max-atoms must be a positive number of atoms, got {args.max_atoms}")
    spec = get_dataset(args.dataset)
    transform = _transform(args)
    print(f"transform: {transform.cache_key()}")
    for s in args.split or list(spec.splits):
        start = time.perf_counter()
        loaded = spec.load(s, strict=args.strict, max_rows=args.max_rows, workers=args.workers, cache_dir=args.cache_dir)
        load_seconds = time.perf_counter() - start
        cap_atoms(loaded, args.max_atoms)
        print(loaded.summary())
        prepared = prepare_split(loaded, transform, cache_dir=args.cache_dir, workers=args.workers, strict=args.strict)
        print(prepared.summary())
        print(f"  load {load_seconds:.1f} s, preprocess {prepared.seconds:.1f} s; cache file {prepared.cache_file}")
    return 0
