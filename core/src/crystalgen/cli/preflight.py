"""Checks of arguments and output paths that every verb runs before it loads a model or reads or samples crystals.

Why: an output folder that cannot be written, or a sampler setting that cannot work, found only after an hour of
sampling loses the hour, and a half-made output is worse than none. Each check raises UserError (one line, exit
code 2) naming the option, the path and the cause; nothing is created or changed by a check.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from crystalgen.cli.errors import UserError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (what a ``mkdir -p`` would create the rest in)."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def writable_folder(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as an output folder that exists and can be written, or that can be created; UserError otherwise.

    Refused: an existing file (left as it is), a parent that is a file, a folder (or the closest existing parent)
    where a file cannot be created: no permission, a read-only file system. The test creates and removes one
    temporary file, so it sees what the verb would see.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder (it is left as it is); give a folder to write into")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UserError(f"{flag} {path}: {base} is a file, so the folder cannot be created there")
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".crystalgen-write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write in {base} ({exc.strerror or exc})") from None
    return path


def check_sampler_arguments(args: argparse.Namespace) -> None:
    """The options of ``sample`` / ``reconstruct`` / ``optimize`` that can be judged without the checkpoint: counts,
    steps, batch size, the output folder, and that the checkpoint is a regular file."""
    for flag, value in (("-n", getattr(args, "num_samples", None)), ("-n", getattr(args, "num_crystals", None)),
                        ("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--opt-steps", getattr(args, "opt_steps", None))):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    ckpt = Path(args.ckpt)
    if not ckpt.exists():
        raise UserError(f"--ckpt {ckpt}: checkpoint does not exist")
    if not ckpt.is_file():
        raise UserError(f"--ckpt {ckpt}: not a regular file")
    writable_folder(args.out, "--out")
