"""Datasets by name or path: the benchmark tables, the embedded default set, and user files.

Registered datasets come from the plugin host's ``dataset`` registry (the core's are in :func:`builtin_datasets`;
a plugin adds its own through the ``crystalgen_datasets`` hook). Anything else given to :func:`get_dataset` is
read as a path:

* a folder with ``train.csv`` / ``val.csv`` / ``test.csv`` (crystal tables, see :mod:`crystalgen.data.tabular`):
  one split per file;
* a CSV file with a ``cif`` column, a CIF file, an extxyz file, or a folder of CIF / extxyz files: one split,
  ``train``.

A registered name wins over a folder of the same name in the working directory; write ``./name`` for the folder.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from crystalgen.data import embedded, tabular
from crystalgen.data.benchmarks import BENCHMARKS, Benchmark, data_root, data_root_origin, git_blob_id
from crystalgen.data.files import CRYSTAL_SUFFIXES, crystal_files, load_files
from crystalgen.data.records import LoadedSplit
from crystalgen.data.user_files import check_file
from crystalgen.registry import UnknownComponentError

USER_SPLIT = "train"
PATH_HINT = ("or give a path: a folder with train/val/test CSVs, a CSV with a 'cif' column, a CIF or extxyz file, "
             "or a folder of CIF / extxyz files")


class DatasetNotFoundError(FileNotFoundError):
    """A registered dataset whose files are not on this machine; the message says how to get them."""


@dataclass
class DatasetSpec(ABC):
    """A named dataset: its splits, its property columns, and how to load a split.

    Attributes:
        name: registry name (also names the cache files).
        description: one line for ``crystalgen data list``.
        splits: the split names ``load`` accepts.
        property_names: numeric per-crystal properties the records may carry.
        default_property: the property that property-conditioned tasks use unless told otherwise.
    """

    name: str
    description: str
    splits: tuple[str, ...]
    property_names: tuple[str, ...] = ()
    default_property: str | None = None

    @abstractmethod
    def load(self, split: str, *, strict: bool = False, max_rows: int | None = None, workers: int | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True) -> LoadedSplit:
        """Read one split: records in file order, bad rows skipped with reasons (``strict``: raise on the first),
        only the first ``max_rows`` rows when given. ``workers`` and ``cache_dir`` tune parsing where it is slow."""

    def location(self) -> str:
        """Where the data is found (or why it is not), for listings."""
        return ""

    def row_count(self, split: str) -> int | None:
        """Rows of a split without parsing them (None when unknown or absent)."""
        return None

    def provenance(self, split: str) -> list[str]:
        """What is known about where a split's file comes from (may read the file; no parsing)."""
        return []

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"dataset {self.name!r} has no split {split!r}; its splits are: {', '.join(self.splits)}")


def _cache_path(cache_dir: str | os.PathLike | None) -> Path | None:
    return Path(cache_dir) if cache_dir is not None else None


# ---------------------------------------------------------------------------------------------- benchmarks


@dataclass
class BenchmarkDataset(DatasetSpec):
    """A CDVAE benchmark read from ``<data root>/<name>/<split>.csv`` (see :func:`crystalgen.data.benchmarks.data_root`)."""

    benchmark: Benchmark | None = None

    def path(self, split: str) -> Path:
        return data_root() / self.name / f"{split}.csv"

    def location(self) -> str:
        folder = data_root() / self.name
        return str(folder) if folder.is_dir() else f"not found in {folder} ({data_root_origin()})"

    def row_count(self, split: str) -> int | None:
        path = self.path(split)
        return tabular.count_rows(path) if path.is_file() else None

    def require(self, split: str) -> Path:
        self.check_split(split)
        path = self.path(split)
        if not path.is_file():
            raise DatasetNotFoundError(
                f"{self.name}/{split}.csv not found in {path.parent} ({data_root_origin()}). Run `crystalgen data fetch {self.name}` "
                f"to download the official CDVAE files there, or set CRYSTALGEN_DATA to a folder holding "
                f"{self.name}/{{{','.join(self.splits)}}}.csv."
            )
        return path

    def load(self, split: str, *, strict: bool = False, max_rows: int | None = None, workers: int | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True) -> LoadedSplit:
        path = self.require(split)
        loaded = tabular.load_csv(path, name=self.name, split=split, label=f"{self.name}/{split}.csv",
                                  property_columns=self.property_names, strict=strict, max_rows=max_rows, workers=workers,
                                  cache_dir=_cache_path(cache_dir), progress=progress)
        loaded.notes += self.notes(split, path, max_rows)
        return loaded

    def notes(self, split: str, path: Path, max_rows: int | None = None) -> list[str]:
        """Partial file, missing property columns, ``max_rows`` cut: found by comparing the file with the official facts."""
        assert self.benchmark is not None
        notes = []
        rows, official = tabular.count_rows(path), self.benchmark.rows[split]
        if rows != official:
            notes.append(f"PARTIAL: this file has {rows:,} of the {official:,} official {self.name} {split} rows; "
                         f"quote that count with any number computed from it")
        if max_rows is not None and max_rows < rows:
            notes.append(f"only the first {max_rows:,} of {rows:,} rows were read (max_rows)")
        columns = set(tabular.header(path))
        missing = [c for c in self.benchmark.property_columns if c not in columns]
        if len(missing) == len(self.benchmark.property_columns):
            notes.append(f"no property columns (the official file has {', '.join(missing)})")
        elif missing:
            notes.append(f"missing property columns: {', '.join(missing)}")
        return notes

    def provenance(self, split: str) -> list[str]:
        assert self.benchmark is not None
        path = self.path(split)
        if not path.is_file():
            return [f"{path} is absent"]
        blob, official = git_blob_id(path), self.benchmark.blob_ids[split]
        same = "is the official CDVAE file" if blob == official else f"is NOT the official CDVAE file (official blob {official})"
        return [f"{path}: git blob {blob} {same}", *self.notes(split, path)]


