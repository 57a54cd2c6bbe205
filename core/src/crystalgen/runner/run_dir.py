"""The run directory: one folder a person can read, with everything a run wrote.

    runs/<model>-<dataset>-<YYYYmmdd-HHMMSS>/
        config.yaml              resolved configuration (all layers applied)
        checkpoints/last.ckpt    latest state (resume from here)
        checkpoints/best.ckpt    lowest monitored loss
        train_log.csv            step, epoch, metric, value, wall_time
        samples/                 sample directory (see crystalgen.runner.sample_dir)
        metrics/metrics.json     evaluation results (+ metrics.md)
        report.md, *.png         report and its plots
        run.log                  everything the run printed
        resources.json           threads (and other resources) each training invocation was given
        stages.json              `crystalgen run`: each stage's status (running, complete, failed) and reason
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def slug(text: str) -> str:
    """A file-name-safe version of a model or dataset name (a dataset path becomes its last part)."""
    name = Path(text.rstrip("/")).name or text
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "data"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def create(cls, root: str | Path, model: str, dataset: str) -> RunDir:
        """A new, empty run directory under ``root`` (a numeric suffix avoids clashes within one second)."""
        stem = f"{slug(model)}-{slug(dataset)}-{time.strftime('%Y%m%d-%H%M%S')}"
        root = Path(root)
        for i in range(1000):
            path = root / (stem if i == 0 else f"{stem}-{i}")
            try:
                path.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                continue
            return cls(path)
        raise FileExistsError(f"cannot create a new run directory under {root}")

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def train_log(self) -> Path:
        return self.path / "train_log.csv"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    @property
    def log(self) -> Path:
        return self.path / "run.log"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def stages(self) -> Path:
        return self.path / "stages.json"

    @property
    def init_from(self) -> Path:
        """What a fine-tuned run took from its ``trainer.init_from`` checkpoint."""
        return self.path / "init_from.json"

    @property
    def resources(self) -> Path:
        return self.path / "resources.json"

    def record_resources(self, stage: str, record: Mapping[str, Any]) -> None:
        """Append what ``stage`` (e.g. "train") was given to resources.json: one entry per invocation, so a resumed
        run shows each of its parts."""
        entries = json.loads(self.resources.read_text()) if self.resources.is_file() else []
        entries.append({"stage": stage, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **record})
        self.resources.write_text(json.dumps(entries, indent=1) + "\n")
