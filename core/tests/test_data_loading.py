"""Benchmark tables and bad input: row counts, provenance notes, per-row skips with reasons, strict mode."""

from __future__ import annotations

import csv
import math

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from crystalgen.data.records import DataError
from crystalgen.data.registry import DatasetNotFoundError, get_dataset
from crystalgen.data.tabular import load_csv

#: rows per file of the CDVAE benchmark CSVs (the developers' MP-20 train file is partial).
PROVENANCE_ROWS = {
    ("perov_5", "train"): 11356, ("perov_5", "val"): 3787, ("perov_5", "test"): 3785,
    ("carbon_24", "train"): 6091, ("carbon_24", "val"): 2032, ("carbon_24", "test"): 2030,
    ("mp_20", "train"): 11249, ("mp_20", "val"): 9047, ("mp_20", "test"): 9046,
}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))


def cesium_chloride(a: float = 4.12) -> Structure:
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cif_text(structure: Structure) -> str:
    return str(CifWriter(structure))


def write_table(path, rows, columns=("material_id", "cif", "band_gap")):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


# -------------------------------------------------------------------------------------------- benchmarks


@pytest.mark.data
@pytest.mark.parametrize(("name", "split"), sorted(PROVENANCE_ROWS))
def test_benchmark_split_rows_and_first_records(data_root, name, split):
    spec = get_dataset(name)
    if not (data_root / name / f"{split}.csv").is_file():
        pytest.skip(f"{name}/{split}.csv absent")
    assert spec.row_count(split) == PROVENANCE_ROWS[(name, split)]
    loaded = spec.load(split, max_rows=5, progress=False)
    assert len(loaded.records) == 5 and not loaded.skipped
    assert [r.row for r in loaded.records] == [0, 1, 2, 3, 4]
    assert all(len(r.structure) >= 1 for r in loaded.records)
    assert any("first 5 of" in note for note in loaded.notes)
    if name == "perov_5":
        assert all(len(r.structure) == 5 for r in loaded.records)


@pytest.mark.data
def test_partial_and_propertyless_splits_are_flagged(data_root):
    mp = get_dataset("mp_20").load("train", max_rows=3, progress=False)
    assert any(note.startswith("PARTIAL: this file has 11,249 of the 27,136") for note in mp.notes)
    assert set(mp.records[0].properties) == {"formation_energy_per_atom", "band_gap"}
    assert "PARTIAL" in mp.summary()
    perov = get_dataset("perov_5").load("train", max_rows=3, progress=False)
    assert any(note.startswith("no property columns") for note in perov.notes)
    assert perov.records[0].properties == {}
    val = get_dataset("perov_5").load("val", max_rows=3, progress=False)
    assert not any("PARTIAL" in n or "property" in n for n in val.notes)
    assert set(val.records[0].properties) == {"heat_all", "heat_ref", "dir_gap", "ind_gap"}
    assert get_dataset("perov_5").provenance("val")[0].endswith("is the official CDVAE file")


def test_missing_benchmark_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"crystalgen data fetch carbon_24.*CRYSTALGEN_DATA"):
        get_dataset("carbon_24").load("val")
    monkeypatch.delenv("CRYSTALGEN_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with pytest.raises(DatasetNotFoundError, match="CRYSTALGEN_DATA is not set"):
        get_dataset("carbon_24").load("val")
    with pytest.raises(ValueError, match="no split 'dev'"):
        get_dataset("carbon_24").load("dev")


# -------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def bad_table(tmp_path):
    good = cif_text(cesium_chloride())
    malformed = "\n".join(line for line in good.splitlines() if not line.startswith("_cell_length_a"))
    half = cesium_chloride()
    half.replace(0, {"Cs": 0.5})
    mixed = cesium_chloride()
    mixed.replace(1, {"Cl": 0.5, "Br": 0.5})
    rows = [
        ("ok-0", good, "1.5"),
        ("bad-cif", malformed, "2.0"),
        ("half", cif_text(half), "0.1"),
        ("nan", good, "nan"),
        ("ok-4", cif_text(cesium_chloride(5.7)), "3.0"),
        ("mixed", cif_text(mixed), "1.0"),
        ("word", good, "abc"),
        ("", cif_text(cesium_chloride(5.8)), "0.5"),
    ]
    return write_table(tmp_path / "bad.csv", rows)


def test_bad_rows_are_skipped_with_reasons_and_the_rest_kept(bad_table):
    loaded = load_csv(bad_table, name="bad", split="train", label="bad.csv", progress=False)
    assert [r.id for r in loaded.records] == ["ok-0", "ok-4", "bad-7"]  # empty material_id -> <stem>-<row>
    assert [r.row for r in loaded.records] == [0, 4, 7]
    assert loaded.records[1].properties == {"band_gap": 3.0}
    assert math.isclose(loaded.records[1].structure.lattice.a, 5.7)
    why = {s.id: (s.row, s.kind, s.reason) for s in loaded.skipped}
    assert why["bad-cif"][:2] == (1, "malformed CIF") and "\n" not in why["bad-cif"][2]
    assert why["half"][:2] == (2, "disordered structure") and "partial occupancy" in why["half"][2]
    assert why["mixed"][:2] == (5, "disordered structure")
    assert why["nan"][:2] == (3, "NaN property") and "band_gap" in why["nan"][2]
    assert why["word"][:2] == (6, "bad property value")
    lines = loaded.summary().splitlines()
    assert lines[0].startswith("bad/train: 8 rows read, 3 kept, 5 skipped")
    kinds = [line for line in lines if line.strip().startswith("skipped")]
    assert len(kinds) == 4  # one line per kind of reason
    assert any("2 x disordered structure" in k and "bad.csv row 2 (id half)" in k and "bad.csv row 5 (id mixed)" in k for k in kinds)


def test_strict_names_file_row_and_id(bad_table):
    with pytest.raises(DataError, match=r"bad\.csv row 1 \(id bad-cif\): malformed CIF") as info:
        load_csv(bad_table, name="bad", split="train", label="bad.csv", strict=True, progress=False)
    assert info.value.skipped.row == 1


def test_table_without_cif_column_is_refused(tmp_path):
    path = write_table(tmp_path / "x.csv", [("a", "b")], columns=("material_id", "structure"))
    with pytest.raises(ValueError, match=r"no 'cif' column \(columns: material_id, structure\)"):
        load_csv(path, name="x", split="train")


def test_parse_cache_hit_returns_identical_records(bad_table, tmp_path):
    first = load_csv(bad_table, name="bad", split="train", cache_dir=tmp_path / "c", progress=False)
    files = list((tmp_path / "c" / "parsed").iterdir())
    assert len(files) == 1
    second = load_csv(bad_table, name="bad", split="train", cache_dir=tmp_path / "c", progress=False)
    assert [r.id for r in second.records] == [r.id for r in first.records]
    assert second.skipped == first.skipped
    for a, b in zip(first.records, second.records, strict=True):
        assert (a.structure.lattice.matrix == b.structure.lattice.matrix).all()
        assert (a.structure.frac_coords == b.structure.frac_coords).all()
        assert a.properties == b.properties
