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
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from pymatgen.core import Structure
    from torch_geometric.data import Data

    from crystalgen.data.records import LoadedSplit
    from crystalgen.models.base import Decoded, GenerativeModel
    from crystalgen.samplers.base import Sampler

log = logging.getLogger("crystalgen.tasks")


@dataclass
class TaskJob:
    """What a task's :meth:`Task.produce` works with.

    The input crystals are read once per job (:meth:`inputs`): the task's candidates, the ``input_id`` of every
    written row and the true structures its evaluation compares with all come from those same records, so
    ``produce`` returns one entry per record of :meth:`inputs`, in its order (fewer when the last ones gave none).

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
    #: what the task did besides producing crystals (e.g. a fitted property head), for sampling.json's task_record
    record: dict[str, Any] = field(default_factory=dict)
    _loaded: LoadedSplit | None = field(default=None, init=False, repr=False, compare=False)
    _prepared: list[Data | str] | None = field(default=None, init=False, repr=False, compare=False)

    def inputs(self) -> LoadedSplit:
        """The first ``num_crystals`` readable crystals of ``source``, in file order (``records[i].id``,
        ``records[i].structure``; ``notes`` on provenance), read as ``config.data`` says on the first call and kept
        for the rest of the job."""
        if self._loaded is None:
            from crystalgen.data.registry import get_dataset
            from crystalgen.runner.datasets import parse_split

            name, split = parse_split(self.source)
            self._loaded = get_dataset(name).load(split, max_rows=self.num_crystals, progress=self.show_progress,
                                                  **self._reading())
            log.info("%s", self._loaded.summary())
        return self._loaded

    def prepared_by_input(self) -> list[Data | str]:
        """Per record of :meth:`inputs`, the crystal preprocessed by the model's transform (through the dataset
        cache), or the reason the transform refused it, for tasks that hand the inputs to the model (reconstruct,
        optimize)."""
        if self._prepared is None:
            from crystalgen.data.preprocess import prepare_split

            prepared = prepare_split(self.inputs(), type(self.model).transform(self.config.model),
                                     progress=self.show_progress, **self._reading())
            log.info("%s", prepared.summary())
            kept = dict(zip(prepared.record_index, prepared.items, strict=True))
            reasons = iter(skipped.reason for skipped in prepared.skipped)  # the refused records, in record order
            self._prepared = [kept[i] if i in kept else next(reasons) for i in range(len(self.inputs().records))]
        return self._prepared

    def _reading(self) -> dict[str, Any]:
        """How ``config.data`` says to read crystals (strict, workers, cache_dir); a configuration saved without
        them (a checkpoint written by hand) reads as the dataset layer's defaults do."""
        data = self.config.get("data") or {}
        return {"strict": bool(data.get("strict", False)), "workers": data.get("workers"),
                "cache_dir": data.get("cache_dir")}

    def prepared_inputs(self) -> list[Data]:
        """The preprocessed crystals of :meth:`prepared_by_input`, without those the transform refused (so
        positions no longer match :meth:`inputs` when it refused any)."""
        return [item for item in self.prepared_by_input() if not isinstance(item, str)]

    def prepared_split(self, source: str) -> list[Data]:
        """Every crystal of another split ``source`` preprocessed by the model's transform (through the dataset
        cache): crystals a task needs besides its inputs, such as those a property head is fitted on."""
        from crystalgen.runner.datasets import parse_split, prepared_split

        name, split = parse_split(source)
        data_cfg = self.config.data.copy()
        data_cfg.dataset = name
        return prepared_split(data_cfg, split, type(self.model).transform(self.config.model), max_rows=None,
                              show_progress=self.show_progress)


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