def _benchmark_spec(b: Benchmark) -> BenchmarkDataset:
    return BenchmarkDataset(b.name, b.description, tuple(b.rows), b.property_columns, b.default_property, benchmark=b)


# ------------------------------------------------------------------------------------------------ embedded


@dataclass
class EmbeddedDataset(DatasetSpec):
    """The embedded default set (:mod:`crystalgen.data.embedded`), built at first use and cached."""

    def location(self) -> str:
        return "built in (crystalgen.data.embedded)"

    def row_count(self, split: str) -> int | None:
        return sum(1 for item in embedded.embedded_items() if item["split"] == split)

    def provenance(self, split: str) -> list[str]:
        return [f"synthetic: prototype crystals built by crystalgen (embedded set version {embedded.EMBEDDED_VERSION}, docs/data.md); "
                f"for demos and tests, not a benchmark"]

    def load(self, split: str, *, strict: bool = False, max_rows: int | None = None, workers: int | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True) -> LoadedSplit:
        self.check_split(split)
        records = embedded.embedded_records(split, _cache_path(cache_dir))[:max_rows]
        return LoadedSplit(self.name, split, records, [], "embedded prototype crystals", self.provenance(split))


# ---------------------------------------------------------------------------------------------- user data


@dataclass
class TableDataset(DatasetSpec):
    """A user's crystal tables: one CSV per split (property columns found in each file)."""

    files: dict[str, Path] = field(default_factory=dict)

    def location(self) -> str:
        return ", ".join(str(p) for p in self.files.values())

    def row_count(self, split: str) -> int | None:
        return tabular.count_rows(self.files[split]) if split in self.files else None

    def load(self, split: str, *, strict: bool = False, max_rows: int | None = None, workers: int | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True) -> LoadedSplit:
        self.check_split(split)
        return tabular.load_csv(self.files[split], name=self.name, split=split, strict=strict, max_rows=max_rows,
                                workers=workers, cache_dir=_cache_path(cache_dir), progress=progress)


@dataclass
class FileDataset(DatasetSpec):
    """A user's CIF / extxyz file, or a folder of them: one split."""

    root: Path = Path(".")

    def paths(self) -> list[Path]:
        return crystal_files(self.root) if self.root.is_dir() else [self.root]

    def location(self) -> str:
        return str(self.root)

    def load(self, split: str, *, strict: bool = False, max_rows: int | None = None, workers: int | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True) -> LoadedSplit:
        self.check_split(split)
        return load_files(self.paths(), name=self.name, split=split, description=str(self.root), strict=strict, max_rows=max_rows)


def dataset_from_path(path: Path) -> DatasetSpec:
    """The dataset a user's path describes (see the module docstring)."""
    name = path.stem or path.name
    if path.is_dir():
        tables = {s: path / f"{s}.csv" for s in ("train", "val", "test") if (path / f"{s}.csv").exists()}
        if tables:
            return TableDataset(path.name, f"crystal tables in {path}", tuple(tables), files=tables)
        if crystal_files(path):
            return FileDataset(path.name, f"crystal files in {path}", (USER_SPLIT,), root=path)
        raise ValueError(f"{path}: no train/val/test CSV and no {'/'.join(CRYSTAL_SUFFIXES)} file in this folder")
    check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return TableDataset(name, f"crystal table {path}", (USER_SPLIT,), files={USER_SPLIT: path})
    if suffix in CRYSTAL_SUFFIXES:
        return FileDataset(name, f"crystals in {path}", (USER_SPLIT,), root=path)
    raise ValueError(f"{path}: unknown dataset file type {suffix!r}; expected .csv, {', '.join(CRYSTAL_SUFFIXES)} or a folder")


# ---------------------------------------------------------------------------------------------- lookup


def builtin_datasets() -> dict[str, DatasetSpec]:
    """The core's datasets: the three CDVAE benchmarks and ``embedded``."""
    specs: dict[str, DatasetSpec] = {name: _benchmark_spec(b) for name, b in BENCHMARKS.items()}
    specs["embedded"] = EmbeddedDataset(
        "embedded", "built-in prototype crystals (rocksalt, perovskite, spinel, Heusler, ...; 20 space groups), no download",
        embedded.SPLITS, (embedded.PROPERTY,), embedded.PROPERTY,
    )
    return specs


def get_dataset(name_or_path: str | os.PathLike) -> DatasetSpec:
    """A registered dataset by name, or the dataset a path describes."""
    from crystalgen import plugins

    registry = plugins.default_host().registry("dataset")
    text = os.fspath(name_or_path)
    if not isinstance(name_or_path, os.PathLike) and text in registry:
        return registry.get(text)
    path = Path(text).expanduser()
    if path.exists():
        return dataset_from_path(path)
    if isinstance(name_or_path, os.PathLike) or os.sep in text or Path(text).suffix.lower() in (".csv", *CRYSTAL_SUFFIXES):
        raise FileNotFoundError(f"dataset path {text} does not exist")
    raise UnknownComponentError(f"{registry.unknown_message(text)[:-1]}; {PATH_HINT}.")
