"""`crystalgen data list | info | prepare` end to end (fetch is covered in test_data_fetch.py)."""

from __future__ import annotations

import csv

import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.cli.data import split_argument
from crystalgen.cli.main import main
from crystalgen.data.io import structure_to_cif


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))


def test_list_shows_builtins_with_locations(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_DATA", str(tmp_path / "none"))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("perov_5", "carbon_24", "mp_20", "embedded"):
        assert f"{name}  [core]" in out
    assert "not found in" in out and "rows: train -, val -, test -" in out  # benchmarks absent here
    assert "built in" in out


def test_info_on_a_user_table(capsys, tmp_path):
    path = tmp_path / "mine.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "cif", "energy"])
        for i, (a, species) in enumerate([(4.1, ["Cs", "Cl"]), (4.2, ["Cs", "Br"]), (4.3, ["Tl", "Cl"])]):
            w.writerow([f"m{i}", structure_to_cif(Structure(Lattice.cubic(a), species, [[0, 0, 0], [0.5, 0.5, 0.5]])), str(-i)])
        w.writerow(["broken", "data_x\n", "1"])
    assert main(["data", "info", f"{path}:train"]) == 0
    out = capsys.readouterr().out
    assert "mine/train: 4 rows read, 3 kept, 1 skipped" in out
    assert "skipped 1 x malformed CIF" in out and "row 3 (id broken)" in out
    assert "elements: 4 distinct" in out
    assert "atoms per cell: min 2, median 2" in out
    assert "space groups (spglib, symprec 0.1 A): 1 distinct; most frequent: 221 (3)" in out
    assert "property energy: n 3" in out


def test_prepare_with_a_transform_then_from_cache(capsys):
    args = ["data", "prepare", "embedded", "--transform", "full_cell", "--split", "val", "--workers", "1"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "crystals prepared, 0 skipped (built" in first and "cache file" in first
    assert main(args) == 0
    assert "(from cache" in capsys.readouterr().out


def test_prepare_with_a_model_uses_its_preset(capsys):
    pytest.importorskip("crystalgen_toy_model")
    assert main(["data", "prepare", "embedded", "--model", "toy", "--split", "test", "--max-rows", "10"]) == 0
    out = capsys.readouterr().out
    assert "embedded/test: 10 crystals prepared" in out


def test_prepare_refuses_a_non_transform_encoder(capsys):
    pytest.importorskip("crystalgen_cdvae")
    assert main(["data", "prepare", "embedded", "--transform", "dimenet_pp"]) == 2
    assert "is not a StructureTransform" in capsys.readouterr().err


def test_split_argument():
    assert split_argument("mp_20:test") == ("mp_20", "test")
    assert split_argument("mp_20") == ("mp_20", None)
    assert split_argument("C:\\data\\x.csv") == ("C:\\data\\x.csv", None)
    assert split_argument("runs/a:b/train.csv") == ("runs/a:b/train.csv", None)
