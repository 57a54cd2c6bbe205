"""A model's preprocessing over a dataset split: in parallel, with progress, cached on disk.

The cache key is a checksum of the input records (structures, ids, rows, properties), the transform's
``cache_key()`` (name, version, options) and ``PREPROCESS_FORMAT``; change any of them and the split is rebuilt.
Items are stored as plain containers (see :mod:`crystalgen.data.cache`) and rebuilt into ``Data`` objects, both
after a fresh build and after a cache hit, so the two give identical items.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

from crystalgen.data import cache
from crystalgen.data.crystal import PROPERTY_PREFIX, InvalidCrystalError
from crystalgen.data.parallel import ordered_map
from crystalgen.data.record_store import records_checksum
from crystalgen.data.records import CrystalRecord, DataError, LoadedSplit, Skipped, summarize_skips
from crystalgen.encoders.base import SkipCrystal, StructureTransform

#: Bump when the stored form of prepared items changes.
PREPROCESS_FORMAT = "1"
_PLAIN = (torch.Tensor, str, int, float, bool, type(None))


@dataclass
class PreparedSplit:
    """A split after the model's transform: ``items`` in record order, minus the ``skipped`` ones."""

    name: str
    split: str
    items: list[Data]
    skipped: list[Skipped]
    seconds: float
    cache_hit: bool
    cache_file: Path | None = None
    #: index in the loaded split's records of each item (so that a later refusal can name its file, row and id)
    record_index: list[int] = field(default_factory=list)

    def summary(self) -> str:
        how = "from cache" if self.cache_hit else "built"
        head = f"{self.name}/{self.split}: {len(self.items)} crystals prepared, {len(self.skipped)} skipped ({how}, {self.seconds:.1f} s)"
        return "\n".join([head, *summarize_skips(self.skipped)])


def _storable(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_storable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _storable(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def transform_record(transform: StructureTransform, record: CrystalRecord) -> dict[str, Any] | str:
    """The transform's item for one record as a plain dict (with ``material_id`` and ``prop_*`` filled in where the
    transform left them out), or the reason it was refused."""
    try:
        data = transform(record.structure)
    except SkipCrystal as exc:
        return f"refused by {transform.name}: {exc}"
    except InvalidCrystalError as exc:
        return f"invalid crystal: {exc}"
    if not isinstance(data, Data):
        raise TypeError(f"transform {transform.name!r} returned {type(data).__name__}, expected torch_geometric Data")
    if "material_id" not in data:
        data.material_id = record.id
    for name, value in record.properties.items():
        if PROPERTY_PREFIX + name not in data:
            data[PROPERTY_PREFIX + name] = torch.tensor([float(value)], dtype=torch.float64)
    item = data.to_dict()
    bad = [k for k, v in item.items() if not _storable(v)]
    if bad:
        raise TypeError(f"transform {transform.name!r} set {', '.join(bad)} to values the cache cannot store safely; "
                        f"use tensors, numbers, strings, or lists/dicts of them")
    return item


def _transform_chunk(transform: StructureTransform, records: Sequence[CrystalRecord]) -> list[dict[str, Any] | str]:
    return [transform_record(transform, r) for r in records]


def cache_file_for(loaded: LoadedSplit, transform: StructureTransform, cache_dir: Path | None = None) -> tuple[Path, str]:
    """Where the prepared split is cached, and its key."""
    key = cache.digest("prepared", PREPROCESS_FORMAT, records_checksum(loaded.records), transform.cache_key())
    name = f"{cache.safe_name(loaded.name)}-{cache.safe_name(loaded.split)}-{cache.safe_name(transform.name)}-{key[:16]}.pt"
    return Path(cache_dir or cache.cache_root()) / "prepared" / name, key


def prepare_split(loaded: LoadedSplit, transform: StructureTransform, *, cache_dir: str | os.PathLike | None = None,
                  workers: int | None = None, strict: bool = False, progress: bool = True) -> PreparedSplit:
    """Apply ``transform`` to every record of ``loaded`` (or read the result from the cache).

    Args:
        cache_dir: cache folder (default ``$CRYSTALGEN_CACHE`` or ``~/.cache/crystalgen``).
        workers: processes (None: min(cores, 8); 0 or 1: this process). Small splits stay in this process.
        strict: raise :class:`DataError` (file, row, id, reason) for the first refused crystal instead of skipping.
    """
    start = time.perf_counter()
    path, key = cache_file_for(loaded, transform, Path(cache_dir) if cache_dir is not None else None)
    hit = cache.read_items(path, key)
    if hit is not None:
        items, meta = hit
        refused = [(int(i), str(reason)) for i, reason in meta["skipped"]]
    else:
        results = ordered_map(functools.partial(_transform_chunk, transform), loaded.records, workers=workers,
                              desc=f"preprocessing {loaded.name}/{loaded.split} ({transform.name})", progress=progress)
        items = [r for r in results if not isinstance(r, str)]
        refused = [(i, r) for i, r in enumerate(results) if isinstance(r, str)]
        cache.write_items(path, key, items, {"skipped": [list(x) for x in refused],
                                                "transform": json.dumps(transform.cache_key(), sort_keys=True, default=repr)})
    skipped = [Skipped(loaded.records[i].source, loaded.records[i].row, loaded.records[i].id, reason) for i, reason in refused]
    if strict and skipped:
        raise DataError(skipped[0])
    data = [Data.from_dict(item) for item in items]
    left_out = {i for i, _ in refused}
    kept = [i for i in range(len(loaded.records)) if i not in left_out]
    return PreparedSplit(loaded.name, loaded.split, data, skipped, time.perf_counter() - start, hit is not None, path, kept)
