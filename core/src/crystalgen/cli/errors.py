"""Turn expected user errors into one clear line and exit code 2; let programming errors show a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from crystalgen.registry import UnknownComponentError


class UserError(Exception):
    """An error caused by the user's input (bad file, unknown name, unsupported option): message only."""


#: FloatingPointError: the runner stops on a non-finite training loss with advice (runner.training.NonFiniteLossError).
EXPECTED = (UserError, UnknownComponentError, FileNotFoundError, ValueError, KeyError, FloatingPointError)


def run_reporting_errors(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    if os.environ.get("CRYSTALGEN_TRACEBACK"):
        return int(fn(args) or 0)
    try:
        return int(fn(args) or 0)
    except EXPECTED as exc:
        print(f"crystalgen {args.verb}: error: {exc}", file=sys.stderr)
        print("(set CRYSTALGEN_TRACEBACK=1 for the full traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"crystalgen {args.verb}: interrupted", file=sys.stderr)
        return 130
