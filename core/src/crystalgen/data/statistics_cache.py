"""Statistics a model estimates from its training crystals, computed once and kept beside the preprocessed splits.

Why: some estimates are costly and deterministic (SyMat's per-level distance std perturbs a thousand crystals at
every noise level); recomputing them at the start of every training run of the same data and settings wastes that
time, and a table shipped without the code that made it (as SyMat's official code does) cannot be checked. The key
is the content of the crystals themselves (every tensor attribute, in order) with the estimate's settings and the
torch version, so a changed dataset, transform, setting or random-number stream gives a new entry, never a stale one.
Files live in the crystalgen cache (``$CRYSTALGEN_CACHE``, else ``~/.cache/crystalgen``) under ``statistics/`` and
use its safe, self-checking format.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from crystalgen.data import cache

log = logging.getLogger("crystalgen.data")

#: Bump when the file layout changes.
FORMAT = 1


def content_digest(items: Sequence[Data]) -> str:
    """SHA-256 of every tensor attribute of every item (names, dtypes, shapes and bytes, in order)."""
    h = hashlib.sha256()
    for item in items:
        for name in sorted(item.keys()):
            value = item[name]
            if isinstance(value, Tensor):
                tensor = value.detach().cpu().contiguous()
                h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
                h.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
        h.update(b"\x00")
    return h.hexdigest()


def statistics_file(name: str, key: str, cache_dir: str | Path | None = None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache.cache_root()
    return root / "statistics" / f"{cache.safe_name(name)}-{key[:24]}.pt"


def cached_statistics(name: str, items: Sequence[Data], settings: Mapping[str, Any],
                      compute: Callable[[], Mapping[str, Tensor]], *,
                      cache_dir: str | Path | None = None) -> dict[str, Tensor]:
    """``compute()`` (a mapping of tensors) for these training ``items`` and ``settings``, read from the cache when
    the same estimate was made before, else computed and stored. ``settings`` must name everything besides the
    items that changes the result (JSON-serialisable values; tensors as lists). An unwritable cache only warns."""
    key = cache.digest(name, FORMAT, dict(settings), torch.__version__, content_digest(items))
    path = statistics_file(name, key, cache_dir)
    payload = cache.read(path)
    if payload is not None and payload.get("key") == key:
        log.info("%s: read from the cache (%s)", name, path)
        return {k: v.clone() for k, v in payload["tensors"].items()}
    values = {k: v.detach().cpu().clone() for k, v in compute().items()}
    if cache.write(path, {"key": key, "name": name, "tensors": values}):
        log.info("%s: computed and cached (%s)", name, path)
    return values
