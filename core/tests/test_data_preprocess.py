"""Preprocessing cache: hits, keys, damaged files, parallel = serial, skips and strict mode."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgen.data import cache, parallel
from crystalgen.data.preprocess import prepare_split
from crystalgen.data.records import CrystalRecord, DataError, LoadedSplit
from crystalgen.encoders.full_cell import FullCellTransform


class PidTransform(FullCellTransform):
    """Full cell plus the id of the process that made the item (to see that workers ran)."""

    name = "pid_full_cell"

    def __call__(self, structure):
        data = super().__call__(structure)
        data.worker_pid = torch.tensor([os.getpid()])
        return data


class FullCellV2(FullCellTransform):
    version = "2"


class NumpyTransform(FullCellTransform):
    name = "numpy_attr"

    def __call__(self, structure):
        data = super().__call__(structure)
        data.extra = np.zeros(3)
        return data


def records(n: int = 40) -> list[CrystalRecord]:
    out = []
    for i in range(n):
        s = Structure(Lattice.cubic(4.0 + 0.01 * i), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5 + 0.001 * i]])
        if i % 10 == 7:
            s.make_supercell([2, 2, 2])  # 16 atoms: above max_atoms=8
        out.append(CrystalRecord(f"c{i}", s, {"energy": -1.0 - i}, "toy.csv", i))
    return out


@pytest.fixture
def loaded() -> LoadedSplit:
    return LoadedSplit("toy", "train", records(), [], "toy crystals")


def same_items(a, b, ignore=()):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert sorted(x.keys()) == sorted(y.keys())
        for key in x.keys():  # noqa: SIM118 (iterating a Data yields (key, value) pairs)
            if key in ignore:
                continue
            if isinstance(x[key], torch.Tensor):
                assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


def test_items_skips_and_cache_hit(loaded, tmp_path):
    first = prepare_split(loaded, FullCellTransform(max_atoms=8), cache_dir=tmp_path, workers=0, progress=False)
    assert not first.cache_hit and first.cache_file.is_file()
    assert [s.id for s in first.skipped] == ["c7", "c17", "c27", "c37"]
    assert all(s.kind == "refused by full_cell" and s.source == "toy.csv" for s in first.skipped)
    assert first.skipped[0].row == 7 and "16 atoms exceeds max_atoms=8" in first.skipped[0].reason
    assert len(first.items) == 36
    item = first.items[0]
    assert item.material_id == "c0" and item.prop_energy.item() == -1.0 and item.prop_energy.dtype == torch.float64
    assert item.num_nodes == 2 and item.lattice.shape == (1, 3, 3)
    assert "4 x refused by full_cell" in first.summary()

    second = prepare_split(loaded, FullCellTransform(max_atoms=8), cache_dir=tmp_path, workers=0, progress=False)
    assert second.cache_hit and second.cache_file == first.cache_file
    assert second.skipped == first.skipped
    same_items(first.items, second.items)


def test_key_follows_transform_version_options_and_records(loaded, tmp_path):
    base = prepare_split(loaded, FullCellTransform(), cache_dir=tmp_path, workers=0, progress=False)
    v2 = prepare_split(loaded, FullCellV2(), cache_dir=tmp_path, workers=0, progress=False)
    niggli = prepare_split(loaded, FullCellTransform(niggli=True), cache_dir=tmp_path, workers=0, progress=False)
    changed = LoadedSplit("toy", "train", records()[:-1], [], "toy crystals")
    fewer = prepare_split(changed, FullCellTransform(), cache_dir=tmp_path, workers=0, progress=False)
    files = {base.cache_file, v2.cache_file, niggli.cache_file, fewer.cache_file}
    assert len(files) == 4 and not any(p.cache_hit for p in (v2, niggli, fewer))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_cache_is_rebuilt_with_a_warning(loaded, tmp_path, damage):
    first = prepare_split(loaded, FullCellTransform(), cache_dir=tmp_path, workers=0, progress=False)
    blob = first.cache_file.read_bytes()
    if damage == "truncate":
        first.cache_file.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        middle = len(blob) // 2
        first.cache_file.write_bytes(blob[:middle] + bytes([blob[middle] ^ 0xFF]) + blob[middle + 1:])
    else:
        first.cache_file.write_bytes(b"not a cache")
    with pytest.warns(UserWarning, match="rebuilding"):
        again = prepare_split(loaded, FullCellTransform(), cache_dir=tmp_path, workers=0, progress=False)
    assert not again.cache_hit
    same_items(first.items, again.items)
    assert prepare_split(loaded, FullCellTransform(), cache_dir=tmp_path, workers=0, progress=False).cache_hit


def test_parallel_build_equals_serial(loaded, tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_ITEMS_PER_WORKER", 4)
    serial = prepare_split(loaded, PidTransform(max_atoms=8), cache_dir=tmp_path / "s", workers=0, progress=False)
    forked = prepare_split(loaded, PidTransform(max_atoms=8), cache_dir=tmp_path / "p", workers=2, progress=False)
    same_items(serial.items, forked.items, ignore=("worker_pid",))
    assert serial.skipped == forked.skipped
    assert {int(d.worker_pid) for d in serial.items} == {os.getpid()}
    assert os.getpid() not in {int(d.worker_pid) for d in forked.items}  # made in worker processes


def test_strict_mode_names_the_first_refused_crystal(loaded, tmp_path):
    with pytest.raises(DataError, match=r"toy\.csv row 7 \(id c7\): refused by full_cell: 16 atoms exceeds max_atoms=8"):
        prepare_split(loaded, FullCellTransform(max_atoms=8), cache_dir=tmp_path, workers=0, strict=True, progress=False)
    # also when the result comes from the cache
    prepare_split(loaded, FullCellTransform(max_atoms=8), cache_dir=tmp_path, workers=0, progress=False)
    with pytest.raises(DataError, match="id c7"):
        prepare_split(loaded, FullCellTransform(max_atoms=8), cache_dir=tmp_path, workers=0, strict=True, progress=False)


def test_values_the_cache_cannot_load_safely_are_refused(loaded, tmp_path):
    with pytest.raises(TypeError, match="numpy_attr.*extra"):
        prepare_split(loaded, NumpyTransform(), cache_dir=tmp_path, workers=0, progress=False)


def test_cache_files_load_with_weights_only(loaded, tmp_path):
    first = prepare_split(loaded, FullCellTransform(), cache_dir=tmp_path, workers=0, progress=False)
    body = first.cache_file.read_bytes()[len(cache.MAGIC) + 40:]
    payload = torch.load(io.BytesIO(body), weights_only=True)  # no pickled objects, only plain containers
    assert payload["items"]["count"] == len(first.items)


def test_default_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "here"))
    assert cache.cache_root() == tmp_path / "here"
    monkeypatch.delenv("CRYSTALGEN_CACHE")
    assert cache.cache_root().parts[-2:] == (".cache", "crystalgen")


def test_column_packing_round_trip():
    items = [{"a": torch.arange(3), "b": "x", "c": {"k": 1.0}}, {"a": torch.arange(5), "b": "y"}, {"a": torch.zeros(0, dtype=torch.long)}]
    packed = cache.pack(items)
    assert "cat" in packed["columns"]["a"] and "list" in packed["columns"]["b"]
    back = cache.unpack(packed)
    assert [sorted(i) for i in back] == [["a", "b", "c"], ["a", "b"], ["a"]]
    assert torch.equal(back[1]["a"], torch.arange(5)) and back[0]["c"] == {"k": 1.0}
