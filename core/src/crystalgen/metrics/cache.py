"""On-disk cache of per-crystal arrays computed for a reference split (fingerprints, space groups, properties).

Location: ``$CRYSTALGEN_CACHE/metrics`` or ``~/.cache/crystalgen/metrics``. An entry's key hashes the exact
content of the reference structures (lattice, atomic numbers, fractional coordinates as float64 bytes), the kind
of feature, its parameters and the featuriser version, so a changed split, option or library version is a miss,
never a stale hit. Files are written atomically (temporary file + rename); an unreadable file is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from pymatgen.core import Structure

from crystalgen.atomic import replacing


def cache_root() -> Path:
    root = os.environ.get("CRYSTALGEN_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "crystalgen"


def structures_digest(structures: Sequence[Structure]) -> str:
    """sha256 of the structures' content, in order (lattice, Z, fractional coordinates as float64 bytes)."""
    h = hashlib.sha256()
    for s in structures:
        h.update(np.asarray(s.lattice.matrix, dtype=np.float64).tobytes())
        h.update(np.asarray(s.atomic_numbers, dtype=np.int64).tobytes())
        h.update(np.asarray(s.frac_coords, dtype=np.float64).tobytes())
        h.update(b"|")
    return h.hexdigest()


class ArrayCache:
    """Named groups of numpy arrays, one .npz file per key, under ``<root>/metrics``."""

    def __init__(self, root: Path | None = None) -> None:
        self.directory = (root or cache_root()) / "metrics"

    @staticmethod
    def key(kind: str, digest: str, params: Mapping[str, object]) -> str:
        text = json.dumps({"kind": kind, "digest": digest, "params": dict(params)}, sort_keys=True, default=str)
        return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError):
            return None

    def save(self, key: str, arrays: Mapping[str, np.ndarray]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        with replacing(path) as handle:
            np.savez(handle, **cast(dict[str, Any], dict(arrays)))  # names only: no allow_pickle among them
        return path
