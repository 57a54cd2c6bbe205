"""On-disk cache of parsed and preprocessed crystals: safe to load, atomic to write, self-checking.

File layout: ``MAGIC`` + payload length (8 bytes, little endian) + SHA-256 of the payload (32 bytes) + payload,
where the payload is a ``torch.save`` of plain containers (tensors, lists, dicts, str, int, float, bool, None),
loaded back with ``torch.load(weights_only=True)``: opening a cache file can never run code. A truncated or
corrupt file fails the length or checksum test and is rebuilt with a warning. Files are written to a temporary
name in the same folder and renamed into place, so readers (and other ranks of a DDP job) never see half a file.

Lists of per-crystal dicts are stored column-wise: a tensor attribute that every item has, with one dtype and one
trailing shape, is concatenated along dim 0 (one tensor plus sizes); anything else is kept as a list.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from crystalgen.atomic import replace_bytes

MAGIC = b"CRYSTALGEN-CACHE1\n"
_HEADER = len(MAGIC) + 8 + 32
_MISSING = "__missing__"


def cache_root() -> Path:
    """``$CRYSTALGEN_CACHE``, else ``~/.cache/crystalgen``."""
    root = os.environ.get("CRYSTALGEN_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "crystalgen"


def digest(*parts: Any) -> str:
    """SHA-256 (hex) of JSON-serialisable parts; keys are sorted so that dict order does not matter."""
    text = json.dumps(parts, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def safe_name(text: str) -> str:
    """A file-name fragment from a dataset name or path."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("._")
    return cleaned[-60:] or "data"


def write(path: Path, payload: dict[str, Any]) -> bool:
    """Write ``payload`` atomically; on an unwritable cache folder warn and return False (the caller carries on)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    header = MAGIC + len(body).to_bytes(8, "little") + hashlib.sha256(body).digest()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a temporary file is private; a cache follows the umask
        replace_bytes(path, header, body, permissions=0o666 & ~_umask())
    except OSError as exc:
        warnings.warn(f"cannot write the cache file {path} ({exc}); results are not cached", stacklevel=2)
        return False
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read(path: Path) -> dict[str, Any] | None:
    """The payload at ``path``; None when the file is absent or damaged (then with a warning)."""
    try:
        blob = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        warnings.warn(f"cannot read the cache file {path} ({exc}); computing again", stacklevel=2)
        return None
    problem = _check(blob)
    if problem is None:
        try:
            payload = torch.load(io.BytesIO(blob[_HEADER:]), weights_only=True)
        except Exception as exc:  # e.g. written by a newer torch; treat like damage
            problem = f"cannot be loaded ({type(exc).__name__}: {exc})"
        else:
            if isinstance(payload, dict):
                return payload
            problem = "does not hold a mapping"
    warnings.warn(f"cache file {path} {problem}; rebuilding it", stacklevel=2)
    return None


def _check(blob: bytes) -> str | None:
    if not blob.startswith(MAGIC) or len(blob) < _HEADER:
        return "is not a crystalgen cache file or is truncated"
    length = int.from_bytes(blob[len(MAGIC):len(MAGIC) + 8], "little")
    if len(blob) - _HEADER != length:
        return f"is truncated or padded ({len(blob) - _HEADER} of {length} payload bytes)"
    if hashlib.sha256(blob[_HEADER:]).digest() != blob[len(MAGIC) + 8:_HEADER]:
        return "fails its checksum (corrupt)"
    return None


# ------------------------------------------------------------------------------------------------ column storage


def _concatenable(values: Sequence[Any]) -> bool:
    first = values[0]
    if not isinstance(first, torch.Tensor) or first.dim() == 0:
        return False
    return all(
        isinstance(v, torch.Tensor) and v.dim() == first.dim() and v.dtype == first.dtype and v.shape[1:] == first.shape[1:]
        for v in values
    )


def pack(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Column-wise form of a list of dicts (see the module docstring)."""
    keys = list(dict.fromkeys(k for item in items for k in item))
    columns: dict[str, Any] = {}
    for key in keys:
        values = [item.get(key, _MISSING) for item in items]
        if _concatenable(values):
            columns[key] = {"cat": torch.cat(values), "sizes": torch.tensor([v.shape[0] for v in values], dtype=torch.long)}
        else:
            columns[key] = {"list": values}
    return {"count": len(items), "columns": columns}


def unpack(packed: dict[str, Any]) -> list[dict[str, Any]]:
    """Inverse of :func:`pack` (tensors are fresh copies, not views into one buffer)."""
    count = packed["count"]
    items: list[dict[str, Any]] = [{} for _ in range(count)]
    for key, column in packed["columns"].items():
        if "cat" in column:
            values = [t.clone() for t in torch.split(column["cat"], column["sizes"].tolist())]
        else:
            values = column["list"]
        if len(values) != count:
            raise ValueError(f"cache column {key!r} has {len(values)} entries for {count} items")
        for item, value in zip(items, values, strict=True):
            if not (isinstance(value, str) and value == _MISSING):
                item[key] = value
    return items


def write_items(path: Path, key: str, items: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None) -> bool:
    """Cache a list of per-crystal dicts under ``key`` (see :func:`write`)."""
    return write(path, {"key": key, "items": pack(items), "meta": meta or {}})


def read_items(path: Path, key: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """``(items, meta)`` cached under ``key`` at ``path``; None when absent, damaged or made for another key."""
    payload = read(path)
    if payload is None:
        return None
    if payload.get("key") != key:
        warnings.warn(f"cache file {path} was made for other inputs; rebuilding it", stacklevel=2)
        return None
    try:
        return unpack(payload["items"]), dict(payload.get("meta", {}))
    except (KeyError, TypeError, ValueError) as exc:
        warnings.warn(f"cache file {path} is malformed ({type(exc).__name__}: {exc}); rebuilding it", stacklevel=2)
        return None
