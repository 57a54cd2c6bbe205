"""Turn expected user errors into one clear line and exit code 2; let programming errors show a traceback.

File-system errors (a full disk, a read-only folder, a path that is a file) are expected too: they are reported
as ``<path>: <cause>`` in one line, not as a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from crystalgen.cli.stopping import Terminated
from crystalgen.extras import MissingExtraError
from crystalgen.registry import UnknownComponentError
from crystalgen.runner.errors import NoCrystalsGeneratedError


class UserError(Exception):
    """An error caused by the user's input (bad file, unknown name, unsupported option): message only."""


#: FloatingPointError: the runner stops on a non-finite training loss with advice (runner.training.NonFiniteLossError).
#: NoCrystalsGeneratedError: every sampled crystal failed; the sample directory says why, crystal by crystal.
#: MissingExtraError: the evaluation suite is not installed; the message is the pip command.
EXPECTED = (UserError, UnknownComponentError, FileNotFoundError, ValueError, KeyError, FloatingPointError,
            NoCrystalsGeneratedError, MissingExtraError)


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
        print(f"crystalgen {args.verb}: stopped by SIGINT; worker processes ended", file=sys.stderr)
        return 130
    except Terminated:
        print(f"crystalgen {args.verb}: stopped by SIGTERM; worker processes ended", file=sys.stderr)
        return 143
    except BrokenPipeError:  # the reader went away (`crystalgen list | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit flush cannot fail again
        return 141
    except OSError as exc:
        print(f"crystalgen {args.verb}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2


def os_error_line(exc: OSError) -> str:
    """``<path>: <cause>`` of a file-system error (both paths of a failed rename), in one line."""
    cause = exc.strerror or str(exc).splitlines()[0]
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {cause}" if paths else cause
