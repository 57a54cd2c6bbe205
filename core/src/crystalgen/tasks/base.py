"""The task contract: a job over the crystals of a dataset split with a trained model, and its evaluation.

Tasks are registered like any component (hook ``crystalgen_tasks``); the core registers ``reconstruct``,
``optimize`` and ``csp``, and a plugin may add its own. The runner (crystalgen.runner.tasks) loads the checkpoint,
refuses a model the task cannot use (naming the tasks it supports), asks the task for candidates per input crystal,
writes them as a sample directory (each row with its ``input_index`` and ``input_id``) and scores them with the
task's evaluation. ``crystalgen task NAME`` runs any registered task; ``crystalgen evaluate --task NAME`` re-scores
a sample directory.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from pymatgen.core import Structure
    from torch_geometric.data import Data

    from crystalgen.models.base import Decoded, GenerativeModel
    from crystalgen.samplers.base import Sampler


@dataclass
class TaskJob:
    """What a task's :meth:`Task.produce` works with.

    Attributes:
        model: the trained model (on its device, in eval mode); ``model_name`` its registry name.
        config: the run configuration it was trained with (``config.data`` tells how to read datasets).
        sampler: the sampler chosen for it (the checkpoint's, or the user's).
        source: the input crystals, ``DATASET:SPLIT``; ``num_crystals``: only its first N (None: all).
        batch_size: the most crystals per batch (batches are smaller where the memory budget asks).
        generator: the seeded generator of this job; ``seed`` its seed.
        precision: fp32 | bf16 (autocast).
        options: the task's own options (:meth:`Task.options`).
        record: what the task reports beside its candidates (e.g. how a property head was fitted); written to the
            output's sampling.json under ``task_record``.
    """

    model: GenerativeModel
    model_name: str
    config: Any
    sampler: Sampler
    source: str
    num_crystals: int | None
    batch_size: int
    generator: torch.Generator
    seed: int = 0
    precision: str = "fp32"
    show_progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    def prepared_inputs(self, source: str | None = None) -> list[Data]:
        """The crystals of ``source`` (default: the input crystals, only the first ``num_crystals``; another split is
        read whole) preprocessed by the model's transform (through the dataset cache), for tasks that hand them to
        the model (reconstruct, optimize)."""
        from crystalgen.runner.datasets import parse_split, prepared_split

        name, split = parse_split(source or self.source)
        data_cfg = self.config.data.copy()
        data_cfg.dataset = name
        return prepared_split(data_cfg, split, type(self.model).transform(self.config.model),
                              max_rows=None if source else self.num_crystals, show_progress=self.show_progress)


@dataclass
class Scoring:
    """What a task's :meth:`Task.evaluate` may use beside the candidates and the true crystals.

    Attributes:
        reference_name: the dataset the inputs belong to (published thresholds, property predictors), if known.
        oxidation_states: SMACT oxidation-state set of composition validity (smact14 | icsd24).
        workers: processes for per-crystal work (None: the cores this process may use); ``progress``: show bars.
        property_predictor, predictor_options, percentiles: for property-based scores (optimize).
        options: the task's own options, as the task ran (sampling.json ``task_options``) or given on the command line.
    """

    reference_name: str | None = None
    oxidation_states: str = "smact14"
    workers: int | None = None
    progress: bool = True
    property_predictor: str | None = None
    predictor_options: dict[str, Any] = field(default_factory=dict)
    percentiles: Sequence[float] | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A registered task. Subclasses set the class attributes and implement :meth:`produce` and :meth:`evaluate`.

    Class attributes:
        name: registry name (``crystalgen task NAME``, ``crystalgen evaluate --task NAME``).
        summary: one line for ``crystalgen list`` and the help of ``crystalgen task``.
        evaluation_names: other names ``crystalgen evaluate --task`` accepts for its evaluation (``reconstruction``).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    evaluation_names: ClassVar[tuple[str, ...]] = ()

    def unsupported(self, model: type[GenerativeModel]) -> str | None:
        """Why ``model`` cannot run this task, or None when it can. Default: the model lists the task's name in its
        ``tasks`` (it implements the method of that name)."""
        if self.name in model.tasks:
            return None
        return f"it does not implement {self.name!r} (GenerativeModel.tasks)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The task's own options of ``crystalgen task NAME`` (the common ones are added by the runner). Default:
        none."""
        return None

    def options(self, args: argparse.Namespace) -> dict[str, Any]:
        """The parsed options of :meth:`add_arguments` as the ``options`` of TaskJob and Scoring (JSON values: they
        are recorded in sampling.json)."""
        return {}

    @abstractmethod
    def produce(self, job: TaskJob) -> list[list[Decoded]]:
        """For each input crystal of ``job.source`` in order, its candidates (one or more Decoded; an empty list
        when the input could not be used). Checks that need no data come first."""

    @abstractmethod
    def evaluate(self, candidates: Sequence[Sequence[Structure | None]], true: Sequence[Structure],
                 scoring: Scoring) -> dict[str, Any]:
        """Flat metrics of ``candidates[i]`` (None: a failed candidate) against input crystal ``true[i]``."""


def supported_tasks(model: type[GenerativeModel], tasks: dict[str, Task]) -> list[str]:
    """``generate`` and the names of the registered ``tasks`` that ``model`` can run."""
    return ["generate", *sorted(name for name, task in tasks.items() if task.unsupported(model) is None)]
