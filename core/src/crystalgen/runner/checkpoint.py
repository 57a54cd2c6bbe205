"""Checkpoints: atomic writes, a content digest verified before loading, safe loading (``weights_only=True``),
and one-line errors naming the file and the cause.

File layout (``VERSION`` 2): ``MAGIC`` + format version (2 bytes, little endian) + payload length (8 bytes) +
SHA-256 of the payload (32 bytes) + payload, the payload being a ``torch.save`` of the mapping below. The digest
covers everything a checkpoint carries (weights, configuration, data statistics in the model's buffers), so a
flipped byte or a cut-off file is refused before torch reads a single tensor. Version-1 files (a bare
``torch.save``, written before the digest existed) still load, with a warning that nothing could be verified.

A checkpoint holds only tensors, numbers, strings, lists and dicts (the config as a YAML string, RNG states as
tensors), so it loads without unpickling arbitrary objects:

    format, version, crystalgen_version, torch_version
    model_name   registry name of the model
    config       the resolved run configuration, YAML text
    model        model state_dict (data-derived statistics travel in its buffers / extra state)
    ema          averaged weights (state_dict) or None
    optimizer, scheduler   their state_dicts (scheduler may be None)
    rng          python / numpy / torch / cuda generator states as tensors
    progress     epoch, batch_in_epoch, global_step, best_loss, bad_validations, train_seconds, finished

Writes go to ``.<name>.<random>.tmp`` beside the target and are renamed into place; temporary files left by an
interrupted write are removed at the next write of the same checkpoint, and no reader ever opens them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from crystalgen.atomic import replace_bytes, temporary_files

FORMAT = "crystalgen-checkpoint"
VERSION = 2
MAGIC = b"CRYSTALGEN-CHECKPOINT\n"
_HEADER = len(MAGIC) + 2 + 8 + 32
_ZIP = b"PK\x03\x04"  # a bare torch.save: version 1, or not crystalgen's at all

log = logging.getLogger("crystalgen.checkpoint")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the one-line message names the file and the cause."""

    def __init__(self, path: str | Path, cause: str, advice: str = "") -> None:
        self.path, self.cause = Path(path), cause
        tail = f"; {advice}" if advice else ""
        super().__init__(f"checkpoint {path}: {cause}{tail}")


_USE_ANOTHER = "use another checkpoint of the run (checkpoints/last.ckpt or best.ckpt) or train again"


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` with its digest to ``path`` atomically: a crash leaves the previous file intact, never a
    partial one; temporary files of earlier interrupted writes of ``path`` are removed first."""
    from crystalgen import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in temporary_files(path):
        stale.unlink(missing_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "crystalgen_version": __version__,
               "torch_version": str(torch.__version__), **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    header = MAGIC + VERSION.to_bytes(2, "little") + len(body).to_bytes(8, "little") + hashlib.sha256(body).digest()
    return replace_bytes(path, header, body)


def _verified_body(path: Path, blob: bytes) -> bytes:
    """The payload bytes of a version-2 file after its length and digest checks (CheckpointError otherwise)."""
    if len(blob) < _HEADER:
        raise CheckpointError(path, f"truncated ({len(blob)} bytes, shorter than the {_HEADER}-byte header)",
                              _USE_ANOTHER)
    version = int.from_bytes(blob[len(MAGIC):len(MAGIC) + 2], "little")
    if version > VERSION:
        raise CheckpointError(path, f"newer format (checkpoint format {version}; this crystalgen reads up to {VERSION})",
                              "upgrade crystalgen-core")
    length = int.from_bytes(blob[len(MAGIC) + 2:len(MAGIC) + 10], "little")
    body = blob[_HEADER:]
    if len(body) < length:
        raise CheckpointError(path, f"truncated ({len(body)} of {length} payload bytes)", _USE_ANOTHER)
    if len(body) > length:
        raise CheckpointError(path, f"corrupt ({len(body) - length} bytes after the declared payload)", _USE_ANOTHER)
    if hashlib.sha256(body).digest() != blob[len(MAGIC) + 10:_HEADER]:
        raise CheckpointError(path, "corrupt (content digest mismatch: the file changed after it was written)",
                              _USE_ANOTHER)
    return body


def _unpickle(path: Path, body: bytes, map_location: str | torch.device) -> Any:
    """``torch.load(weights_only=True)`` with its errors as one-line causes (never torch's advice to load unsafely)."""
    try:
        return torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except Exception as exc:  # zip reader, unpickler and EOF errors share no base class
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if "Unsupported global" in text or found:
            what = found.group(1) if found else "a Python object"
            raise CheckpointError(path, f"foreign code (holds {what}, which is never imported or run)",
                                  "it was not written by crystalgen's runner; do not use it") from None
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
        raise CheckpointError(path, f"corrupt (unreadable payload: {first[:200]})", _USE_ANOTHER) from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    expected_model: str | None = None) -> dict[str, Any]:
    """The payload of checkpoint ``path`` after its digest is verified; CheckpointError (one line naming the file
    and the cause: missing, truncated, corrupt, foreign code, other model, newer format) when it cannot be used."""
    from crystalgen.data.user_files import CHECKPOINT_MAX_FILE_MB, RefusedFileError, read_bytes

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(path, "does not exist")
    try:
        blob = read_bytes(path, CHECKPOINT_MAX_FILE_MB)  # a regular file within the limit, opened without blocking
    except RefusedFileError as exc:
        raise CheckpointError(path, exc.cause) from None
    except FileNotFoundError:
        raise CheckpointError(path, "does not exist (a symbolic link whose target is missing)") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from None
    if blob[:len(MAGIC)] == MAGIC[:len(blob)]:  # the header, or the start of one (an empty file included)
        payload = _unpickle(path, _verified_body(path, blob), map_location)
    elif blob.startswith(_ZIP):
        payload = _unpickle(path, blob, map_location)
        if isinstance(payload, dict) and payload.get("format") == FORMAT:
            log.warning("checkpoint %s has no content digest (format 1, written before digests); it is used "
                        "unverified", path)
    else:
        raise CheckpointError(path, "corrupt or not a checkpoint (no crystalgen checkpoint header)", _USE_ANOTHER)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, f"foreign file (a torch file without the '{FORMAT}' marker)",
                              "give a checkpoint written by crystalgen train")
    if int(payload.get("version", 0)) > VERSION:
        raise CheckpointError(path, f"newer format (checkpoint format {payload['version']})", "upgrade crystalgen-core")
    name = payload.get("model_name")
    if expected_model is not None and name != expected_model:
        raise CheckpointError(path, f"other model (holds {name!r}, not {expected_model!r})",
                              f"name the model {name!r} or give a {expected_model} checkpoint")
    return payload


# -- random number generator states as tensors (weights_only-safe) ---------------------------------------
def rng_state() -> dict[str, Any]:
    """States of python's, numpy's and torch's (CPU and CUDA) global generators."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = cast(tuple[Any, ...], np.random.get_state())
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
