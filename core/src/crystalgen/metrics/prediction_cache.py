"""On-disk cache of per-structure model outputs (predicted properties, CHGNet energies and embeddings).

Reference sets (a dataset's test or train split) are evaluated against every run, and CrystalNN graphs or
CHGNet passes over thousands of crystals take minutes on a CPU, so their outputs are stored under
``$CRYSTALGEN_CACHE`` (default ``~/.cache/crystalgen``) in ``predictions/<model identity>/<content hash>.npz``.
The key is the content of the structures (lattice, species, fractional coordinates, rounded to 1e-8) and the
identity of the model (weights digest + pipeline version), never a file name, so an edited dataset or model
is recomputed, not served stale.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Structure


def cache_root() -> Path:
    """``$CRYSTALGEN_CACHE`` if set, else ``~/.cache/crystalgen``."""
    env = os.environ.get("CRYSTALGEN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crystalgen"


def structures_digest(structures: Sequence[Structure]) -> str:
    """Content hash of a list of structures (order matters; 1e-8 rounding absorbs float noise from CIF parsing)."""
    digest = hashlib.sha256()
    for s in structures:
        digest.update(np.round(np.asarray(s.lattice.matrix, dtype=np.float64), 8).tobytes())
        digest.update(np.asarray([sp.Z for sp in s.species], dtype=np.int64).tobytes())
        digest.update(np.round(np.asarray(s.frac_coords, dtype=np.float64), 8).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def cached(identity: str, structures: Sequence[Structure], compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute()`` for these structures under model ``identity``, read from the cache when present.

    Writes are atomic (temporary file + rename), so concurrent runs never see half a file; an unreadable cache
    file is recomputed and replaced.
    """
    folder = cache_root() / "predictions" / re.sub(r"[^A-Za-z0-9._-]+", "_", identity)
    path = folder / f"{structures_digest(structures)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {k: stored[k] for k in stored.files}
        except (OSError, ValueError):
            pass
    result = compute()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **result)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return result
