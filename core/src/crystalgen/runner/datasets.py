"""The runner's side of the data layer: a configured dataset split, preprocessed with a model's transform."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from omegaconf import DictConfig
from torch_geometric.data import Data

from crystalgen.encoders.base import StructureTransform
from crystalgen.runner.size_limit import SplitSizes, cap_atoms, largest_crystal

log = logging.getLogger("crystalgen.data")


#: Items -> (index, reason) of those to leave out after preprocessing (e.g. runner.budget.refusals).
Refuse = Callable[[Sequence[Data]], list[tuple[int, str]]]


def prepared_split(data_cfg: DictConfig, split: str, transform: StructureTransform, *,
                   max_rows: int | None = None, show_progress: bool = True, refuse: Refuse | None = None,
                   max_atoms: int | None = None, sizes: SplitSizes | None = None) -> list[Data]:
    """Load ``split`` of ``data_cfg.dataset``, keep its first ``max_rows`` records, and preprocess them
    (through the on-disk cache). Records with more than ``max_atoms`` atoms are skipped as ``too many atoms`` before
    preprocessing; items that ``refuse`` names join the skipped records, with their reason (not cached: they depend
    on settings such as the memory budget). Skipped records are summarised in the log, never fatal unless
    ``strict``. ``sizes`` receives the count left out above ``max_atoms`` and the largest crystal kept."""
    from crystalgen.data.preprocess import prepare_split
    from crystalgen.data.records import DataError, Skipped
    from crystalgen.data.registry import get_dataset

    loaded = get_dataset(data_cfg.dataset).load(split, strict=data_cfg.strict, max_rows=max_rows,
                                                workers=data_cfg.workers, cache_dir=data_cfg.cache_dir,
                                                progress=show_progress)
    excluded = cap_atoms(loaded, max_atoms)
    if excluded and data_cfg.strict:
        raise DataError(loaded.skipped[-excluded])
    log.info("%s", loaded.summary())
    prepared = prepare_split(loaded, transform, cache_dir=data_cfg.cache_dir, workers=data_cfg.workers,
                             strict=data_cfg.strict, progress=show_progress)
    refused = dict(refuse(prepared.items)) if refuse is not None else {}
    if refused:
        for k, reason in refused.items():
            record = loaded.records[prepared.record_index[k]]
            prepared.skipped.append(Skipped(record.source, record.row, record.id, reason))
            if data_cfg.strict:
                raise DataError(prepared.skipped[-1])
        prepared.items = [item for k, item in enumerate(prepared.items) if k not in refused]
        prepared.record_index = [i for k, i in enumerate(prepared.record_index) if k not in refused]
    log.info("%s", prepared.summary())
    if sizes is not None:
        sizes.excluded, sizes.largest = excluded, largest_crystal(loaded, prepared.record_index)
    return prepared.items


def parse_split(spec: str) -> tuple[str, str]:
    """``"NAME:SPLIT"`` -> (name, split); the name may itself be a path containing colons only before the last."""
    name, sep, split = spec.rpartition(":")
    if not sep or not name or not split:
        raise ValueError(f"{spec!r} must look like NAME:SPLIT (e.g. mp_20:test or embedded:test)")
    return name, split


def split_structures(name: str, split: str, *, workers: int | None = None,
                     progress: bool = True) -> tuple[list, list[str]]:
    """The pymatgen Structures of a dataset split and the provenance notes a report must carry (a partial split,
    rows the loader skipped)."""
    from crystalgen.data.registry import get_dataset

    loaded = get_dataset(name).load(split, workers=workers, progress=progress)
    notes = list(loaded.notes)
    if loaded.skipped:
        notes.append(f"{len(loaded.skipped)} of {loaded.rows_read} rows skipped by the loader")
    return [record.structure for record in loaded.records], notes


def provenance(role: str, source: str, notes: list[str]) -> dict[str, str]:
    """The keys metrics.json carries for one input (``reference`` or ``train``): where it came from and its notes."""
    keys = {f"{role}_source": source}
    if notes:
        keys[f"{role}_notes"] = "; ".join(notes)
    return keys


def reference_statistics(spec: str, max_rows: int | None = 2000) -> dict[str, list[float]]:
    """Atoms per cell and density (g/cm^3) of the first ``max_rows`` crystals of ``NAME:SPLIT``, for reports."""
    from crystalgen.data.registry import get_dataset

    name, split = parse_split(spec)
    records = get_dataset(name).load(split, max_rows=max_rows, progress=False).records
    return {"num_atoms": [len(r.structure) for r in records], "density": [float(r.structure.density) for r in records]}
