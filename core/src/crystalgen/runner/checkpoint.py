"""Checkpoints: atomic writes, safe loading (``weights_only=True``) and clear errors for damaged files.

A checkpoint holds only tensors, numbers, strings, lists and dicts (the config as a YAML string, RNG states as
tensors), so it loads without unpickling arbitrary objects. Layout (``FORMAT`` version 1):

    format, version, crystalgen_version, torch_version
    model_name   registry name of the model
    config       the resolved run configuration, YAML text
    model        model state_dict (data-derived statistics travel in its buffers / extra state)
    ema          averaged weights (state_dict) or None
    optimizer, scheduler   their state_dicts (scheduler may be None)
    rng          python / numpy / torch / cuda generator states as tensors
    progress     epoch, batch_in_epoch, global_step, best_loss, bad_validations, train_seconds, finished
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "crystalgen-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt or not a crystalgen checkpoint (names the file)."""


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically: a crash leaves the previous file intact, never a partial one."""
    from crystalgen import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "crystalgen_version": __version__,
               "torch_version": str(torch.__version__), **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely, raising CheckpointError (naming ``path``) when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip reader, unpickler and EOF errors share no base class
        text = str(exc)
        if "Unsupported global" in text:  # readable, but holds objects beyond tensors and plain values
            detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0]
            raise CheckpointError(
                f"checkpoint {path} holds Python objects that are not loaded for safety ({detail}); "
                "it was not written by crystalgen's runner"
            ) from None
        lines = text.strip().splitlines()
        first_line = next((ln.split(":", 1)[1].strip() for ln in lines if "WeightsUnpickler error" in ln),
                          lines[0] if lines else type(exc).__name__)
        raise CheckpointError(
            f"checkpoint {path} cannot be read (truncated or corrupt: {first_line}). "
            "Use another checkpoint of the run (checkpoints/last.ckpt or best.ckpt) or train again."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a crystalgen checkpoint (no '{FORMAT}' marker)")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer crystalgen (checkpoint version {payload['version']}); upgrade crystalgen-core")
    return payload


# -- random number generator states as tensors (weights_only-safe) ---------------------------------------
def rng_state() -> dict[str, Any]:
    """States of python's, numpy's and torch's (CPU and CUDA) global generators."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": torch.tensor(py_internal, dtype=torch.int64),
        "python_version": py_version,
        "python_gauss": py_gauss,
        "numpy_keys": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "numpy_name": np_name,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only when the device count matches)."""
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    np.random.set_state((state["numpy_name"], state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
