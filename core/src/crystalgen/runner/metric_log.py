"""Training metrics to a CSV file (one row per value, so new metrics never break the header) and to
TensorBoard when it is installed."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping
from pathlib import Path

from crystalgen.atomic import replace_text
from crystalgen.runner.line_files import complete_text

COLUMNS = ("step", "epoch", "metric", "value", "wall_time")


class MetricLog:
    """Append-only ``train_log.csv``: ``step, epoch, metric, value, wall_time``.

    On resume, rows written after the checkpoint's step (by the interrupted run) are dropped first so the
    curves show one history; TensorBoard is told to hide that run's events from the same step on. The cut is a new
    file renamed into place (never a rewrite in place), and a torn last row of the interrupted run is dropped.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None, tensorboard_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        if resume_step is not None and self.path.is_file():
            self._truncate_after(resume_step)
        elif self.path.is_file():
            self.path.unlink()
        fresh = not self.path.is_file() or self.path.stat().st_size == 0
        self._handle = self.path.open("a", newline="")
        self._writer = csv.writer(self._handle)
        if fresh:
            self._writer.writerow(COLUMNS)
        # TensorBoard hides the earlier events from this step on, as the CSV drops its rows: one history.
        purge_step = resume_step + 1 if resume_step is not None else 0
        self._tensorboard = _tensorboard_writer(tensorboard_dir, purge_step) if tensorboard_dir else None

    def _truncate_after(self, step: int) -> None:
        rows = list(csv.reader(io.StringIO(complete_text(self.path), newline="")))
        kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step] if rows else []
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows(kept)
        replace_text(self.path, buffer.getvalue())

    def log(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        now = f"{time.time():.3f}"
        for name, value in values.items():
            self._writer.writerow((step, epoch, name, f"{float(value):.8g}", now))
            if self._tensorboard is not None:
                self._tensorboard.add_scalar(name, float(value), step)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _tensorboard_writer(logdir: str | Path, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional (pip install crystalgen-core[tensorboard])
        return None
    return SummaryWriter(log_dir=str(logdir), purge_step=purge_step)


def read_metric_log(path: str | Path) -> dict[str, list[tuple[int, int, float]]]:
    """``metric -> [(step, epoch, value), ...]`` from a train_log.csv (for reports and tests); a torn last row
    (an interrupted write) is left out, any other malformed row is a ValueError naming the file and line."""
    series: dict[str, list[tuple[int, int, float]]] = {}
    reader = csv.DictReader(io.StringIO(complete_text(path), newline=""))
    for row in reader:
        try:
            series.setdefault(row["metric"], []).append((int(row["step"]), int(row["epoch"]), float(row["value"])))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}, line {reader.line_num}: not a step,epoch,metric,value,wall_time row: "
                             f"{','.join(str(v) for v in row.values())[:120]!r}") from None
    return series
