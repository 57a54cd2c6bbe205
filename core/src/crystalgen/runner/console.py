"""What a run prints: the ``crystalgen`` logger to the terminal (above the progress bars) and to run.log."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tqdm.auto import tqdm

LOGGER = "crystalgen"


class _TqdmHandler(logging.Handler):
    """Print through tqdm so messages do not tear an active progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record))
        except Exception:  # logging must never take the run down
            self.handleError(record)


def setup_console(verbose: bool = False) -> logging.Logger:
    """Terminal output of the ``crystalgen`` logger (idempotent). Under torchrun only rank 0 speaks below
    warnings, so that messages are not repeated once per process."""
    logger = logging.getLogger(LOGGER)
    rank = int(os.environ.get("RANK", "0"))
    logger.setLevel(logging.WARNING if rank != 0 else logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(h, _TqdmHandler) for h in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def attach_run_log(path: str | Path) -> logging.Handler:
    """Also write everything logged to ``path`` (with times); returns the handler to detach later. Creates the
    folder: a run directory named with --run-dir need not exist yet."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger(LOGGER).addHandler(handler)
    return handler


def detach(handler: logging.Handler) -> None:
    logging.getLogger(LOGGER).removeHandler(handler)
    handler.close()
